# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kong_traffic_split with the Admin API mocked at the transport (responses), Kong-shaped bodies."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import uuid

import pytest
import responses

from kong_module_helpers import patch_module_args

from ansible_collections.mixedrun.kong.plugins.module_utils import _balancer as split_balancer
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongClient
from ansible_collections.mixedrun.kong.plugins.modules import kong_traffic_split as split

ADMIN = "http://127.0.0.1:8001"
ADMIN2 = "http://127.0.0.2:8001"
TOKEN = "s3cr3t-token-value"


class FakeKong:
    """Just enough of Kong's upstream/target API, stateful, with Kong's answers for the paths used."""

    def __init__(self, rsps, base=ADMIN, node_id=None, upstreams=None, apply_writes=True):
        self.base = base
        self.node_id = node_id or str(uuid.uuid4())
        self.upstreams = upstreams if upstreams is not None else {}
        self.apply_writes = apply_writes
        self.writes = []
        self.seen = []          # (method, path, headers) of every request received
        self.fail_patch = {}    # target -> (status, body): Kong refuses that PATCH
        self.role = "traditional"
        # This node's balancer: {upstream: {target: weight}} it routes with. None: it follows the database at once;
        # ``lag_reads`` /health reads after a write still show the weights from before it.
        self.balancer = None
        self.lag_reads = 0
        self.unknown_reads = 0      # /health answers 404 this many times (a data plane without the new upstream yet)
        host = re.escape(base)
        rsps.add_callback(responses.GET, re.compile(host + r"/upstreams/([^/?]+)/health(\?.*)?$"), self.health)
        rsps.add_callback(responses.GET, re.compile(host + r"/upstreams/([^/?]+)/targets(\?.*)?$"), self.list_targets)
        rsps.add_callback(responses.PATCH, re.compile(host + r"/upstreams/([^/]+)/targets/([^/]+)$"), self.patch_target)
        rsps.add_callback(responses.GET, re.compile(host + r"/upstreams/([^/?]+)$"), self.get_upstream)
        rsps.add_callback(responses.GET, re.compile(host + r"/$"), self.root)

    def add_upstream(self, name, targets):
        """targets: [(target, weight, tags)]"""
        self.upstreams[name] = {"id": str(uuid.uuid4()), "targets": []}
        for index, (target, weight, tags) in enumerate(targets):
            self.upstreams[name]["targets"].append({
                "id": str(uuid.uuid4()), "target": target, "weight": weight, "tags": tags,
                "upstream": {"id": self.upstreams[name]["id"]}, "created_at": 1700000000.123 + index,
                "updated_at": 1700000000.123 + index})

    def weights(self, name):
        return dict((t["target"], t["weight"]) for t in self.upstreams[name]["targets"])

    @staticmethod
    def _json(status, body):
        return (status, {"Content-Type": "application/json"}, json.dumps(body))

    def _saw(self, request):
        self.seen.append((request.method, request.path_url, dict(request.headers)))

    def root(self, request):
        self._saw(request)
        return self._json(200, {"node_id": self.node_id, "version": "3.9.0", "configuration": {"role": self.role}})

    def health(self, request):
        """/upstreams/{u}/health: the database's targets with this node's balancer weight (data.nodeWeight)."""
        self._saw(request)
        name = request.path_url.split("?")[0].split("/")[2]
        upstream = self.upstreams.get(name)
        if upstream is None or self.unknown_reads > 0:
            self.unknown_reads = max(0, self.unknown_reads - 1)
            return self._json(404, {"message": "Not found"})
        if self.lag_reads > 0:
            self.lag_reads -= 1
        else:
            self.balancer = None
        routed = (self.balancer or {}).get(name) or dict((t["target"], t["weight"]) for t in upstream["targets"])
        if "balancer_health=1" in request.path_url:
            hosts = [{"host": target.rsplit(":", 1)[0], "port": int(target.rsplit(":", 1)[1]), "nodeWeight": weight,
                      "addresses": [{"weight": weight, "healthy": True}]} for target, weight in routed.items() if weight is not None]
            return self._json(200, {"node_id": self.node_id, "data": {"health": "HEALTHCHECKS_OFF", "balancer_health": "HEALTHY",
                                                                      "details": {"hosts": hosts}}})
        data = []
        for target in upstream["targets"]:
            item = dict(target, health="HEALTHCHECKS_OFF")
            weight = routed.get(target["target"])
            if weight is None:
                del item["health"]
            else:
                item["data"] = {"nodeWeight": weight, "addresses": [{"weight": weight}]}
            data.append(item)
        return self._json(200, {"data": data, "next": None, "node_id": self.node_id})

    def freeze_balancer(self, reads):
        """The balancer keeps routing with today's weights for the next ``reads`` /health reads."""
        self.balancer = dict((name, self.weights(name)) for name in self.upstreams)
        self.lag_reads = reads

    def get_upstream(self, request):
        self._saw(request)
        name = request.path_url.split("?")[0].rsplit("/", 1)[1]
        upstream = self.upstreams.get(name)
        if upstream is None:
            return self._json(404, {"message": "Not found"})
        return self._json(200, {"id": upstream["id"], "name": name, "algorithm": upstream.get("algorithm", "round-robin")})

    def list_targets(self, request):
        self._saw(request)
        name = request.path_url.split("?")[0].split("/")[2]
        upstream = self.upstreams.get(name)
        if upstream is None:
            return self._json(404, {"message": "Not found"})
        data = sorted(upstream["targets"], key=lambda t: -t["created_at"])
        return self._json(200, {"data": data, "next": None})

    def patch_target(self, request):
        self._saw(request)
        parts = request.path_url.split("/")
        name, ident = parts[2], parts[4]
        upstream = self.upstreams.get(name)
        for target in (upstream or {}).get("targets", []):
            if ident in (target["id"], target["target"]):
                body = json.loads(request.body)
                weight = body.get("weight")
                if not isinstance(weight, int) or not 0 <= weight <= 65535:
                    return self._json(400, {"code": 2, "name": "schema violation", "message": "schema violation",
                                            "fields": {"weight": "value should be between 0 and 65535"}})
                if target["target"] in self.fail_patch:
                    return self._json(*self.fail_patch[target["target"]])
                self.writes.append((target["target"], weight))
                if self.apply_writes:
                    target["weight"] = weight
                return self._json(200, target)
        return self._json(404, {"message": "Not found"})


VMS = ["127.0.10.%d:18080" % i for i in range(1, 8)]
CONTAINERS = ["127.0.20.%d:18080" % i for i in range(1, 4)]


def tagged(targets, kind, weight):
    return [(t, weight, ["mixedrun-managed", "mixedrun-kind:%s" % kind, "mixedrun-service:shop"]) for t in targets]


def params(**kwargs):
    base = dict(admin_url=ADMIN, upstream="shop", container_share=None, vm_targets=None, container_targets=None,
                nodes=None, vm_tag="mixedrun-kind:vm", container_tag="mixedrun-kind:container", other_targets="fail",
                max_error=0.05, verify_admin_urls=[], verify_timeout=1.0, concurrency=4)
    base.update(kwargs)
    return base


def run(p, check_mode=False, diff=True):
    client = KongClient.from_params(p, check_mode=check_mode, retries=0)
    return split.ensure_traffic_split(client, p, check_mode=check_mode, diff=diff)


@pytest.fixture
def kong():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeKong(rsps)
        fake.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        yield fake


def test_read_only_reports_current_share(kong):
    result = run(params())
    assert result["changed"] is False
    assert result["achieved_share"] == 0.0 and result["previous_share"] == 0.0
    assert result["planned_share"] is None
    assert result["counts"] == {"vm": 7, "container": 3, "other": 0}
    assert result["vm_weight"] == 1 and result["container_weight"] == 0
    assert result["verified_nodes"] == {ADMIN: kong.node_id}
    assert not kong.writes
    assert all(call["method"] == "GET" for call in result["api_calls"])


def test_split_seven_three_exact(kong):
    result = run(params(container_share=10))
    assert result["changed"] is True
    assert (result["vm_weight"], result["container_weight"]) == (27, 7)
    assert result["achieved_share"] == 10.0 and result["error"] == 0.0
    assert result["previous_share"] == 0.0
    weights = kong.weights("shop")
    assert all(weights[t] == 27 for t in VMS) and all(weights[t] == 7 for t in CONTAINERS)
    assert result["weights_after"] == weights
    assert result["verified_nodes"] == {ADMIN: kong.node_id}
    assert result["diff"]["before"]["container_share"] == 0.0
    assert result["diff"]["after"]["container_share"] == 10.0
    # every target changed: 10 PATCHes, raises (containers 0 -> 7, VMs 1 -> 27) all go up
    assert len([c for c in result["api_calls"] if c["method"] == "PATCH"]) == 10


def test_idempotent_and_fewest_writes(kong):
    run(params(container_share=50))
    kong.writes[:] = []
    again = run(params(container_share=50))
    assert again["changed"] is False
    assert not kong.writes
    assert not [c for c in again["api_calls"] if c["method"] == "PATCH"]
    # only the targets whose weight differs are written
    kong.upstreams["shop"]["targets"][0]["weight"] = 99
    fixed = run(params(container_share=50))
    assert fixed["changed"] is True
    assert len(kong.writes) == 1


def test_raises_before_lowers(kong):
    """0 % -> 100 %: containers get weight before the VMs lose theirs, so the total never hits 0."""
    result = run(params(container_share=100))
    order = list(kong.writes)
    assert sorted(t for t, _unused in order[:3]) == sorted(CONTAINERS)
    assert all(w == 1 for _unused, w in order[:3])
    assert all(w == 0 for _unused, w in order[3:])
    assert result["vm_weight"] == 0 and result["achieved_share"] == 100.0


def test_check_mode_writes_nothing(kong):
    result = run(params(container_share=25), check_mode=True)
    assert result["changed"] is True
    assert not kong.writes
    assert kong.weights("shop")[VMS[0]] == 1
    patches = [c for c in result["api_calls"] if c["method"] == "PATCH"]
    assert patches and all(c.get("check_mode") for c in patches)
    assert result["verified_nodes"] == {}
    assert result["achieved_share"] == pytest.approx(25, abs=0.05)


def test_explicit_groups_and_nodes(kong):
    result = run(params(container_share=50, vm_targets=VMS[:2] + [{"target": VMS[2]}],
                        container_targets=[{"address": "127.0.20.1", "port": 18080}], other_targets="zero"))
    weights = kong.weights("shop")
    assert result["counts"] == {"vm": 3, "container": 1, "other": 6}
    assert weights[CONTAINERS[0]] == 3 and weights[VMS[0]] == 1 and weights[VMS[5]] == 0
    nodes = [{"name": "vm-%d" % i, "kind": "vm", "target": t} for i, t in enumerate(VMS)]
    nodes += [{"name": "c-%d" % i, "kind": "container", "address": t.split(":")[0], "port": 18080}
              for i, t in enumerate(CONTAINERS)]
    result = run(params(container_share=30, nodes=nodes))
    assert result["counts"] == {"vm": 7, "container": 3, "other": 0}
    assert result["error"] <= 0.05


def test_missing_targets_fail_naming_them(kong):
    with pytest.raises(split.SplitError) as err:
        run(params(container_share=10, container_targets=["127.0.99.1:18080", CONTAINERS[0]]))
    assert "127.0.99.1:18080" in str(err.value) and "bind them first" in str(err.value)
    assert not kong.writes


def test_unknown_loaded_target_fails_unless_told(kong):
    kong.upstreams["shop"]["targets"].append({"id": "x1", "target": "127.0.50.1:80", "weight": 100, "tags": None,
                                             "created_at": 1800000000.5})
    with pytest.raises(split.SplitError, match="neither group"):
        run(params(container_share=10))
    assert not kong.writes
    ignored = run(params(container_share=10, other_targets="ignore"))
    assert ignored["achieved_share"] == 10.0 and kong.weights("shop")["127.0.50.1:80"] == 100
    zeroed = run(params(container_share=10, other_targets="zero"))
    assert kong.weights("shop")["127.0.50.1:80"] == 0 and zeroed["changed"]


def test_doubly_tagged_target_fails(kong):
    kong.upstreams["shop"]["targets"][0]["tags"] = ["mixedrun-kind:vm", "mixedrun-kind:container"]
    with pytest.raises(split.SplitError, match="both VM and container"):
        run(params(container_share=10))


def test_target_in_both_lists_fails(kong):
    with pytest.raises(split.SplitError, match="both the VM and the container group"):
        run(params(container_share=10, vm_targets=VMS, container_targets=[VMS[0]]))


def test_missing_upstream(kong):
    with pytest.raises(split.SplitError, match="upstream nope does not exist"):
        run(params(upstream="nope", container_share=10))


def test_impossible_plan_changes_nothing(kong):
    with pytest.raises(split.SplitError, match="impossible: there are no container targets"):
        run(params(container_share=10, container_targets=[], other_targets="ignore"))
    assert not kong.writes


@pytest.mark.parametrize("field,value,pattern", [
    ("container_share", 120, "container_share must be between 0 and 100"),
    ("max_error", -1, "max_error"),
    ("concurrency", 0, "concurrency"),
    ("vm_targets", ["not a target!"], r"vm_targets\[0\] is not a valid target"),
    ("container_targets", [{"weight": 3}], r"container_targets\[0\] must have a 'target'"),
    ("nodes", [{"name": "n1", "kind": "pod", "target": "1.2.3.4:80"}], r"nodes\[0\] \(n1\) has kind 'pod'"),
    ("vm_tag", "mixedrun-kind:container", "must differ"),
])
def test_bad_input_names_the_field(kong, field, value, pattern):
    with pytest.raises(split.SplitError, match=pattern):
        run(params(**{field: value}))
    assert not kong.writes


def test_nodes_and_lists_are_exclusive(kong):
    with pytest.raises(split.SplitError, match="mutually exclusive"):
        run(params(container_share=10, nodes=[], vm_targets=VMS))


def test_verifies_every_node():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        one = FakeKong(rsps, base=ADMIN)
        two = FakeKong(rsps, base=ADMIN2, upstreams=one.upstreams)  # same database
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        result = run(params(container_share=50, verify_admin_urls=[ADMIN2]))
        assert result["verified_nodes"] == {ADMIN: one.node_id, ADMIN2: two.node_id}
        assert any(c.get("node") == ADMIN2 for c in result["api_calls"])


def test_node_that_does_not_show_the_plan_fails():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        one = FakeKong(rsps, base=ADMIN)
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        stale = FakeKong(rsps, base=ADMIN2)
        stale.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        with pytest.raises(split.SplitError) as err:
            run(params(container_share=50, verify_admin_urls=[ADMIN2], verify_timeout=0.3))
        assert ADMIN2 in str(err.value) and "does not show the planned weights" in str(err.value)
        assert err.value.result["verified_nodes"] == {ADMIN: one.node_id}


def test_kong_that_ignores_writes_fails():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeKong(rsps, apply_writes=False)
        fake.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        with pytest.raises(split.SplitError, match="does not show the planned weights"):
            run(params(container_share=50, verify_timeout=0.2))


def test_module_main_fails_cleanly_without_leaking_the_token(kong, capsys):
    args = params(container_share=10, container_targets=["127.0.99.1:18080"], admin_token=TOKEN)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            split.main()
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] is True
    assert "127.0.99.1:18080" in out["msg"] and out["msg"].startswith("Failed to split the traffic of upstream shop")
    assert TOKEN not in json.dumps(out)
    assert out["api_calls"]


def test_module_main_check_mode(kong, capsys):
    args = params(container_share=10, _ansible_check_mode=True, _ansible_diff=True, admin_token=TOKEN)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            split.main()
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is True and "failed" not in out
    assert out["weights_after"][VMS[0]] == 27
    assert out["diff"]["after"]["container_share"] == 10.0
    assert not kong.writes
    assert TOKEN not in json.dumps(out)
    # the token was sent as the RBAC header, on every request
    assert kong.seen
    assert all(headers.get("Kong-Admin-Token") == TOKEN for _method, _path, headers in kong.seen)


def test_rbac_header_and_workspace_on_every_request(kong):
    """The token goes in the configured header on reads and writes alike."""
    run(params(container_share=50, admin_token=TOKEN, admin_token_header="X-Admin-Key"))
    assert kong.writes
    methods = set(method for method, _path, _headers in kong.seen)
    assert methods == {"GET", "PATCH"}
    assert all(headers.get("X-Admin-Key") == TOKEN and "Kong-Admin-Token" not in headers
               for _method, _path, headers in kong.seen)


# -- fewest writes ------------------------------------------------------------------------------------------
def test_keeps_the_vm_weight_when_it_can(kong):
    """7 VMs at 27 + 3 containers at 7 (10 %) -> 50 %: only the 3 containers change (to 63)."""
    run(params(container_share=10))
    kong.writes[:] = []
    result = run(params(container_share=50))
    assert result["changed"] and result["writes"] == 3
    assert sorted(kong.writes) == sorted((t, 63) for t in CONTAINERS)
    assert (result["vm_weight"], result["container_weight"]) == (27, 63)
    assert result["achieved_share"] == 50.0 and result["error"] == 0.0
    assert len([c for c in result["api_calls"] if c["method"] == "PATCH"]) == 3


def test_share_zero_from_vms_at_100_writes_nothing():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeKong(rsps)
        fake.add_upstream("shop", tagged(VMS, "vm", 100) + tagged(CONTAINERS, "container", 0))
        result = run(params(container_share=0))
        assert result["changed"] is False and result["writes"] == 0 and not fake.writes
        assert (result["vm_weight"], result["container_weight"]) == (100, 0)
        assert result["verified_nodes"] == {ADMIN: fake.node_id}   # still read back


def test_weights_already_within_the_error_are_not_rewritten():
    """165/1 over 3+3 gives 0.60241 %: within 0.05 of 0.6, so nothing is written (a rewrite to 497/3 would
    only move 0.002 points)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeKong(rsps)
        fake.add_upstream("shop", tagged(VMS[:3], "vm", 165) + tagged(CONTAINERS, "container", 1))
        result = run(params(container_share=0.6))
        assert result["changed"] is False and not fake.writes
        assert result["error"] <= 0.05 and result["achieved_share"] == pytest.approx(0.60241, abs=1e-5)
        strict = run(params(container_share=0.6, max_error=0.001))
        assert strict["changed"] and strict["error"] <= 0.001


def test_check_mode_reports_the_writes_it_would_make(kong):
    run(params(container_share=10))
    kong.writes[:] = []
    result = run(params(container_share=50), check_mode=True)
    assert result["writes"] == 3 and not kong.writes
    assert len([c for c in result["api_calls"] if c.get("check_mode")]) == 3


# -- failures -----------------------------------------------------------------------------------------------
def test_patch_failing_partway_reports_what_was_applied(kong):
    """0 % -> 100 %: the raises go first; one container refuses; the VMs are not lowered (still weight)."""
    kong.fail_patch[CONTAINERS[1]] = (500, {"message": "An unexpected error occurred"})
    with pytest.raises(split.SplitError) as err:
        run(params(container_share=100))
    text = str(err.value)
    assert "failed to set the weight of 1 target(s)" in text and CONTAINERS[1] in text
    assert "2 write(s) were applied" in text and "re-run" in text
    applied = err.value.result["applied"]
    assert sorted(applied) == sorted([CONTAINERS[0], CONTAINERS[2]])
    assert err.value.result["kong_error"]["status"] == 500
    assert err.value.result["api_calls"][-1]["method"] == "PATCH"
    # the lowering phase never ran: every VM still carries its weight, so the upstream is never empty
    weights = kong.weights("shop")
    assert all(weights[t] == 1 for t in VMS)
    assert weights[CONTAINERS[1]] == 0 and weights[CONTAINERS[0]] == 1
    # a re-run finishes the job with only the missing writes
    del kong.fail_patch[CONTAINERS[1]]
    kong.writes[:] = []
    result = run(params(container_share=100))
    assert result["achieved_share"] == 100.0
    assert sorted(t for t, _unused in kong.writes) == sorted([CONTAINERS[1]] + VMS)


def test_read_only_reports_nodes_that_disagree():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        one = FakeKong(rsps, base=ADMIN)
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        two = FakeKong(rsps, base=ADMIN2)
        two.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 5))
        result = run(params(verify_admin_urls=[ADMIN2]))
        assert result["consistent"] is False
        assert result["changed"] is False and not one.writes and not two.writes
        assert result["verified_nodes"] == {ADMIN: one.node_id, ADMIN2: two.node_id}
        assert result["achieved_share"] == 0.0      # the share of the module's own admin_url
        # and when they agree
        two.upstreams["shop"]["targets"] = [dict(t) for t in one.upstreams["shop"]["targets"]]
        assert run(params(verify_admin_urls=[ADMIN2]))["consistent"] is True


# -- secrets in URLs ----------------------------------------------------------------------------------------
def test_credentials_in_urls_never_show(capsys):
    password = "pa55-in-url"
    admin = "http://ops:%s@127.0.0.1:8001" % password
    other = "http://ops:%s@127.0.0.2:8001" % password
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # requests keeps the user-info in the URL it sends (and adds a Basic Authorization header)
        one = FakeKong(rsps, base=admin)
        FakeKong(rsps, base=other, upstreams=one.upstreams)
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        args = params(admin_url=admin, verify_admin_urls=[other], container_share=10,
                      _ansible_check_mode=False, _ansible_diff=True)
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                split.main()
        text = capsys.readouterr().out
        out = json.loads(text)
        assert "failed" not in out, out.get("msg")
        assert password not in text and "ops:" not in text
        assert "http://***@127.0.0.2:8001" in out["verified_nodes"]
        # the invocation echoes the options with the credentials masked
        assert "********" in json.dumps(out["invocation"]["module_args"]["verify_admin_urls"])
        # and an error names the node without them
        stale = params(admin_url=admin, verify_admin_urls=["http://ops:%s@127.0.0.9:8001" % password],
                       container_share=50, verify_timeout=0.1)
        with patch_module_args(stale):
            with pytest.raises(SystemExit):
                split.main()
        text = capsys.readouterr().out
        out = json.loads(text)
        assert out["failed"] and password not in text
        assert "127.0.0.9" in out["msg"]


def test_share_as_exact_fraction_text(kong):
    """What the mixed_service role passes: the exact share some weights give, so max_error 0 still holds."""
    run(params(container_share=0.6, vm_targets=VMS[:3], container_targets=CONTAINERS, other_targets="zero"))
    kong.writes[:] = []
    weights = kong.weights("shop")
    share = "%d/%d" % (100 * 3 * weights[CONTAINERS[0]], 3 * weights[VMS[0]] + 3 * weights[CONTAINERS[0]])
    result = run(params(container_share=share, max_error=0, vm_targets=VMS[:3], container_targets=CONTAINERS,
                        other_targets="zero"))
    assert result["changed"] is False and not kong.writes and result["error"] == 0.0
    # the rounded float of the same share cannot be met exactly: it says what is possible
    with pytest.raises(split.SplitError, match="raise max_error"):
        run(params(container_share=result["achieved_share"], max_error=0, vm_targets=VMS[:3],
                   container_targets=CONTAINERS, other_targets="zero"))


@pytest.mark.parametrize("value,pattern", [
    ("abc", "container_share must be a number such as 25 or 0.5, got 'abc'"),
    ("", "container_share must be a number"),
    ("1/0", "container_share must be a number"),
    (True, "container_share must be a number, got True"),
    ("250/2", "container_share must be between 0 and 100"),
])
def test_bad_share_text(kong, value, pattern):
    with pytest.raises(split.SplitError, match=re.escape(pattern) if "'" in pattern else pattern):
        run(params(container_share=value))
    assert not kong.writes


# -- balancers: what each node routes with, not what the database holds ------------------------------------------
DP1 = "http://127.0.0.3:8100"
DP2 = "http://127.0.0.4:8100"


def test_waits_until_a_lagging_balancer_follows_and_reports_the_time():
    """Real Kong 3.9, 2 traditional nodes: both Admin APIs show the write at once (one database), the second
    node's balancer follows at its next cluster-event poll."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        one = FakeKong(rsps)
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        two = FakeKong(rsps, base=ADMIN2, upstreams=one.upstreams)
        two.freeze_balancer(reads=3)
        result = run(params(container_share=50, verify_admin_urls=[ADMIN2], verify_timeout=5.0))
        assert set(result["balancers"]) == {ADMIN, ADMIN2}
        assert result["balancers"][ADMIN2]["node_id"] == two.node_id
        assert result["balancers"][ADMIN2]["seconds"] >= 3 * split_balancer.POLL_INTERVAL * 0.9
        assert result["converged_seconds"] == result["balancers"][ADMIN2]["seconds"]
        assert len([s for s in two.seen if "/health" in s[1]]) == 4


def test_a_balancer_that_never_follows_fails_naming_the_node_and_its_weights():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        one = FakeKong(rsps)
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        two = FakeKong(rsps, base=ADMIN2, upstreams=one.upstreams)
        two.freeze_balancer(reads=10 ** 6)
        with pytest.raises(split.SplitError) as err:
            run(params(container_share=50, verify_admin_urls=[ADMIN2], verify_timeout=0.6))
        text = str(err.value)
        assert "1 of 2 Kong node(s) still route upstream shop with other weights" in text and ADMIN2 in text
        assert "127.0.10.1:18080 routes with 1, planned 3" in text and "db_update_frequency" in text and re.search(r"0\.[6-9] s after", text)
        assert err.value.result["balancers"][ADMIN]["node_id"] == one.node_id
        assert one.weights("shop")["127.0.20.1:18080"] == 7          # the write happened: the error says where it stands


def test_read_only_check_is_not_consistent_while_a_balancer_lags():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        one = FakeKong(rsps)
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        two = FakeKong(rsps, base=ADMIN2, upstreams=one.upstreams)
        two.freeze_balancer(reads=10 ** 6)
        for target in one.upstreams["shop"]["targets"]:
            target["weight"] = 3                                      # a change the second balancer never sees
        result = run(params(verify_admin_urls=[ADMIN2], verify_timeout=0.5))
        assert result["consistent"] is False
        assert result["balancers"][ADMIN]["follows"] is True and result["balancers"][ADMIN2]["follows"] is False
        assert result["balancers"][ADMIN2]["lagging"]["127.0.10.1:18080"] == 1


def test_read_only_check_waits_for_a_balancer_still_following_a_change():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        one = FakeKong(rsps)
        one.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
        two = FakeKong(rsps, base=ADMIN2, upstreams=one.upstreams)
        two.freeze_balancer(reads=3)
        for target in one.upstreams["shop"]["targets"]:
            target["weight"] = 3
        result = run(params(verify_admin_urls=[ADMIN2], verify_timeout=5.0))
        assert result["consistent"] is True and result["balancers"][ADMIN2]["follows"] is True
        assert result["balancers"][ADMIN2]["seconds"] > 0 and result["writes"] == 0


def _control_plane(rsps, planes):
    cp = FakeKong(rsps)
    cp.role = "control_plane"
    cp.add_upstream("shop", tagged(VMS, "vm", 1) + tagged(CONTAINERS, "container", 0))
    rsps.add(responses.GET, re.compile(re.escape(ADMIN) + r"/clustering/data-planes(\?.*)?$"),
             json={"data": planes, "next": None})
    return cp


def _plane(ident, age=5):
    import time  # pylint: disable=import-outside-toplevel
    return {"id": ident, "last_seen": int(time.time()) - age, "config_hash": "a" * 32, "hostname": "dp", "ip": "127.0.0.1"}


def test_a_control_plane_alone_is_refused_before_any_write():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        cp = _control_plane(rsps, [_plane("dp-1"), _plane("dp-2")])
        with pytest.raises(split.SplitError) as err:
            run(params(container_share=50))
        assert "admin_url is a hybrid-mode control plane" in str(err.value) and "verify_balancer_urls" in str(err.value)
        assert "Nothing was changed" in str(err.value) and cp.writes == []


def test_every_connected_data_plane_must_be_verified():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        cp = _control_plane(rsps, [_plane("dp-1"), _plane("dp-2"), _plane("gone", age=3600)])
        FakeKong(rsps, base=DP1, upstreams=cp.upstreams)
        with pytest.raises(split.SplitError) as err:
            run(params(container_share=50, verify_balancer_urls=[DP1]))
        assert "lists 2 connected data planes (dp-1, dp-2) but verify_balancer_urls names 1" in str(err.value)
        assert cp.writes == []


def test_hybrid_waits_for_each_data_plane_and_sends_no_token_there():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        cp = _control_plane(rsps, [_plane("dp-1"), _plane("dp-2")])
        dp1 = FakeKong(rsps, base=DP1, upstreams=cp.upstreams)
        dp2 = FakeKong(rsps, base=DP2, upstreams=cp.upstreams)
        dp2.freeze_balancer(reads=2)
        result = run(params(container_share=50, verify_balancer_urls=[DP1, DP2], admin_token=TOKEN, verify_timeout=5.0))
        assert set(result["balancers"]) == {DP1, DP2} and result["data_planes"] == 2 and result["kong_role"] == "control_plane"
        assert result["balancers"][DP2]["seconds"] > 0 and result["balancers"][DP1]["node_id"] == dp1.node_id
        assert all("Kong-Admin-Token" not in headers for dp in (dp1, dp2) for _m, _p, headers in dp.seen)
        assert any(c.get("node") == DP2 and "/health" in c["path"] for c in result["api_calls"])


# -- only round-robin splits in proportion to the weights ---------------------------------------------------------
@pytest.mark.parametrize("algorithm, words", [
    ("least-connections", "lowest (connections + 1) / weight"),
    ("latency", "latency / weight of two random addresses"),
    ("consistent-hashing", "keeps every hash key on one address"),
])
def test_a_non_proportional_algorithm_is_refused_before_any_write(kong, algorithm, words):
    kong.upstreams["shop"]["algorithm"] = algorithm
    with pytest.raises(split.SplitError) as err:
        run(params(container_share=1))
    text = str(err.value)
    assert "uses the %s algorithm" % algorithm in text and words in text
    assert "algorithm: round-robin" in text and "approximate: true" in text and "Nothing was changed" in text
    assert kong.writes == []


def test_approximate_sets_the_weights_and_says_so(kong):
    kong.upstreams["shop"]["algorithm"] = "least-connections"
    result = run(params(container_share=50, approximate=True))
    assert result["changed"] is True and result["approximate"] is True and result["algorithm"] == "least-connections"
    # read-only mode reports it too, without refusing
    assert run(params())["approximate"] is True
    kong.upstreams["shop"]["algorithm"] = "round-robin"
    assert run(params())["approximate"] is False


def test_host_name_targets_are_refused_before_any_write():
    """Kong 3.9 balancers.lua: a host name's weight goes to every address it resolves to; SRV replaces it."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeKong(rsps)
        fake.add_upstream("shop", tagged(VMS[:2], "vm", 1) + tagged(["app.svc.example:8080"], "container", 0))
        with pytest.raises(split.SplitError) as err:
            run(params(container_share=10))
        assert "host-name target(s) app.svc.example:8080" in str(err.value) and "resolves to" in str(err.value)
        assert "by IP address" in str(err.value) and fake.writes == []
        assert run(params())["achieved_share"] == 0.0          # reading the share is still fine


def test_a_data_plane_that_does_not_know_the_upstream_yet_is_waited_for():
    """Real Kong 3.9.3, hybrid: right after the control plane created an upstream, a data plane's Status API answers
    404 for it until the new configuration arrives."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        cp = _control_plane(rsps, [_plane("dp-1")])
        dp1 = FakeKong(rsps, base=DP1, upstreams=cp.upstreams)
        dp1.unknown_reads = 3
        result = run(params(container_share=50, verify_balancer_urls=[DP1], verify_timeout=5.0))
        assert result["balancers"][DP1]["node_id"] == dp1.node_id and result["balancers"][DP1]["seconds"] > 0
        dp1.unknown_reads = 10 ** 6
        with pytest.raises(split.SplitError) as err:
            run(params(container_share=10, verify_balancer_urls=[DP1], verify_timeout=0.6))
        assert "not in the balancer yet" in str(err.value)
