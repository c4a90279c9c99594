"""TLS and mutual TLS on the simulator's Admin API (Kong's ``admin_listen ... ssl``), through the collection's own
client (plugins/module_utils/_kong_api.py KongClient) with validate_certs, ca_path, client_cert and client_key."""

import json
import os
import socket
import ssl
import warnings

import pytest
import requests
import yaml
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError, KongClient

from tests.lab.kong_sim.launcher import KongCluster
from tests.lab.kong_sim.tls import make_pki
from tests.lab.lab import bind_minimal, wait_routed
from tests.lab.pytest_plugin import _run_lab

from .conftest import hold_port

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _no_ca_bundle_variables(monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace Session.verify; these tests are about the listener
    # and the client's options. test_ca_path_is_not_overridden_by_ca_bundle_variables covers that interplay.
    for name in CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def kong_tls(tmp_path_factory):
    cluster = KongCluster(str(tmp_path_factory.mktemp("kong-tls")), nodes=1, tls="on")
    cluster.start(detach=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def kong_mtls(tmp_path_factory):
    cluster = KongCluster(str(tmp_path_factory.mktemp("kong-mtls")), nodes=1, tls="mutual")
    cluster.start(detach=False)
    yield cluster
    cluster.stop()


def _client(url, **kwargs):
    kwargs.setdefault("retries", 0)
    return KongClient(url, **kwargs)


def test_ca_path_verifies_the_admin_listener(kong_tls, uname):
    assert kong_tls.admin_urls[0].startswith("https://")
    client = _client(kong_tls.admin_urls[0], ca_path=kong_tls.ca_path)
    info = client.node_info()
    assert info["configuration"]["admin_listen"] == ["%s ssl" % kong_tls.admin_urls[0].split("://", 1)[1]]
    assert info["node_id"] == kong_tls.node_ids[0]
    created = client.post("/upstreams", {"name": uname})
    assert client.get("/upstreams/" + uname)["id"] == created["id"]
    assert kong_tls.client_cert is None, "tls=on asks for no client certificate"


def test_validate_certs_without_a_ca_fails_clearly(kong_tls):
    with pytest.raises(KongApiError) as info:
        _client(kong_tls.admin_urls[0]).node_info()
    assert info.value.status is None
    message = str(info.value)
    assert "TLS verification of the Kong Admin API's certificate failed at %s" % kong_tls.admin_urls[0] in message
    assert "give ca_path" in message
    # the listener itself is fine: only verification failed (validate_certs=false is for a lab only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _client(kong_tls.admin_urls[0], validate_certs=False).node_info()["node_id"] == kong_tls.node_ids[0]


def test_a_ca_that_did_not_sign_the_listener_fails(kong_tls, tmp_path):
    other = make_pki(str(tmp_path / "other"))
    with pytest.raises(KongApiError, match="TLS verification of the Kong Admin API's certificate failed"):
        _client(kong_tls.admin_urls[0], ca_path=other["ca"]).node_info()


def test_proxy_and_status_stay_plain_http(kong_tls):
    assert requests.get(kong_tls.proxy_urls[0] + "/", timeout=5).json() == {"message": "no Route matched with those values"}
    assert requests.get(kong_tls.status_urls[0] + "/status", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(kong_tls.admin_urls[0].replace("https://", "http://") + "/", timeout=5)


def test_mutual_tls_works_with_client_cert_and_key(kong_mtls, uname):
    client = _client(kong_mtls.admin_urls[0], ca_path=kong_mtls.ca_path, client_cert=kong_mtls.client_cert,
                     client_key=kong_mtls.client_key)
    assert client.node_info()["node_id"] == kong_mtls.node_ids[0]
    client.post("/upstreams", {"name": uname})
    target = client.post("/upstreams/%s/targets" % uname, {"target": "127.0.0.1:8080", "weight": 10})
    assert client.patch("/upstreams/%s/targets/%s" % (uname, target["id"]), {"weight": 0})["weight"] == 0


def test_mutual_tls_without_a_client_cert_is_refused(kong_mtls, uname):
    client = _client(kong_mtls.admin_urls[0], ca_path=kong_mtls.ca_path)
    with pytest.raises(KongApiError) as info:
        client.post("/upstreams", {"name": uname})
    # nginx's answer with `ssl_verify_client on` (how Kong does mutual TLS) when no certificate was sent
    assert info.value.status == 400
    assert "No required SSL certificate was sent" in str(info.value)
    assert "set client_cert" in str(info.value)
    full = _client(kong_mtls.admin_urls[0], ca_path=kong_mtls.ca_path, client_cert=kong_mtls.client_cert,
                   client_key=kong_mtls.client_key)
    assert full.get("/upstreams/" + uname) is None, "the refused request changed nothing"


def test_mutual_tls_refuses_a_certificate_from_another_ca(kong_mtls, tmp_path):
    other = make_pki(str(tmp_path / "other"))
    client = _client(kong_mtls.admin_urls[0], ca_path=kong_mtls.ca_path, client_cert=other["client_cert"],
                     client_key=other["client_key"])
    with pytest.raises(KongApiError) as info:
        client.node_info()
    assert info.value.status is None


def test_pidfile_and_key_files(tmp_path):
    cluster = KongCluster(str(tmp_path), nodes=1, tls="mutual")
    cluster.start(detach=True)
    try:
        recorded = KongCluster.read_state_dir(str(tmp_path))[0]
        assert recorded["tls"] == "mutual" and recorded["ca_path"] == cluster.ca_path
        assert recorded["client_cert"] == cluster.client_cert and recorded["client_key"] == cluster.client_key
        for key in (cluster.client_key, os.path.join(str(tmp_path), "tls", "admin.key")):
            assert oct(os.stat(key).st_mode & 0o777) == "0o600"
        ctx = ssl.create_default_context(cafile=cluster.ca_path)
        host, port = cluster.admin_urls[0].split("://", 1)[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls_sock:
                names = dict(x[0] for x in tls_sock.getpeercert()["subject"])
        assert names["commonName"] == "mixedrun-lab-kong-admin"
    finally:
        assert KongCluster.stop_from_state_dir(str(tmp_path)) == [cluster.pids[0]]
        cluster.stop()
    assert not [f for f in os.listdir(os.path.join(str(tmp_path), "tls")) if f.endswith(".key")], "private keys removed at stop"


def test_bad_tls_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tls must be one of off, on, mutual"):
        KongCluster(str(tmp_path), tls="maybe")


def test_ca_path_is_not_overridden_by_ca_bundle_variables(kong_tls, monkeypatch):
    bundle = ssl.get_default_verify_paths().openssl_cafile or kong_tls.ca_path
    if bundle == kong_tls.ca_path or not os.path.exists(bundle):
        pytest.fail("no system CA bundle to point REQUESTS_CA_BUNDLE at")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    assert _client(kong_tls.admin_urls[0], ca_path=kong_tls.ca_path).node_info()["node_id"] == kong_tls.node_ids[0]


def test_validate_certs_false_is_not_turned_back_on_by_ca_bundle_variables(kong_tls, monkeypatch):
    bundle = ssl.get_default_verify_paths().openssl_cafile or kong_tls.ca_path
    if bundle == kong_tls.ca_path or not os.path.exists(bundle):
        pytest.fail("no system CA bundle to point REQUESTS_CA_BUNDLE at")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    assert _client(kong_tls.admin_urls[0], validate_certs=False).node_info()["node_id"] == kong_tls.node_ids[0]
    with pytest.raises(KongApiError, match="give ca_path"):
        _client(kong_tls.admin_urls[0]).node_info()


def test_lab_up_with_mutual_tls_and_a_taken_default_node_port(tmp_path):
    """`up` with kong.tls: mutual, while the default node_port is taken: free ports, TLS wired through lab.json,
    status, Prometheus (Status API) and bind_minimal; `down` leaves no private key."""
    default_port = yaml.safe_load(open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "default.yml"),  # pylint: disable=consider-using-with
                                       encoding="utf-8"))["node_port"]
    held = hold_port("127.0.10.1", default_port)
    config = tmp_path / "tls.yml"
    config.write_text(yaml.safe_dump({"kong": {"tls": "mutual", "engine": "simulator"}}))   # TLS Admin API: the simulator only
    state_dir = str(tmp_path / "lab")
    try:
        proc = _run_lab(["up", "--config", str(config)], state_dir)
        assert proc.returncode == 0, proc.stderr[-2000:]
        info = json.loads(proc.stdout)
        try:
            if held is not None:  # else another lab had it, and may have let it go before `up` looked
                assert {n["port"] for n in info["nodes"]} != {default_port}, "the taken default node_port moved to a free port"
            assert info["kong_tls"] == "mutual" and info["admin_url"].startswith("https://")
            assert os.path.exists(info["kong_ca_path"]) and os.path.exists(info["kong_client_key"])
            status = json.loads(_run_lab(["status"], state_dir).stdout)
            assert status["state"] == "up", status
            client = _client(info["admin_url"], ca_path=info["kong_ca_path"], client_cert=info["kong_client_cert"],
                             client_key=info["kong_client_key"])
            assert client.node_info()["configuration"]["admin_listen"][0].endswith(" ssl")
            bind_minimal(info, "shop")
            wait_routed(info, "shop.lab.test")
            with open(os.path.join(state_dir, "prometheus.yml"), encoding="utf-8") as fh:
                scrape = yaml.safe_load(fh.read().split("\n", 1)[1])["scrape_configs"][0]
            assert scrape["job_name"] == "kong"
            assert [c["targets"][0] for c in scrape["static_configs"]] == [u.split("://", 1)[1] for u in info["status_urls"]]
            again = _run_lab(["up", "--config", str(config)], state_dir)
            assert again.returncode == 0 and json.loads(again.stdout)["already_running"] is True, again.stderr[-1000:]
        finally:
            down = _run_lab(["down"], state_dir)
            assert down.returncode == 0, down.stderr[-2000:]
        assert not os.path.exists(info["kong_client_key"]), "down removes the lab's private keys"
    finally:
        if held is not None:
            held.close()
