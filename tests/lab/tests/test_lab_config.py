"""Lab configuration: defaults, merging, validation messages, extra-object files, lab.json pieces."""

import os

import pytest
import yaml

from tests.lab import __main__ as lab_main
from tests.lab import config as labconfig
from tests.lab import haproxy as lab_haproxy
from tests.lab import prometheus as lab_prometheus
from tests.lab.lab import Lab, LabError, load_extra_objects

from .conftest import hold_port


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


# ---------------------------------------------------------------------------------------------------------------
# ports picked at `up`, TLS option, missing binaries

def _free_everywhere(addresses, port):
    return all(_hold_and_release(a, port) for a in addresses)


def _hold_and_release(address, port):
    sock = hold_port(address, port)
    if sock is None:
        return False
    sock.close()
    return True


def test_auto_ports_are_picked_free():
    cfg = labconfig.load(overrides={"node_port": "auto", "services": [dict(labconfig.load_raw()["services"][0], node_port="auto")]})
    assert cfg.node_port == 0 and cfg.auto_ports == ["node_port", "services[0].node_port"]
    resolved = labconfig.resolve_ports(cfg, {"node_port": "auto", "services": [{"node_port": "auto"}]})
    assert resolved.auto_ports == [] and 20000 <= resolved.node_port <= 29999
    assert {n.port for n in resolved.nodes} == {resolved.node_port}
    assert _free_everywhere([n.address for n in resolved.nodes], resolved.node_port)
    assert 30000 <= resolved.services[0].node_port <= 32767
    assert labconfig.load(overrides={"node_port": 0}).auto_ports == ["node_port"], "0 means auto too"
    assert labconfig.load(overrides={"services": [dict(labconfig.load_raw()["services"][0], node_port=0)]}).services[0].node_port == 0, \
        "a service's node_port 0 still means: no nodePort"


def test_a_taken_default_node_port_moves_but_an_explicit_one_does_not():
    cfg = labconfig.load()
    held = hold_port(cfg.nodes[0].address, cfg.node_port)
    try:
        moved = labconfig.resolve_ports(cfg, labconfig.load_user())
        assert moved.node_port != cfg.node_port and _free_everywhere([n.address for n in moved.nodes], moved.node_port)
        explicit = labconfig.load(overrides={"node_port": cfg.node_port})
        kept = labconfig.resolve_ports(explicit, {"node_port": cfg.node_port, "services": [{"node_port": 30080}]})
        assert kept.node_port == cfg.node_port, "a port the user set never moves"
        with pytest.raises(LabError) as info:
            Lab._precheck_ports(kept)  # pylint: disable=protected-access
        assert "address already in use: %s:%d (node %s)" % (cfg.nodes[0].address, cfg.node_port, cfg.nodes[0].name) in str(info.value)
        assert "set them to auto" in str(info.value)
    finally:
        if held is not None:
            held.close()


def test_default_port_fields():
    assert labconfig.default_port_fields({}) == ["node_port", "services[0].node_port"]
    assert labconfig.default_port_fields({"node_port": 1, "services": [{"node_port": 5}, {"name": "b"}]}) == ["services[1].node_port"]


@pytest.mark.parametrize("override, message", [
    ({"node_port": "any"}, "node_port: must be an integer between 1 and 65535, or auto (or 0)"),
    ({"node_port": True}, "node_port: must be an integer"),
    ({"services": [{"name": "a", "node_port": "x", "vms": {"count": 1, "address_base": "127.0.10.1"}}]},
     "services[0].node_port: must be an integer between 0 (no nodePort) and 65535, or auto"),
    ({"kong": {"tls": "yes"}}, "kong.tls: must be false (plain HTTP Admin API), true (HTTPS with a throwaway CA) or mutual"),
    ({"kong": {"tls": 1}}, "kong.tls: must be false"),
])
def test_port_and_tls_values_name_the_field(override, message):
    with pytest.raises(labconfig.LabConfigError) as info:
        labconfig.load(overrides=override)
    assert message in str(info.value)


def test_kong_tls_values():
    assert labconfig.load().kong["tls"] == "off"
    assert [labconfig.load(overrides={"kong": {"tls": v, "engine": "simulator"}}).kong["tls"]
            for v in (False, True, "on", "mutual")] == ["off", "on", "on", "mutual"]


def test_kong_engine_follows_the_kit(tmp_path, monkeypatch):
    monkeypatch.delenv(labconfig.KONG_ENGINE_ENV, raising=False)
    kit = tmp_path / "kit"
    kit.mkdir()
    monkeypatch.setenv(labconfig.REALKONG_KIT_ENV, str(kit))                 # no kong-cluster.sh: no kit
    assert labconfig.realkong_kit() is None
    assert labconfig.load().kong["engine"] == "simulator"
    with pytest.raises(labconfig.LabConfigError, match=r"kong.engine: real needs the real Kong kit .*MIXEDRUN_REALKONG_KIT"):
        labconfig.load(overrides={"kong": {"engine": "real"}})
    (kit / "kong-cluster.sh").write_text("#!/bin/sh\n")
    assert labconfig.realkong_kit() == str(kit)
    cfg = labconfig.load()
    assert (cfg.kong["engine"], cfg.kong["mode"], cfg.kong["dbless"]) == ("real", "traditional", False)
    assert labconfig.load(overrides={"kong": {"mode": "dbless"}}).kong["dbless"] is True
    assert labconfig.load(overrides={"kong": {"dbless": True}}).kong["mode"] == "dbless"
    # the environment overrides the file; a lab asked for with another engine is another lab (fingerprint)
    monkeypatch.setenv(labconfig.KONG_ENGINE_ENV, "simulator")
    assert labconfig.load().kong["engine"] == "simulator"
    assert labconfig.load().fingerprint() != cfg.fingerprint()
    monkeypatch.setenv(labconfig.KONG_ENGINE_ENV, "podman")
    with pytest.raises(labconfig.LabConfigError, match=r"\$MIXEDRUN_LAB_KONG_ENGINE: must be auto"):
        labconfig.load()


@pytest.mark.parametrize("override, message", [
    ({"kong": {"engine": "real", "rbac_token": "t0ken"}}, "kong.rbac_token: RBAC is Kong Enterprise"),
    ({"kong": {"engine": "real", "tls": True}}, "kong.tls: the real Kong kit's Admin API is plain HTTP"),
])
def test_real_engine_refuses_what_only_the_simulator_does(tmp_path, monkeypatch, override, message):
    monkeypatch.delenv(labconfig.KONG_ENGINE_ENV, raising=False)
    (tmp_path / "kong-cluster.sh").write_text("#!/bin/sh\n")
    monkeypatch.setenv(labconfig.REALKONG_KIT_ENV, str(tmp_path))
    with pytest.raises(labconfig.LabConfigError) as info:
        labconfig.load(overrides=override)
    assert message in str(info.value)


@pytest.mark.parametrize("missing", [("haproxy",), ("prometheus",), ("haproxy", "prometheus")])
def test_missing_haproxy_or_prometheus_is_reported_clearly(tmp_path, monkeypatch, capsys, missing):
    for name in missing:
        monkeypatch.setattr({"haproxy": lab_haproxy, "prometheus": lab_prometheus}[name], "find_binary", lambda: None)
    state_dir = str(tmp_path / "lab")
    assert lab_main.main(["--state-dir", state_dir, "up"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    hints = {"haproxy": "HAProxy is not installed: run `sudo tests/lab/install-deps.sh` (or `apt-get install haproxy`)",
             "prometheus": "Prometheus is not installed: run `sudo tests/lab/install-deps.sh` (or `apt-get install prometheus`)"}
    assert out.err.strip() == "lab up failed: " + "; ".join(hints[name] for name in missing)
    pids = os.path.join(state_dir, "pids")
    assert not os.path.isdir(pids) or not os.listdir(pids), "nothing was started"
    assert not os.path.exists(os.path.join(state_dir, "lab.json"))
