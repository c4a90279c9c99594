"""Describe a simulator cluster (``tests.lab.kong_sim.launcher.KongCluster``) in the JSON shape ``kong-cluster.sh up`` prints.

The simulator has traditional and DB-less nodes only (no hybrid mode): every node has an Admin API, a proxy and a
status API, and ``control_plane_admin_url`` is null.
"""

import json
import os

from tests.lab.kong_sim.admin import VERSION


def cluster_document(cluster):
    """The ``kong-cluster.sh``-shaped document of a started KongCluster (plus ``"engine": "simulator"``)."""
    mode = "dbless" if cluster.dbless else "traditional"
    nodes = []
    for i, name in enumerate(cluster.node_names):
        nodes.append({"name": name, "role": "traditional", "database": "off" if cluster.dbless else "postgres",
                      "admin_url": cluster.admin_urls[i], "proxy_url": cluster.proxy_urls[i], "proxy_ssl_url": None,
                      "status_url": cluster.status_urls[i], "pid": cluster.pids[i] if i < len(cluster.pids) else None,
                      "node_id": cluster.node_ids[i] if i < len(cluster.node_ids) else None})
    return {"engine": "simulator", "mode": mode, "version": VERSION, "admin_urls": list(cluster.admin_urls),
            "proxy_urls": list(cluster.proxy_urls), "status_urls": list(cluster.status_urls), "control_plane_admin_url": None,
            "nodes": nodes, "postgres": None, "cluster": None, "state_dir": cluster.state_dir,
            "db_update_frequency": getattr(cluster, "db_update_frequency", None)}


def write_document(cluster, path):
    """Write ``cluster_document(cluster)`` to ``path`` (atomically) and return the document."""
    doc = cluster_document(cluster)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
    os.replace(path + ".tmp", path)
    return doc
