"""The prometheus plugin: its metric options are off by default, and what ``/metrics`` shows then.

Real Kong applies a prometheus plugin's options on a node when that node's plugins iterator is rebuilt, which
happens in the proxy path: the checks send a proxied request before they read ``/metrics``.
"""

import time

import pytest
import requests

from .conftest import record_timing, wait_for

OPTIONS = ("status_code_metrics", "latency_metrics", "upstream_health_metrics", "bandwidth_metrics", "per_consumer")


def _metric_names(text):
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def _first_node(cluster):
    return next(n for n in cluster["nodes"] if n["admin_url"])


@pytest.mark.modes("traditional", "dbless")
def test_metrics_without_the_plugin(admin, cluster, uname):
    node = _first_node(cluster)
    if cluster["mode"] == "traditional":
        assert admin.post("/upstreams", json={"name": uname}).status_code == 201
        assert admin.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:9"}).status_code == 201
    assert not [p for p in admin.get("/plugins").json()["data"] if p["name"] == "prometheus"]
    requests.get(node["proxy_url"] + "/cf-no-route", timeout=5)
    for url in (node["admin_url"], node["status_url"]):
        resp = requests.get(url + "/metrics", timeout=5)
        assert resp.status_code == 200
        names = _metric_names(resp.text)
        assert {"kong_node_info", "kong_datastore_reachable"} <= names, url
        assert not names & {"kong_upstream_target_health", "kong_http_requests_total", "kong_request_latency_ms_bucket",
                            "kong_bandwidth_bytes"}, url


@pytest.mark.modes("traditional", "hybrid")
def test_plugin_options_default_to_false(admin):
    resp = admin.post("/plugins", json={"name": "prometheus"})
    assert resp.status_code == 201, resp.text
    plugin = resp.json()
    try:
        assert {k: plugin["config"][k] for k in OPTIONS} == {k: False for k in OPTIONS}
        assert (plugin["enabled"], plugin["service"], plugin["route"], plugin["consumer"]) == (True, None, None, None)
    finally:
        assert admin.delete("/plugins/" + plugin["id"]).status_code == 204


@pytest.mark.modes("traditional")
def test_metrics_follow_the_plugin_options(admin, cluster, uname):
    """Defaults: no target health, no request counts; turned on: both (after the node's next proxied request)."""
    node = _first_node(cluster)
    assert admin.post("/upstreams", json={"name": uname}).status_code == 201
    assert admin.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:9"}).status_code == 201
    assert admin.post("/services", json={"name": uname, "url": "http://127.0.0.1:1"}).status_code == 201
    assert admin.post("/services/%s/routes" % uname, json={"name": uname, "paths": ["/" + uname]}).status_code == 201
    plugin = admin.post("/plugins", json={"name": "prometheus"}).json()
    health_label = 'kong_upstream_target_health{upstream="%s"' % uname
    requests_label = 'kong_http_requests_total{service="%s"' % uname

    def scrape():
        requests.get(node["proxy_url"] + "/" + uname, timeout=5)
        return requests.get(node["status_url"] + "/metrics", timeout=5).text
    try:
        started = time.monotonic()
        routed = wait_for(lambda: requests.get(node["proxy_url"] + "/" + uname, timeout=5).status_code == 502, 20, 0.1)[0]
        assert routed, "the writing node does not route a new route after 20 s"
        record_timing("route created -> the writing node proxies it", time.monotonic() - started)
        text = scrape()
        assert health_label not in text and requests_label not in text
        resp = admin.patch("/plugins/" + plugin["id"], json={"config": {"upstream_health_metrics": True, "status_code_metrics": True}})
        assert resp.status_code == 200
        started = time.monotonic()

        def both_shown():
            page = scrape()
            return page if health_label in page and requests_label in page else None

        text, _unused = wait_for(both_shown, 20, 0.2)
        assert text, "no kong_upstream_target_health / kong_http_requests_total for %s within 20 s" % uname
        record_timing("prometheus options turned on -> /metrics shows them", time.monotonic() - started)
        lines = [line for line in text.splitlines() if line.startswith(health_label)]
        states = {line.split('state="')[1].split('"')[0]: line.rsplit(" ", 1)[1] for line in lines}
        assert states == {"healthchecks_off": "1", "healthy": "0", "unhealthy": "0", "dns_error": "0"}
        assert [line for line in text.splitlines() if line.startswith(requests_label) and 'code="502"' in line]
    finally:
        assert admin.delete("/plugins/" + plugin["id"]).status_code == 204
