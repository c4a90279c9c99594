# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kong_k8s_binding against a REAL Kubernetes v1.26 control plane (the kit in ../shared/realk8s, or
$MIXEDRUN_REALK8S_KIT), started here (``k8s-cluster.sh up`` in a temporary state directory, ``down`` at the end),
with the Gateway API v1.2.1 standard CRDs from the kit's ``crds/`` installed with the kubernetes client, so the
API server's own validation (the CRDs' schemas and CEL rules included) judges every object the module writes.

API-only: no traffic goes to the addresses, which are 10.x / fd00:: because the API server refuses loopback ones
in EndpointSlices. Skipped, with the reason printed, where the kit is absent.

Run: cd /work/main && PYTHONPATH=.:.tmp/collections .venv/bin/pytest -q -rs tests/integration/test_k8s_binding_realk8s.py
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import time
from fractions import Fraction

import pytest

kubernetes = pytest.importorskip("kubernetes")
yaml = pytest.importorskip("yaml")

from ansible_collections.mixedrun.kong.plugins.module_utils import _kic, _weights  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sApi, K8sBindingError  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import build_api_client  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.modules.kong_k8s_binding import run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KIT = os.environ.get("MIXEDRUN_REALK8S_KIT") or os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "realk8s"))
CRDS = os.path.join(KIT, "crds", "gateway-api-v1.2.1-standard.yaml")
NS = "kic-binding"
ROUTE_PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/%s/httproutes/%s"


def _kit_reason():
    if not os.path.isfile(os.path.join(KIT, "k8s-cluster.sh")):
        return "the realk8s kit is absent (no %s/k8s-cluster.sh; set MIXEDRUN_REALK8S_KIT)" % KIT
    if not os.path.isfile(CRDS):
        return "the realk8s kit has no Gateway API CRDs at %s" % CRDS
    return None


class Cluster:
    def __init__(self, info):
        self.info = info
        self.api_client, _ns, _described = build_api_client({"kubeconfig": info["kubeconfig"]})
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.discovery = kubernetes.client.DiscoveryV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)

    def raw(self, method, path, body=None, query=None, content_type=None):
        """A raw request through the module's own client (either generation of the kubernetes client)."""
        return K8sApi(self.api_client).request(method, path, query=query, body=body, content_type=content_type)

    def slices(self, service):
        items = self.discovery.list_namespaced_endpoint_slice(NS, label_selector="kubernetes.io/service-name=%s" % service).items
        return [self.api_client.sanitize_for_serialization(item) for item in items]

    def route(self, name="shop"):
        return self.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes", name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _kit_reason()
    if reason:
        print("SKIP: " + reason)
        pytest.skip(reason)
    state = str(tmp_path_factory.mktemp("realk8s-binding"))
    env = dict(os.environ, REALK8S_STATE=state)
    started = time.time()
    proc = subprocess.run([os.path.join(KIT, "k8s-cluster.sh"), "up"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=240, check=False)
    if proc.returncode != 0:
        pytest.fail("k8s-cluster.sh up failed (exit %d): %s" % (proc.returncode, (proc.stderr or proc.stdout)[-2000:]))
    info = json.loads(proc.stdout[proc.stdout.index("{"):])
    print("realk8s up in %.1f s: %s" % (time.time() - started, info.get("server")))
    handle = Cluster(info)
    try:
        handle.core.create_namespace({"metadata": {"name": NS}})
        # the containers' Service: selector-less, its endpoints written here as the pods' (2 ready, 1 not ready)
        handle.core.create_namespaced_service(NS, {"metadata": {"name": "shop"}, "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
        handle.discovery.create_namespaced_endpoint_slice(NS, {
            "metadata": {"name": "shop-pods", "labels": {"kubernetes.io/service-name": "shop",
                                                         "endpointslice.kubernetes.io/managed-by": "test.mixedrun-pods"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.0.%d" % i], "conditions": {"ready": i != 3}} for i in (1, 2, 3)]})
        yield handle
    finally:
        handle.api_client.close()
        down = subprocess.run([os.path.join(KIT, "k8s-cluster.sh"), "down"], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120, check=False)
        print("realk8s down: exit %d" % down.returncode)


@pytest.fixture(scope="module")
def crds(cluster):
    """The Gateway API standard CRDs, installed with the kubernetes client, and served."""
    ext = kubernetes.client.ApiextensionsV1Api(cluster.api_client)
    with open(CRDS, encoding="utf-8") as handle:
        for doc in yaml.safe_load_all(handle):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                ext.create_custom_resource_definition(doc)
    deadline = time.time() + 30
    while True:
        try:
            cluster.custom.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes")
            return True
        except kubernetes.client.ApiException:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


def params(cluster, **overrides):
    base = dict(kubeconfig=cluster.info["kubeconfig"], context=None, host=None, api_key=None, ca_cert=None, validate_certs=None,
                name="shop", namespace=NS, route_name=None, domains=["shop.lab.test"], container_service="shop",
                port_name=None, container_port=None, container_endpoints=None,
                vm_endpoints=[{"target": "10.1.0.%d:8080" % i, "drained": False} for i in (1, 2, 3)],
                vm_target_weight=1, container_target_weight=1, gateway={"name": "kong", "namespace": None, "section_name": None},
                force_conflicts=False, request_timeout=20.0)
    base.update(overrides)
    return base


def _share_from_live(cluster, route_name="shop"):
    """Forward translation of what is live: the HTTPRoute's weights over the Services' slices, as KIC reads them."""
    refs = cluster.route(route_name)["spec"]["rules"][0]["backendRefs"]
    backends, kinds = [], {}
    for ref in refs:
        targets = _kic.slice_endpoints(cluster.slices(ref["name"]), "http")
        backends.append({"weight": ref.get("weight"), "endpoints": targets})
        for target in targets:
            kinds[target] = "vm" if ref["name"].endswith("-vms") else "container"
    weights = _kic.translate(backends)
    total = sum(weights.values())
    container = sum(w for t, w in weights.items() if kinds[t] == "container")
    return weights, kinds, (Fraction(100 * container, total) if total else None)


def test_missing_gateway_api_crds_is_a_clear_error(cluster):
    with pytest.raises(K8sBindingError) as info:
        run(params(cluster), False)
    message = str(info.value)
    assert "Gateway API" in message and "crds" in message and "gateway-api" in message
    with pytest.raises(kubernetes.client.ApiException):    # nothing written before the check
        cluster.core.read_namespaced_service("shop-vms", NS)


def test_exact_split_accepted_idempotent(cluster, crds):
    plan = _weights.plan_weights(3, 2, 12.5, max_error=0)
    args = params(cluster, vm_target_weight=plan["vm_weight"], container_target_weight=plan["container_weight"])
    checked = run(args, True)
    assert checked["changed"] and all(call.endswith("(check mode: not sent)") for call in checked["calls"])
    with pytest.raises(kubernetes.client.ApiException):
        cluster.core.read_namespaced_service("shop-vms", NS)
    first = run(args, False)
    assert first["changed"] and {o["action"] for o in first["objects"]} == {"created"}
    assert first["weights"]["container_ready_endpoints"] == 2 and first["weights"]["vm_ready_endpoints"] == 3
    service = cluster.core.read_namespaced_service("shop-vms", NS)
    assert service.spec.selector is None and service.spec.ports[0].name == "http"
    route = cluster.route()
    assert route["spec"]["hostnames"] == ["shop.lab.test"]
    assert route["spec"]["parentRefs"][0]["name"] == "kong"
    weights, kinds, share = _share_from_live(cluster)
    assert share == 12.5
    assert {w for t, w in weights.items() if kinds[t] == "vm"} == {plan["vm_weight"]}
    assert {w for t, w in weights.items() if kinds[t] == "container"} == {plan["container_weight"]}
    version = route["metadata"]["resourceVersion"]
    second = run(args, False)
    assert not second["changed"] and second["calls"] == []
    assert cluster.route()["metadata"]["resourceVersion"] == version


def test_half_percent_unequal_counts(cluster, crds):
    vms = [{"target": "10.1.0.%d:8080" % i, "drained": False} for i in range(1, 8)]
    plan = _weights.plan_weights(7, 2, 0.5, max_error=0)
    run(params(cluster, vm_endpoints=vms, vm_target_weight=plan["vm_weight"], container_target_weight=plan["container_weight"]), False)
    assert _share_from_live(cluster)[2] == Fraction(1, 2)


def test_slices_split_drained_ipv6_and_foreign_slice(cluster, crds):
    foreign = cluster.discovery.create_namespaced_endpoint_slice(NS, {
        "metadata": {"name": "shop-vms-by-someone", "labels": {"kubernetes.io/service-name": "shop-vms",
                                                               "endpointslice.kubernetes.io/managed-by": "someone.else"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.9.9.9"]}]})
    vms = [{"target": "10.20.%d.%d:8080" % (i // 250, i % 250 + 1), "drained": i == 7} for i in range(1200)]
    vms.append({"target": "[fd00::10]:8080", "drained": False})
    started = time.time()
    result = run(params(cluster, vm_endpoints=vms), False)
    print("1201 endpoints applied in %.2f s" % (time.time() - started))
    ours = sorted((s for s in cluster.slices("shop-vms") if s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "mixedrun.kong"),
                  key=lambda s: s["metadata"]["name"])
    assert [(s["addressType"], len(s["endpoints"])) for s in ours] == [("IPv4", 1000), ("IPv4", 200), ("IPv6", 1)]
    assert all(s["ports"][0]["name"] == "http" for s in ours)
    not_ready = [e["addresses"][0] for s in ours for e in s["endpoints"] if e["conditions"]["ready"] is False]
    assert not_ready == ["10.20.0.8"]
    assert result["weights"]["vm_ready_endpoints"] == 1200
    assert not run(params(cluster, vm_endpoints=vms), False)["changed"]
    # back to 3 VMs: the collection's surplus slices go, the foreign one stays as it was
    shrunk = run(params(cluster), False)
    assert sorted(o["name"] for o in shrunk["objects"] if o["action"] == "deleted") == ["shop-vms-ipv4-8080-1", "shop-vms-ipv6-8080-0"]
    names = sorted(s["metadata"]["name"] for s in cluster.slices("shop-vms"))
    assert names == ["shop-vms-by-someone", "shop-vms-ipv4-8080-0"]
    after = cluster.discovery.read_namespaced_endpoint_slice("shop-vms-by-someone", NS)
    assert after.metadata.resource_version == foreign.metadata.resource_version


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/mixedrun.kong.k8s:
      kubeconfig: "{{ kubeconfig }}"
      namespace: kic-binding
  tasks:
    - name: bind in check mode with diff
      mixedrun.kong.kong_k8s_binding: &bind
        name: cart
        domains: [cart.lab.test, "*.cart.lab.test"]
        container_service: shop
        port_name: http
        vm_endpoints:
          - target: 10.30.0.1:8080
          - target: 10.30.0.2:8080
            drained: true
          - target: "[fd00::30]:8080"
        vm_target_weight: 199
        container_target_weight: 1
        gateway: {name: kong, namespace: kong-system, section_name: http}
      check_mode: true
      diff: true
      register: checked
    - name: bind
      mixedrun.kong.kong_k8s_binding: *bind
      register: bound
    - name: bind again
      mixedrun.kong.kong_k8s_binding: *bind
      register: again
    - name: bad input fails naming the option
      mixedrun.kong.kong_k8s_binding:
        name: cart
        domains: [cart.lab.test]
        container_service: shop
        vm_endpoints: [{target: "vm-1.lab.test:8080"}]
        vm_target_weight: 1
        container_target_weight: 1
        gateway: {name: kong}
      register: bad
      ignore_errors: true
    - name: results
      ansible.builtin.copy:
        content: "{{ {'checked': checked, 'bound': bound, 'again': again, 'bad': bad} | to_json }}"
        dest: "{{ out }}"
      check_mode: false
"""


def test_task_through_ansible_playbook(cluster, crds, tmp_path):
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    for name in ("K8S_AUTH_KUBECONFIG", "K8S_AUTH_HOST", "K8S_AUTH_API_KEY"):
        env.pop(name, None)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"),
               "-e", json.dumps({"kubeconfig": cluster.info["kubeconfig"], "out": str(out)})]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["checked"]["changed"] and "HTTPRoute/cart" in result["checked"]["diff"]["after"]
    assert result["bound"]["changed"] and result["bound"]["weights"]["vm_backend"] == 398 and result["bound"]["weights"]["container_backend"] == 2
    assert not result["again"]["changed"] and result["again"]["calls"] == []
    assert result["bad"]["failed"] and "vm_endpoints[0].target must be an IP:port" in result["bad"]["msg"]
    route = cluster.route("cart")
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "kong",
                                            "namespace": "kong-system", "sectionName": "http"}]
    assert route["spec"]["hostnames"] == ["cart.lab.test", "*.cart.lab.test"]
    weights, kinds, share = _share_from_live(cluster, "cart")
    assert share == Fraction(100 * 2, 2 * 199 + 2) and sorted(set(weights.values())) == [1, 199]


def test_conflicting_field_manager_reported_then_forced(cluster, crds):
    run(params(cluster), False)
    route = cluster.route()
    refs = route["spec"]["rules"][0]["backendRefs"]
    other = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "shop", "namespace": NS},
             "spec": {"rules": [{"backendRefs": [dict(refs[0], weight=7), dict(refs[1], weight=70)]}]}}
    cluster.raw("PATCH", ROUTE_PATH % (NS, "shop"), body=other, query={"fieldManager": "weights-editor", "force": "true"},
                content_type="application/apply-patch+yaml")
    with pytest.raises(K8sBindingError) as info:
        run(params(cluster), False)
    assert info.value.status == 409 and "weights-editor" in str(info.value) and "force_conflicts" in str(info.value)
    assert [r["weight"] for r in cluster.route()["spec"]["rules"][0]["backendRefs"]] == [7, 70]
    forced = run(params(cluster, force_conflicts=True), False)
    assert forced["changed"]
    assert [r["weight"] for r in cluster.route()["spec"]["rules"][0]["backendRefs"]] == [3, 2]


EXAMPLE_GATEWAY = os.path.join(REPO, "inventories", "example", "kic", "gateway.yml")
PLURALS = {"Namespace": "/api/v1/namespaces/%(name)s",
           "GatewayClass": "/apis/gateway.networking.k8s.io/v1/gatewayclasses/%(name)s",
           "Gateway": "/apis/gateway.networking.k8s.io/v1/namespaces/%(namespace)s/gateways/%(name)s"}


def test_example_gateway_and_bind_kic_playbook(cluster, crds, tmp_path):
    """inventories/example/kic/gateway.yml is accepted by the real API server with the CRDs, and
    playbooks/bind_kic.yml binds inventory VMs and the containers' Service at an exact share given as an -e string."""
    with open(EXAMPLE_GATEWAY, encoding="utf-8") as handle:
        docs = yaml.safe_load(handle)["items"]
    assert [doc["kind"] for doc in docs] == ["Namespace", "GatewayClass", "Gateway"]
    for doc in docs:
        path = PLURALS[doc["kind"]] % dict(doc["metadata"], namespace=doc["metadata"].get("namespace"))
        cluster.raw("PATCH", path, body=doc, query={"fieldManager": "mixedrun-example-test"},
                    content_type="application/apply-patch+yaml")
    gateway = cluster.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", "kong", "gateways", "kong")
    assert gateway["spec"]["gatewayClassName"] == "kong"

    hosts = dict(("kic-vm-%d" % i, {"ansible_host": "10.40.0.%d" % i, "mixed_port": 8080,
                                    "mixed_labels": {"app": "kicdemo", "tier": "web"}}) for i in (1, 2, 3))
    hosts["localhost"] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_NOCOLOR="1")
    for name in ("K8S_AUTH_KUBECONFIG", "K8S_AUTH_HOST", "K8S_AUTH_API_KEY"):
        env.pop(name, None)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
               os.path.join(REPO, "playbooks", "bind_kic.yml"),
               "-e", "kic_share=12.5", "-e", "kic_service=kicdemo", "-e", "kic_namespace=" + NS,
               "-e", "kic_vm_selector=app=kicdemo", "-e", "kic_kubeconfig=" + cluster.info["kubeconfig"],
               "-e", json.dumps({"kic_domains": ["kicdemo.lab.test"], "kic_gateway": {"name": "kong", "namespace": "kong"}})]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # 3 VMs and the 2 ready pods at 12.5 %: per-target weights 14 and 3, backendRef weights 42 and 6
    assert "backendRef weights VMs 42, containers 6" in " ".join(proc.stdout.split()), proc.stdout[-2000:]
    route = cluster.route("kicdemo")
    assert route["spec"]["parentRefs"][0]["name"] == "kong" and route["spec"]["hostnames"] == ["kicdemo.lab.test"]
    _weights_live, _kinds, share = _share_from_live(cluster, "kicdemo")
    assert share == 12.5
