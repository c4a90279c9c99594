"""The AWX workflow of playbooks/awx/controller_config.yml, run job by job with ansible-runner (the engine AWX runs
jobs with) against the lab, through tests/tools/awx_runner.py: the credential type's injectors applied to the
credential's inputs (the Kong admin token a secret input), the workflow's survey answered (AWX's types: integer and
float questions as numbers; every question as a text question, i.e. strings, on the deny path), each segment with
its node's extra_data (rollout_approved_shares), the approval nodes approved or denied, the ancestors' set_stats
artifacts passed on as AWX passes them.

(a) approve path: every segment up to 100 %: Kong's final weights, the lock released, each segment's report in its
    artifact directory (artifacts/<ident>/rollout-reports) and its set_stats artifact, each stop's message naming
    exactly what the next node passes;
(b) deny path: the first approval denied -> the rollback node rolls back to 0 % and fails on purpose, the workflow
    ends failed;
(c) both: the token never appears in the job events, stdout/stderr, the reports or the runner's output, while it
    demonstrably reached the job (ansible-runner's record of the job's environment) and the Kong modules (their
    invocation shows it masked). The approve path runs the configuration's credential type (the token in
    KONG_ADMIN_TOKEN); the deny path a variant whose extra_vars injector sets rollout_admin_token instead.

Lab-specific overrides of the configuration's variables (what a site's vars file would set): the Kong admin URL and
token, the lab's gateway and Kong nodes, no per-step hold override and no Prometheus queries (the configuration's
queries are production-shaped); the schedule, approvals and everything else come from the file. Hold 1 s and gate
interval 1 s through the survey. About 2.5-4 min (a) and 1.5-2.5 min (b) on a loaded two-core machine. Run:
    PYTHONPATH=.tmp/collections:. .venv/bin/pytest -p tests.lab.pytest_plugin tests/integration/test_awx_runner.py
"""

import glob
import json
import os
import secrets

import pytest
import requests

from tests.tools.awx_runner import AwxConfigError, AwxRunner, ControllerConfig, check_credential_type, inject_credential, \
    scan_for_secret, survey_extra_vars

SURVEY_ANSWERS = {"rollout_hold": 1, "rollout_gate_interval": 1}
MASKED = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


# -- helpers ----------------------------------------------------------------------------------------------------

def base_config():
    return ControllerConfig()


def service_name():
    return base_config().vars["mixedrun_awx_rollout_vars"]["rollout_upstream"]


def domain(lab, service):
    return [s for s in lab["services"] if s["name"] == service][0]["domain"]


def kong(lab, method, path, body=None):
    resp = requests.request(method, lab["admin_url"] + path, json=body, timeout=10)
    assert resp.status_code < 400 or (method == "DELETE" and resp.status_code == 404), \
        "%s %s -> %s %s" % (method, path, resp.status_code, resp.text)
    return resp.json() if resp.content else None


def bind(lab, service):
    """The service on its VMs: tagged VM targets at weight 100, container targets at 0, no lock or rollout state."""
    kong(lab, "PUT", "/upstreams/" + service, {"tags": ["mixedrun-managed", "mixedrun-service:" + service]})
    uid = kong(lab, "GET", "/upstreams/" + service)["id"]
    for name in ("mixedrun-lock", "mixedrun-rollout"):
        kong(lab, "DELETE", "/consumers/%s.%s" % (name, uid))
    have = {t["target"] for t in kong(lab, "GET", "/upstreams/%s/targets" % service)["data"]}
    for node in lab["nodes"]:
        if node.get("service", service) != service:
            continue
        target = "%s:%d" % (node["address"], node["port"])
        body = {"weight": 100 if node["kind"] == "vm" else 0,
                "tags": ["mixedrun-managed", "mixedrun-kind:" + node["kind"], "mixedrun-service:" + service]}
        if target in have:
            kong(lab, "PATCH", "/upstreams/%s/targets/%s" % (service, target), body)
        else:
            kong(lab, "POST", "/upstreams/%s/targets" % service, dict(body, target=target))
    kong(lab, "PUT", "/services/" + service, {"host": service, "port": 80, "protocol": "http"})
    kong(lab, "PUT", "/routes/" + service, {"hosts": [domain(lab, service)], "service": {"name": service}})


def container_share(lab, service):
    weights = {"vm": 0, "container": 0}
    for item in kong(lab, "GET", "/upstreams/%s/targets" % service)["data"]:
        weights["container" if "mixedrun-kind:container" in (item.get("tags") or []) else "vm"] += item["weight"]
    total = weights["vm"] + weights["container"]
    return 100.0 * weights["container"] / total if total else 0.0, weights


def state_tags(lab, service):
    uid = kong(lab, "GET", "/upstreams/" + service)["id"]
    tags = []
    for name in ("mixedrun-lock", "mixedrun-rollout"):
        resp = requests.get(lab["admin_url"] + "/consumers/%s.%s" % (name, uid), timeout=10)
        tags += (resp.json().get("tags") or []) if resp.status_code == 200 else []
    return [t for t in tags if t.startswith(("mixedrun-lock:", "mixedrun-rollout-origin:", "mixedrun-rollout-rollback:"))]


def segments(config):
    """The schedule split at its approval steps: the shares each segment applies, in order."""
    rollout_vars = config.vars["mixedrun_awx_rollout_vars"]
    approvals = {float(s) for s in rollout_vars["rollout_approval_steps"]}
    out = [[]]
    for share in rollout_vars["rollout_steps"]:
        if float(share) in approvals:
            out.append([])
        out[-1].append(float(share))
    return out


def success_chain(workflow):
    """Node identifiers from the root along the success paths (approvals approved)."""
    nodes = {n["identifier"]: n for n in workflow["simplified_workflow_nodes"]}
    children = {c for n in nodes.values() for k in ("success_nodes", "failure_nodes", "always_nodes") for c in n.get(k) or []}
    chain = [[i for i in nodes if i not in children][0]]
    while nodes[chain[-1]].get("success_nodes"):
        chain.append(nodes[chain[-1]]["success_nodes"][0])
    return chain, nodes


def report_of(job):
    paths = job.files("rollout-reports/rollout-*.json")
    assert len(paths) == 1, "job %s: expected one report in its artifact directory, found %s" % (job.node, paths)
    with open(paths[0], encoding="utf-8") as handle:
        return json.load(handle)


def assert_secret_kept(job, token, via_env=True):
    """The token reached the job and the Kong modules, and appears nowhere in what the job produced."""
    if via_env:
        with open(os.path.join(job.artifact_dir, "command"), encoding="utf-8") as handle:
            assert json.load(handle)["env"].get("KONG_ADMIN_TOKEN") == token, "the credential did not inject the token"
    args = [e["event_data"]["res"]["invocation"]["module_args"] for e in job.events
            if isinstance((e.get("event_data") or {}).get("res"), dict) and "invocation" in e["event_data"]["res"]]
    assert any(a.get("admin_token") == MASKED for a in args), "no Kong module was given the token"
    assert job.events and job.stdout
    found = scan_for_secret(token, job)
    assert not found, "job %s (%s): the Kong admin token appears in %s" % (job.node, job.ident, found)


@pytest.fixture
def awx(lab, tmp_path):
    """An AwxRunner on the lab: the configuration with the lab's site variables, and the secret token it injects."""
    service = service_name()
    token = "kong-admin-" + secrets.token_hex(16)
    rollout_vars = dict(base_config().vars["mixedrun_awx_rollout_vars"])
    rollout_vars.update({
        "rollout_holds": {},
        "rollout_traffic_url": lab["lb_url"],
        "rollout_traffic_host": domain(lab, service),
        "rollout_prometheus_url": None,
        "rollout_prometheus_queries": [],
        "rollout_probe_path": "/healthz",
        "rollout_admin_urls": lab.get("admin_urls") or [lab["admin_url"]],
        "rollout_balancer_urls": lab.get("kong_balancer_urls") or [],
    })
    config = ControllerConfig(overrides={"mixedrun_awx_kong_admin_url": lab["admin_url"],
                                         "mixedrun_awx_kong_admin_token": token,
                                         "mixedrun_awx_rollout_vars": rollout_vars})
    bind(lab, service)
    yield AwxRunner(config, str(tmp_path), timeout=600), token, service


# -- the configuration as AWX takes it (no lab) -------------------------------------------------------------------

def test_configuration_is_what_awx_accepts(tmp_path):
    config = ControllerConfig(overrides={"mixedrun_awx_kong_admin_token": "s3cret"})
    for template in config.vars["controller_templates"]:
        for cred in template["credentials"]:
            config.credential(cred)            # the type's kind, fields, injector names and templates; the inputs
    cred, ctype = config.credential("kong-admin")
    env, extra_vars_file, files = inject_credential(ctype, cred["inputs"], str(tmp_path))
    assert env == {"KONG_ADMIN_URL": config.vars["mixedrun_awx_kong_admin_url"], "KONG_ADMIN_TOKEN": "s3cret"}
    assert extra_vars_file is None and files == {}
    env = inject_credential(ctype, dict(cred["inputs"], admin_token=""), str(tmp_path))[0]
    assert env["KONG_ADMIN_TOKEN"] == "", "an empty token (open-source Kong) must inject an empty variable"

    workflow = config.workflow()
    answers = survey_extra_vars(workflow["survey_spec"])
    defaults = config.vars["mixedrun_awx_rollout_vars"]
    assert answers == {k: defaults[k] if not isinstance(defaults[k], bool) else str(defaults[k]).lower() for k in answers}, \
        "the survey's defaults must be the job template's values"
    assert isinstance(answers["rollout_hold"], int) and isinstance(answers["rollout_remove_vms"], str)
    assert all(isinstance(v, str) for v in survey_extra_vars(workflow["survey_spec"], as_text=True).values())
    with pytest.raises(AwxConfigError, match="expected to be an integer"):
        survey_extra_vars(workflow["survey_spec"], {"rollout_hold": "1"})

    chain, nodes = success_chain(workflow)
    jobs = [nodes[i] for i in chain if "approval_node" not in nodes[i]]
    assert len(jobs) == len(segments(config))
    plan = segments(config)
    for index, job in enumerate(jobs):
        # each segment after the first starts with an approved share: the node passes those approved so far
        assert [float(s) for s in job["extra_data"]["rollout_approved_shares"]] == [shares[0] for shares in plan[1:index + 1]]
        template = config.job_template(job["unified_job_template"])
        assert template["ask_variables_on_launch"], "AWX drops a node's extra_data unless the template prompts for variables"


# -- the workflow on the lab ----------------------------------------------------------------------------------------

def test_workflow_approve_path(lab, awx):
    runner, token, service = awx
    config = runner.config
    chain, nodes = success_chain(config.workflow())
    result = runner.run_workflow(answers=SURVEY_ANSWERS)
    assert result["path"] == [(i, "approved" if "approval_node" in nodes[i] else "successful") for i in chain], \
        "\n\n".join(j.stdout[-4000:] for j in result["jobs"] if not j.ok)
    assert result["status"] == "successful"

    share, weights = container_share(lab, service)
    assert share == 100.0 and weights["vm"] == 0, weights
    assert state_tags(lab, service) == [], "the last segment must release the lock and clear the origin"

    owner = "awx-workflow-%d" % result["workflow_job_id"]
    plan = segments(config)
    for index, job in enumerate(result["jobs"]):
        assert job.extra_vars["rollout_hold"] == 1 and job.extra_vars["rollout_remove_vms"] == "false"
        report = report_of(job)
        run = report["run"]
        applied = [float(s["planned_share"]) for s in report["steps"] if s["kind"] == "step"]
        assert run["owner"] == owner and applied == plan[index], (run, applied)
        assert all(float(s["hold"]) == 1 for s in run["schedule"]), run["schedule"]
        artifact = job.artifacts["mixedrun_rollout_reports"][service]
        assert artifact["json_path"] == job.files("rollout-reports/rollout-*.json")[0]
        assert artifact["outcome"] == run["outcome"] and float(artifact["final_share"]) == plan[index][-1]
        if index + 1 < len(result["jobs"]):
            # a paused segment names the share to approve and exactly what the next segment's node passes
            following = nodes[chain[chain.index(job.node) + 2]]["extra_data"]["rollout_approved_shares"]
            assert run["outcome"] == "paused_for_approval", run
            assert "rollout_approved_shares=%s" % json.dumps(following) in run["message"].replace(".0", ""), run["message"]
            # AWX passes a job's set_stats on to the next nodes as extra vars
            assert result["jobs"][index + 1].extra_vars["mixedrun_rollout_reports"] == job.artifacts["mixedrun_rollout_reports"]
        else:
            assert run["outcome"] == "finished" and float(run["final_share"]) == 100.0, run
        assert_secret_kept(job, token)


def use_extra_vars_injector(config):
    """The other way a credential can hand over the token: an extra_vars injector setting rollout_admin_url and
    rollout_admin_token (an Ansible variable the role passes to every Kong module) instead of the environment."""
    types = config.vars["controller_credential_types"]
    index = [t["name"] for t in types].index(config.vars["controller_credentials"][0]["credential_type"])
    types[index] = dict(types[index], injectors={"extra_vars": {"rollout_admin_url": "{{ admin_url }}",
                                                                "rollout_admin_token": "{{ admin_token }}"}})


def test_workflow_deny_path(lab, awx):
    """The deny path, with every survey answer a string and the token handed over as an extra var (the approve path
    runs the configuration's own environment injector)."""
    runner, token, service = awx
    use_extra_vars_injector(runner.config)
    workflow = runner.config.workflow()
    chain, nodes = success_chain(workflow)
    deny = [i for i in chain if "approval_node" in nodes[i] and nodes[i].get("failure_nodes")]
    if not deny:
        pytest.skip("the workflow has no deny path (no approval node with failure_nodes)")
    deny = deny[0]
    before = chain[:chain.index(deny)]
    handler = nodes[deny]["failure_nodes"][0]
    result = runner.run_workflow(answers=SURVEY_ANSWERS, as_text=True, approvals={deny: False})
    expected = [(i, "approved" if "approval_node" in nodes[i] else "successful") for i in before]
    assert result["path"] == expected + [(deny, "denied"), (handler, "failed")], \
        "\n\n".join(j.stdout[-4000:] for j in result["jobs"])
    assert result["status"] == "failed", "a denied approval must end the workflow failed (after the rollback)"

    share, weights = container_share(lab, service)
    assert share == 0.0 and weights["container"] == 0, weights
    assert state_tags(lab, service) == [], "the rollback must release the lock and clear the origin"
    rollback = result["jobs"][-1]
    assert rollback.extra_vars["rollout_hold"] == "1" and rollback.extra_vars["rollout_gate_interval"] == "1"
    assert "failing on purpose" in rollback.stdout
    run = report_of(rollback)["run"]
    assert float(run["final_share"]) == 0.0 and run["owner"] == "awx-workflow-%d" % result["workflow_job_id"], run
    assert float(rollback.artifacts["mixedrun_rollout_reports"][service]["final_share"]) == 0.0
    for job in result["jobs"]:
        with open(os.path.join(job.artifact_dir, "command"), encoding="utf-8") as handle:
            command = json.load(handle)
        assert "KONG_ADMIN_TOKEN" not in command["env"] and "-e" in command["command"], command["command"]
        assert_secret_kept(job, token, via_env=False)


def test_file_and_extra_vars_injectors(tmp_path):
    """The injector kinds controller_config.yml does not use, as AWX renders them: files (tower.filename) and extra
    vars (a file of !unsafe values passed with -e @file)."""
    ctype = {"name": "t", "kind": "cloud",
             "inputs": {"fields": [{"id": "url", "type": "string"}, {"id": "token", "type": "string", "secret": True},
                                   {"id": "verify", "type": "boolean"}]},
             "injectors": {"file": {"template.cfg": "url={{ url }}\ntoken={{ token }}\n"},
                           "env": {"KONG_CFG": "{{ tower.filename.cfg }}"},
                           "extra_vars": {"kong_admin_url": "{{ url }}", "kong_verify": "{{ verify }}"}}}
    check_credential_type(ctype)
    env, extra_vars_file, files = inject_credential(ctype, {"url": "http://k:8001", "token": "t0k"}, str(tmp_path))
    assert env == {"KONG_CFG": files["template.cfg"]}
    with open(files["template.cfg"], encoding="utf-8") as handle:
        assert handle.read() == "url=http://k:8001\ntoken=t0k"      # Jinja drops the last newline, in AWX too
    with open(extra_vars_file, encoding="utf-8") as handle:
        text = handle.read()
    assert "!unsafe 'kong_admin_url': !unsafe 'http://k:8001'" in text and "!unsafe 'False'" in text, text


def test_driver_refuses_what_awx_refuses(tmp_path):
    """The driver's checks are AWX's: a blocked injector variable, an undeclared reference, a dropped launch var."""
    config = ControllerConfig()
    ctype = dict(config.credential_type("Kong Admin API"))
    with pytest.raises(AwxConfigError, match="ANSIBLE_KONG"):
        check_credential_type(dict(ctype, injectors={"env": {"ANSIBLE_KONG": "{{ admin_url }}"}}))
    with pytest.raises(AwxConfigError, match="admin_password"):
        check_credential_type(dict(ctype, injectors={"env": {"KONG_X": "{{ admin_password }}"}}))
    templates = [dict(t, ask_variables_on_launch=False) for t in config.vars["controller_templates"]]
    config.vars["controller_templates"] = templates
    with pytest.raises(AwxConfigError, match="ask_variables_on_launch"):
        AwxRunner(config, str(tmp_path)).launch(templates[0]["name"], {"rollout_approved_shares": [25]})
    assert not glob.glob(str(tmp_path / "job-*" / "artifacts"))
