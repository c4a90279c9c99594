# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kong_k8s_binding's main(): documentation matches the argument spec, bad input fails before any API call,
and a run against the fake API returns what was written (diff only in diff mode, warnings as warnings)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from kong_module_helpers import patch_module_args

from ansible_collections.mixedrun.kong.plugins.modules import kong_k8s_binding as module

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
from test__k8s_binding import FakeApi, container_service  # noqa: E402  pylint: disable=wrong-import-position,import-error

ARGS = {"name": "shop", "namespace": "shop", "domains": ["shop.example.com"], "container_service": "shop",
        "vm_endpoints": [{"target": "10.1.0.1:8080"}, {"target": "10.1.0.2:8080"}, {"target": "[fd00::3]:8080", "drained": True}],
        "vm_target_weight": 14, "container_target_weight": 3, "gateway": {"name": "kong"}, "kubeconfig": "/nonexistent/kubeconfig"}


def run(capsys, args, check_mode=False, diff=False):
    full = {"_ansible_check_mode": check_mode, "_ansible_diff": diff}
    full.update(args)
    with patch_module_args(full):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def _options(doc):
    return dict((k, v) for k, v in doc["options"].items())


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    spec = module.argument_spec()
    auth = {"kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs"}
    assert set(_options(doc)) == set(spec) - auth
    for name, option in _options(doc).items():
        assert option.get("type", "str") == spec[name].get("type", "str"), name
        for sub, sub_doc in (option.get("suboptions") or {}).items():
            assert sub_doc["type"] == spec[name]["options"][sub]["type"], (name, sub)


@pytest.mark.parametrize("change,text", [
    ({"name": ""}, "name must be"),
    ({"domains": ["not a host"]}, "domains[0] must be a host name"),
    ({"vm_endpoints": [{"target": "vm-1:8080"}]}, "vm_endpoints[0].target must be an IP:port"),
    ({"vm_target_weight": 70000}, "vm_target_weight must be"),
])
def test_bad_input_fails_before_any_api_call(capsys, monkeypatch, change, text):
    def no_client(_auth):
        raise AssertionError("no API client may be built for bad input")
    monkeypatch.setattr(module, "build_api_client", no_client)
    args = dict(ARGS)
    args.update(change)
    result = run(capsys, args)
    assert result["failed"] and text in result["msg"]


class _Client:
    def close(self):
        pass


def test_run_with_fake_api(capsys, monkeypatch):
    api = FakeApi()
    container_service(api)
    monkeypatch.setattr(module, "build_api_client", lambda auth: (_Client(), "default", "fake"))
    monkeypatch.setattr(module, "K8sApi", lambda client, timeout, secret: api)
    result = run(capsys, ARGS, diff=True)
    assert result["changed"] and result["weights"]["vm_backend"] == 28 and result["weights"]["container_backend"] == 6
    assert result["kic_target_weights"] == {"vm": [14], "container": [3]}
    assert "HTTPRoute/shop" in result["diff"]["after"]
    assert result["slices"] == ["shop-vms-ipv4-8080-0", "shop-vms-ipv6-8080-0"]
    api.calls[:] = []
    again = run(capsys, ARGS)
    assert not again["changed"] and again["calls"] == [] and "diff" not in again


def test_conflict_fails_naming_the_manager(capsys, monkeypatch):
    api = FakeApi()
    container_service(api)
    monkeypatch.setattr(module, "build_api_client", lambda auth: (_Client(), "default", "fake"))
    monkeypatch.setattr(module, "K8sApi", lambda client, timeout, secret: api)
    run(capsys, ARGS)
    path = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop"
    api.objects[path]["spec"]["rules"][0]["backendRefs"][1]["weight"] = 1
    api.owners[path] = "argocd-controller"
    result = run(capsys, ARGS)
    assert result["failed"] and "argocd-controller" in result["msg"] and result["conflicting_managers"] == ["argocd-controller"]
