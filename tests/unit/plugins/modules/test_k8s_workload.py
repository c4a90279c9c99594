# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_workload's main(): documentation matches the argument spec, bad input fails before any API call, a run against
the fake API returns what was done (diff only in diff mode), failures carry the reason and the conflicting managers."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from kong_module_helpers import patch_module_args

from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_workload as kw
from ansible_collections.mixedrun.kong.plugins.modules import k8s_workload as module

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
from test__k8s_workload import DEP_PATH, HPA_BASE, FakeApi, deployment, hpa, manifest  # noqa: E402  pylint: disable=wrong-import-position,import-error

ARGS = {"namespace": "shop", "deployment": "web", "kubeconfig": "/nonexistent/kubeconfig"}


def run(capsys, args, check_mode=False, diff=False):
    full = {"_ansible_check_mode": check_mode, "_ansible_diff": diff}
    full.update(args)
    with patch_module_args(full):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


class _Client:
    def close(self):
        pass


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()
    monkeypatch.setattr(module, "build_api_client", lambda auth: (_Client(), "default", "fake"))
    monkeypatch.setattr(module, "WorkloadApi", lambda client, timeout, secret: fake)
    monkeypatch.setattr(kw, "POLL_SECONDS", 0.01)
    return fake


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    spec = module.argument_spec()
    auth = {"kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs"}
    assert set(doc["options"]) == set(spec) - auth
    for name, option in doc["options"].items():
        assert option.get("type", "str") == spec[name].get("type", "str"), name
        assert option.get("default") == spec[name].get("default"), name
        assert bool(option.get("required")) == bool(spec[name].get("required")), name
    assert doc["attributes"]["action_group"]["membership"] == ["mixedrun.kong.k8s"]
    with open(os.path.join(os.path.dirname(os.path.abspath(module.__file__)), "..", "..", "meta", "runtime.yml"), encoding="utf-8") as fh:
        assert "k8s_workload" in yaml.safe_load(fh)["action_groups"]["k8s"]


@pytest.mark.parametrize("change,text", [
    ({"namespace": "Bad_NS"}, "namespace must be"),
    ({"replicas": -2}, "replicas must be"),
    ({"manifests": [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}]}, "kind 'Secret' is not managed"),
])
def test_bad_input_fails_before_any_api_call(capsys, monkeypatch, change, text):
    def no_client(_auth):
        raise AssertionError("no API client may be built for bad input")
    monkeypatch.setattr(module, "build_api_client", no_client)
    args = dict(ARGS)
    args.update(change)
    result = run(capsys, args)
    assert result["failed"] and text in result["msg"]


def test_run_apply_scale_wait(capsys, api):
    args = dict(ARGS, manifests=[manifest()], replicas=3)
    result = run(capsys, args, diff=True)
    assert result["changed"] and result["objects"] == [{"kind": "Deployment", "name": "web", "action": "created"}]
    assert result["deployment"]["replicas"] == 3 and result["deployment"]["ready"] == 3 and result["hpa"] is None
    assert "Deployment/web" in result["diff"]["after"] and "Deployment/web/scale" in result["diff"]["after"]
    api.calls.clear()
    again = run(capsys, args)
    assert not again["changed"] and again["calls"] == [] and "diff" not in again


def test_check_mode_writes_nothing(capsys, api):
    api.put(DEP_PATH, deployment(replicas=1))
    api.put(HPA_BASE + "/web", hpa(minimum=1, maximum=5))
    result = run(capsys, dict(ARGS, replicas=3), check_mode=True, diff=True)
    assert result["changed"] and all(c.endswith("(check mode: not sent)") for c in result["calls"])
    assert result["hpa"] == {"name": "web", "min_before": 1, "min_after": 3, "max": 5}
    assert api.objects[HPA_BASE + "/web"]["spec"]["minReplicas"] == 1 and api.objects[DEP_PATH]["spec"]["replicas"] == 1


def test_failures(capsys, api):
    api.put(DEP_PATH, deployment(replicas=1))
    api.put(HPA_BASE + "/web", hpa(minimum=1, maximum=2))
    low = run(capsys, dict(ARGS, replicas=3))
    assert low["failed"] and "maxReplicas 2" in low["msg"] and api.calls == []
    api.conflict = "helm"
    conflict = run(capsys, dict(ARGS, manifests=[manifest(image="shop:2")]))
    assert conflict["failed"] and conflict["conflicting_managers"] == ["helm"] and "helm" in conflict["msg"]
    api.conflict = None
    api.stuck = True
    stuck = run(capsys, dict(ARGS, wait_timeout=0.05))
    assert stuck["failed"] and "was not rolled out" in stuck["msg"] and stuck["not_ready_pods"] == ["web-0"]
    assert stuck["deployment"]["name"] == "web"
