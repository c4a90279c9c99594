"""Lab configuration: defaults, merging, validation messages, extra-object files, lab.json pieces."""

import pytest
import yaml

from tests.lab import config as labconfig
from tests.lab.lab import LabError, load_extra_objects


def test_default_config_matches_the_contract():
    cfg = labconfig.load()
    assert [s.name for s in cfg.services] == ["shop"]
    shop = cfg.services[0]
    assert (shop.domain, shop.namespace, shop.selector) == ("shop.lab.test", "shop", "app=shop,tier=web")
    assert [n.address for n in shop.vms] == ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
    assert [n.address for n in shop.containers] == ["127.0.20.1", "127.0.20.2", "127.0.20.3"]
    assert {n.port for n in cfg.nodes} == {18080}
    assert shop.vms[0].labels == {"app": "shop", "tier": "web", "env": "lab"}
    assert all(c.labels == {"app": "shop", "tier": "web"} and c.namespace == "shop" for c in shop.containers)
    assert [k.address for k in cfg.k8s_nodes] == ["127.0.30.1", "127.0.30.2", "127.0.30.3"]
    assert [c.k8s_node for c in shop.containers] == ["lab-worker-1", "lab-worker-2", "lab-worker-3"]
    assert cfg.kong["nodes"] == 1
    # pod names are Deployment-style and stable across runs
    assert shop.containers[0].name == labconfig.pod_name("shop", 1)
    assert shop.containers[0].name.startswith("shop-%s-" % labconfig.pod_template_hash("shop"))
    assert labconfig.load().fingerprint() == cfg.fingerprint()


def test_merge_overrides_mappings_and_replaces_lists(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text(yaml.safe_dump({"kong": {"nodes": 2}, "services": [
        {"name": "api", "namespace": "apis", "labels": {"app": "api"}, "vms": {"count": 1, "address_base": "127.0.11.1"},
         "containers": {"count": 2, "address_base": "127.0.21.1"}}]}))
    cfg = labconfig.load(str(path))
    assert cfg.kong["nodes"] == 2 and cfg.kong["host"] == "127.0.0.1"
    assert [s.name for s in cfg.services] == ["api"]
    assert [n.name for n in cfg.nodes][:1] == ["api-vm-1"] and len(cfg.nodes) == 3
    assert cfg.fingerprint() != labconfig.load().fingerprint()


@pytest.mark.parametrize("override, message", [
    ({"node_port": "80"}, "node_port: must be an integer"),
    ({"kong": {"nodes": 17}}, "kong.nodes: must be an integer between 1 and 16"),
    ({"haproxy": {"host": "0.0.0.0"}}, "haproxy.host: 0.0.0.0 is not a loopback address"),
    ({"haproxy": {"colour": 1}}, "haproxy.colour: unknown key"),
    ({"prometheus": {"scrape_interval": "fast"}}, "prometheus.scrape_interval: must be a duration"),
    ({"k8s": {"token": "short"}}, "k8s.token: must be null"),
    ({"k8s": {"token": "same-token-123", "forbidden_token": "same-token-123"}}, "k8s.forbidden_token: must differ"),
    ({"k8s": {"nodes": {"address_base": "127.255.255.255", "count": 3}}}, "k8s.nodes.address_base: the range leaves 127.0.0.0/8"),
    ({"services": [{"name": "a", "vms": {"count": 1, "address_base": "127.0.10.1"}},
                   {"name": "b", "vms": {"count": 1, "address_base": "127.0.10.1"}}]}, "already used by node a-vm-1"),
    ({"services": [{"name": "a", "labels": {"app": "bad value"}, "vms": {"count": 1, "address_base": "127.0.10.1"}}]},
     "services[0].labels.app: value 'bad value' is not a valid label value"),
    ({"services": [{"name": "a"}]}, "services[0]: has no nodes"),
    ({"services": [{"name": "a", "vms": {"count": 2, "address_base": "127.0.10.1", "names": ["one"]}}]}, "services[0].vms.names"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(labconfig.LabConfigError) as info:
        labconfig.load(overrides=override)
    assert message in str(info.value)


def test_bad_config_file(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("kong: [unclosed\n")
    with pytest.raises(labconfig.LabConfigError, match="is not valid YAML"):
        labconfig.load(str(path))
    with pytest.raises(labconfig.LabConfigError, match="cannot read"):
        labconfig.load(str(tmp_path / "missing.yml"))


def test_extra_objects_files(tmp_path):
    path = tmp_path / "objs.yml"
    path.write_text(yaml.safe_dump_all([
        {"kind": "PodList", "apiVersion": "v1", "items": [{"metadata": {"name": "p1", "namespace": "x"}}]},
        {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}},
    ]))
    objs = load_extra_objects(str(path))
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [("Pod", "p1"), ("Namespace", "x")]
    assert load_extra_objects({"kind": "Pod"}) == [{"kind": "Pod"}]
    with pytest.raises(LabError, match="cannot load"):
        load_extra_objects(str(tmp_path / "nope.yml"))
    with pytest.raises(LabError, match="entries must be objects or file paths"):
        load_extra_objects(42)


def test_lab_json_pieces():
    cfg = labconfig.load()
    node = cfg.nodes[0].as_dict("http://127.0.0.1:1")
    assert {"name", "kind", "address", "port", "labels", "control_url"} <= set(node)
    assert node["control_url"] == "http://127.0.0.1:1/nodes/shop-vm-1"
    svc = cfg.services[0].as_dict()
    assert {"name", "domain", "namespace", "selector"} <= set(svc) and svc["selector"] == "app=shop,tier=web"
