"""Run the AWX objects of ``playbooks/awx/controller_config.yml`` with ansible-runner, the engine AWX runs jobs with.

Nothing about the workflow is hard-coded here: the credential types, credentials, inventories, job templates and
workflows are read from the configuration file (the ``infra.aap_configuration`` format), its own variables rendered
the way that collection's Ansible renders them (``!unsafe`` values stay literal: AWX receives them as written), and
each job is launched the way AWX launches it:

* extra vars: AWX's meta variables (``awx_job_id``, ``awx_workflow_job_id``, ...), then the job template's
  ``extra_vars``, the workflow node's ``extra_data``, the artifacts (``set_stats``) of the node's ancestors, then the
  workflow's extra vars and survey answers (highest). Written to ``env/extravars`` as AWX writes them: every value
  ``!unsafe`` except the job template's own top-level values (``ALLOW_JINJA_IN_EXTRA_VARS = template``);
* survey answers: typed as AWX types them (integer and float questions give numbers, text and multiple-choice
  questions strings; ``as_text`` turns every question into a text question), missing answers from the spec's
  ``default``, validated against the spec (type, min/max, choices, required);
* credentials: each credential type's injectors rendered from the credential's inputs in a Jinja sandbox as AWX does
  (empty inputs left out of the namespace, ``tower.filename`` for file injectors): ``env`` into ``env/envvars``,
  ``extra_vars`` into a file under ``env/`` passed with ``-e @file`` (``env/cmdline``), ``file`` templates into files
  under ``env/``; injector names checked against AWX's rules (no ``ANSIBLE_*`` or reserved variables);
* inventory: the configured hosts and their variables, as the executable JSON script AWX writes;
* project: a copy of the collection's ``playbooks/`` directory; the collection itself linked into a collections path
  (``ANSIBLE_COLLECTIONS_PATH``), as an execution environment or ``collections/requirements.yml`` would provide it;
* workflow: the ``simplified_workflow_nodes`` from the root, one node after another: a job node's success or failure
  picks ``success_nodes`` or ``failure_nodes`` (``always_nodes`` either way), an approval node is approved or denied
  by the caller (``approvals``); the workflow fails when a failed node has no failure or always path.

``ansible-runner`` runs each job (``ansible-runner run <private_data_dir> -p <playbook> --ident <ident>``) with a
clean environment; results are read from ``artifacts/<ident>/`` (status, rc, stdout, job_events, the
``playbook_on_stats`` event's ``artifact_data``: what AWX keeps as the job's artifacts).

Command line (prints a JSON summary of the workflow run)::

    python -m tests.tools.awx_runner playbooks/awx/controller_config.yml --workflow 'shop progressive rollout' \\
        --vars overrides.yml --answers '{"rollout_hold": 1}' --deny approve-25 --dir /tmp/awx-run
"""

import argparse
import copy
import glob
import itertools
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import yaml
from jinja2 import StrictUndefined, nativetypes, sandbox

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(REPO, "playbooks", "awx", "controller_config.yml")

# AWX refuses these environment variables in credential type injectors (awx.main.fields, ENV_BLOCKLIST), and any
# name starting with ANSIBLE_.
ENV_BLOCKLIST = frozenset((
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
    "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
    "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH",
))
CUSTOM_CREDENTIAL_KINDS = ("cloud", "net")
SURVEY_TYPES = ("text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect")
# What the runner's job sees of this process's environment (AWX's jobs see the execution environment's only).
PASSED_ENV = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ")


class AwxConfigError(ValueError):
    """The configuration would be refused by AWX (or by this driver, for the same reason)."""


class Unsafe(str):
    """A ``!unsafe`` value of the configuration file: not templated there, given to AWX as written."""


class _Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML loader that keeps Ansible's ``!unsafe`` values literal."""


def _unsafe(loader, node):
    if isinstance(node, yaml.ScalarNode):
        return Unsafe(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return [Unsafe(v) if isinstance(v, str) else v for v in loader.construct_sequence(node, deep=True)]
    return {k: Unsafe(v) if isinstance(v, str) else v for k, v in loader.construct_mapping(node, deep=True).items()}


_Loader.add_constructor("!unsafe", _unsafe)


class _UnsafeDumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    """Dumps every string as ``!unsafe`` (AWX's SafeStringDumper)."""

    def represent_str(self, data):  # noqa: D102  pylint: disable=missing-function-docstring
        return self.represent_scalar("!unsafe", str(data))


_UnsafeDumper.add_representer(str, _UnsafeDumper.represent_str)
_UnsafeDumper.add_representer(Unsafe, _UnsafeDumper.represent_str)
yaml.SafeDumper.add_representer(Unsafe, lambda dumper, data: dumper.represent_str(str(data)))


def safe_dump(values, safe_dict=None):
    """AWX's ``safe_dump``: top-level entries equal to ``safe_dict``'s are plain YAML, all others ``!unsafe``."""
    safe_dict = safe_dict or {}
    parts = []
    for key, value in values.items():
        dumper = yaml.SafeDumper if key in safe_dict and safe_dict[key] == value else _UnsafeDumper
        parts.append(yaml.dump({key: value}, Dumper=dumper, default_flow_style=False))
    return "".join(parts)


def _plain(value):
    """Unsafe -> str, recursively (what AWX stores)."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Unsafe):
        return str(value)
    return value


# -- the configuration file ---------------------------------------------------------------------------------------

class ControllerConfig:
    """``controller_config.yml`` with its variables rendered (``overrides`` win, as ``-e`` or a vault file would)."""

    SECTIONS = ("controller_credential_types", "controller_credentials", "controller_projects",
                "controller_inventories", "controller_hosts", "controller_templates", "controller_workflows")

    def __init__(self, path=DEFAULT_CONFIG, overrides=None):
        self.path = path
        with open(path, encoding="utf-8") as handle:
            raw = yaml.load(handle, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
        raw.update(copy.deepcopy(overrides or {}))
        self._env = nativetypes.NativeEnvironment(undefined=StrictUndefined)
        self.vars = self._render_all(raw)

    def _render(self, value, context):
        if isinstance(value, Unsafe):
            return value
        if isinstance(value, dict):
            return {self._render(k, context): self._render(v, context) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, context) for v in value]
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            return self._env.from_string(value).render(**context)
        return value

    def _render_all(self, raw):
        context = raw
        for _attempt in range(5):                   # the variables refer to each other; a few passes settle them
            rendered = {k: self._render(v, context) for k, v in raw.items()}
            if rendered == context:
                break
            context = rendered
        return context

    def _named(self, section, name):
        for item in self.vars.get(section) or []:
            if item.get("name") == name:
                return item
        have = ", ".join(i.get("name", "?") for i in self.vars.get(section) or [])
        raise AwxConfigError("%s: no %s named %r (have: %s)" % (self.path, section, name, have))

    def credential_type(self, name):
        """A credential type, checked as AWX checks a custom one."""
        ctype = self._named("controller_credential_types", name)
        check_credential_type(ctype)
        return ctype

    def credential(self, name):
        """A credential and its (checked) type."""
        cred = self._named("controller_credentials", name)
        ctype = self.credential_type(cred["credential_type"])
        check_credential_inputs(ctype, cred.get("inputs") or {}, name)
        return cred, ctype

    def job_template(self, name):
        """A job template (``controller_templates``)."""
        return self._named("controller_templates", name)

    def workflow(self, name=None):
        """A workflow (the only one when ``name`` is None)."""
        if name is None:
            items = self.vars.get("controller_workflows") or []
            if len(items) != 1:
                raise AwxConfigError("%s: %d workflows, name one" % (self.path, len(items)))
            return items[0]
        return self._named("controller_workflows", name)

    def inventory_hosts(self, inventory):
        """{host: variables} of an inventory (``controller_hosts``)."""
        self._named("controller_inventories", inventory)
        return {h["name"]: _plain(h.get("variables") or {}) for h in self.vars.get("controller_hosts") or []
                if h.get("inventory") == inventory}


def check_credential_type(ctype):
    """AWX's checks of a custom credential type: kind, fields, injector names and templates."""
    name = ctype.get("name")
    if ctype.get("kind") not in CUSTOM_CREDENTIAL_KINDS:
        raise AwxConfigError("credential type %r: kind must be one of %s for a custom type" % (name, CUSTOM_CREDENTIAL_KINDS))
    fields = (ctype.get("inputs") or {}).get("fields") or []
    ids = [f.get("id") for f in fields]
    for field in fields:
        if field.get("type", "string") not in ("string", "boolean"):
            raise AwxConfigError("credential type %r: field %r has type %r (string or boolean)" % (name, field.get("id"), field.get("type")))
    for req in (ctype.get("inputs") or {}).get("required") or []:
        if req not in ids:
            raise AwxConfigError("credential type %r: required input %r is not a field" % (name, req))
    injectors = ctype.get("injectors") or {}
    unknown = set(injectors) - {"env", "extra_vars", "file"}
    if unknown:
        raise AwxConfigError("credential type %r: unknown injector kinds %s" % (name, sorted(unknown)))
    for var in injectors.get("env") or {}:
        if var.startswith("ANSIBLE_") or var in ENV_BLOCKLIST:
            raise AwxConfigError("credential type %r: AWX does not allow the environment variable %s in an injector" % (name, var))
    for label in injectors.get("file") or {}:
        if not (label == "template" or label.startswith("template.")):
            raise AwxConfigError("credential type %r: file injector %r must be named template or template.<name>" % (name, label))
    # AWX renders every injector with each field set, in a strict sandbox: a reference to anything else is refused.
    namespace = {fid: "EXAMPLE" for fid in ids}
    namespace["tower"] = {"filename": {label.split(".", 1)[1]: "/tmp/EXAMPLE" for label in injectors.get("file") or {} if "." in label}
                          if any("." in label for label in injectors.get("file") or {}) else "/tmp/EXAMPLE"}
    strict = sandbox.ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for kind in ("env", "extra_vars", "file"):
        for key, template in _flatten(injectors.get(kind) or {}):
            try:
                strict.from_string(str(template)).render(**namespace)
            except Exception as exc:  # pylint: disable=broad-except
                raise AwxConfigError("credential type %r: injector %s.%s: %s" % (name, kind, key, exc)) from exc


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, "%s%s%s" % (prefix, "." if prefix else "", key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _flatten(value, "%s[%d]" % (prefix, index))
    else:
        yield prefix, tree


def check_credential_inputs(ctype, inputs, name):
    """A credential's inputs against its type: only declared fields, the required ones present."""
    fields = {f["id"] for f in (ctype.get("inputs") or {}).get("fields") or []}
    extra = set(inputs) - fields
    if extra:
        raise AwxConfigError("credential %r: inputs %s are not fields of type %r" % (name, sorted(extra), ctype["name"]))
    for req in (ctype.get("inputs") or {}).get("required") or []:
        if inputs.get(req) in (None, ""):
            raise AwxConfigError("credential %r: required input %r is empty" % (name, req))


class _Namespace:                                   # AWX's TowerNamespace (attribute access in templates)
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def inject_credential(ctype, inputs, env_dir):
    """Apply a credential type's injectors to ``inputs`` as AWX does.

    Returns ``(env, extra_vars_file or None, files)``: the environment variables, the file holding the extra vars
    (``-e @file``), and the files written for ``file`` injectors ({label: path})."""
    namespace = {}
    for key, value in _plain(inputs).items():
        if isinstance(value, bool):
            namespace[key] = value
        elif value not in (None, ""):                  # AWX leaves empty inputs out of the namespace
            namespace[key] = value
    for field in (ctype.get("inputs") or {}).get("fields") or []:
        if field.get("type") == "boolean" and field["id"] not in namespace:
            namespace[field["id"]] = False
    env_sandbox = sandbox.ImmutableSandboxedEnvironment()
    injectors = _plain(ctype.get("injectors") or {})
    tower = _Namespace()
    files = {}
    for label, template in (injectors.get("file") or {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(env_sandbox.from_string(template).render(tower=tower, **namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        files[label] = path
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = _Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)
    env = {var: env_sandbox.from_string(template).render(tower=tower, **namespace)
           for var, template in (injectors.get("env") or {}).items()}

    def build(node):
        if isinstance(node, dict):
            return {build(k): build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v) for v in node]
        return env_sandbox.from_string(str(node)).render(tower=tower, **namespace)

    extra_vars = build(injectors.get("extra_vars") or {})
    extra_vars_file = None
    if extra_vars:
        handle, extra_vars_file = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(safe_dump(extra_vars))
        os.chmod(extra_vars_file, stat.S_IRUSR)
    return env, extra_vars_file, files


# -- surveys ------------------------------------------------------------------------------------------------------

def survey_extra_vars(survey_spec, answers=None, as_text=False):
    """The extra vars AWX makes of a survey's answers: typed per question, defaults for the unanswered ones.

    ``as_text``: every question a text question (answers and defaults as strings), the way a survey written with
    text fields for numbers delivers them."""
    answers = dict(answers or {})
    out = {}
    seen = set()
    missing = [key for key in ("name", "description", "spec") if key not in (survey_spec or {})]
    if missing or not isinstance(survey_spec["spec"], list):
        raise AwxConfigError("survey_spec: AWX needs name, description and a list spec (missing: %s)" % missing)
    for number, question in enumerate(survey_spec["spec"], 1):
        lacking = [key for key in ("question_name", "variable", "type", "required") if key not in question]
        if lacking:
            raise AwxConfigError("survey question %d: %s missing" % (number, ", ".join(lacking)))
        var = question.get("variable")
        qtype = question.get("type")
        if as_text:                                 # a text question: min and max would be lengths, choices none
            question = {k: v for k, v in question.items() if k not in ("min", "max", "choices")}
            qtype = question["type"] = "text"
        if not var or qtype not in SURVEY_TYPES or "question_name" not in question:
            raise AwxConfigError("survey question %r: needs question_name, variable and a type of %s" % (question, SURVEY_TYPES))
        if var in seen:
            raise AwxConfigError("survey: variable %r asked twice" % var)
        seen.add(var)
        if var in answers:
            value = answers.pop(var)
        elif question.get("default") not in (None, ""):
            value = question["default"]
        elif question.get("required"):
            raise AwxConfigError("survey: %r (%s) is required and has no default" % (var, question["question_name"]))
        else:
            continue
        if as_text and not isinstance(value, str):
            value = str(value).lower() if isinstance(value, bool) else str(value)
        _check_answer(question, qtype, var, value)
        out[var] = value
    if answers:
        raise AwxConfigError("survey: no question for %s" % sorted(answers))
    return out


def _check_answer(question, qtype, var, value):
    """AWX's survey element validation (the parts that decide the type a playbook gets)."""
    if qtype in ("integer", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (qtype == "integer" and not isinstance(value, int)):
            raise AwxConfigError("survey: value %r for %r expected to be %s" % (value, var, "an integer" if qtype == "integer" else "a number"))
        if (question.get("min") not in (None, "") and value < question["min"]) or \
                (question.get("max") not in (None, "") and value > question["max"]):
            raise AwxConfigError("survey: %r for %r is out of [%s, %s]" % (value, var, question.get("min"), question.get("max")))
    elif qtype in ("text", "textarea", "password"):
        if not isinstance(value, str):
            raise AwxConfigError("survey: value %r for %r expected to be a string" % (value, var))
        if qtype == "text" and (question.get("max") not in (None, "") and len(value) > int(question["max"])):
            raise AwxConfigError("survey: %r for %r is longer than %s" % (value, var, question["max"]))
    elif qtype == "multiplechoice":
        choices = question.get("choices") or []
        choices = choices.split("\n") if isinstance(choices, str) else [str(c) for c in choices]
        if value not in choices:
            raise AwxConfigError("survey: %r for %r is not one of %s" % (value, var, choices))
    elif qtype == "multiselect":
        choices = question.get("choices") or []
        choices = choices.split("\n") if isinstance(choices, str) else [str(c) for c in choices]
        if not isinstance(value, list) or any(v not in choices for v in value):
            raise AwxConfigError("survey: %r for %r is not a list of %s" % (value, var, choices))


# -- jobs -----------------------------------------------------------------------------------------------------------

_IDS = itertools.count(int(time.time()) % 100000 * 10)


class JobResult:
    """One job's outcome, read from ``artifacts/<ident>/``."""

    def __init__(self, name, node, ident, private_data_dir, proc, extra_vars, seconds):
        self.name = name
        self.node = node
        self.ident = ident
        self.private_data_dir = private_data_dir
        self.artifact_dir = os.path.join(private_data_dir, "artifacts", ident)
        self.runner_output = (proc.stdout or "") + (proc.stderr or "")
        self.extra_vars = extra_vars
        self.seconds = seconds
        self.status = self._read("status") or "error"
        rc_text = self._read("rc")
        self.rc = int(rc_text) if rc_text else (proc.returncode or 1)
        self.stdout = self._read("stdout") or ""
        self.events = []
        for path in glob.glob(os.path.join(self.artifact_dir, "job_events", "*.json")):
            with open(path, encoding="utf-8") as handle:
                self.events.append(json.load(handle))
        self.events.sort(key=lambda e: e.get("counter", 0))
        stats = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        # what AWX keeps as the job's artifacts (set_stats)
        self.artifacts = (stats[-1].get("event_data") or {}).get("artifact_data") or {} if stats else {}

    def _read(self, name):
        path = os.path.join(self.artifact_dir, name)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() if name in ("status", "rc") else handle.read()

    @property
    def ok(self):
        """The job succeeded."""
        return self.status == "successful" and self.rc == 0

    def files(self, pattern):
        """Paths under the job's artifact directory matching a glob pattern."""
        return sorted(glob.glob(os.path.join(self.artifact_dir, pattern), recursive=True))

    def summary(self):
        """JSON-able summary."""
        return {"name": self.name, "node": self.node, "ident": self.ident, "status": self.status, "rc": self.rc,
                "seconds": round(self.seconds, 1), "artifacts": self.artifacts, "artifact_dir": self.artifact_dir}


class AwxRunner:
    """Launches the configuration's job templates and workflows with ansible-runner under ``base_dir``."""

    def __init__(self, config, base_dir, collection_root=REPO, timeout=600, runner_bin=None):
        self.config = config
        self.base_dir = os.path.abspath(base_dir)
        self.collection_root = collection_root
        self.timeout = timeout
        self.runner_bin = runner_bin or os.path.join(os.path.dirname(sys.executable), "ansible-runner")
        self.collections_dir = os.path.join(self.base_dir, "collections")
        link = os.path.join(self.collections_dir, "ansible_collections", "mixedrun", "kong")
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.islink(link):
            os.symlink(collection_root, link)

    # pylint: disable-next=too-many-arguments,too-many-locals
    def launch(self, template_name, launch_vars=None, *, node=None, workflow=None, artifacts=None, workflow_vars=None):
        """Run one job of job template ``template_name``; returns a JobResult.

        ``launch_vars``: prompted extra vars (a workflow node's extra_data); ``artifacts``: the ancestors' set_stats
        data; ``workflow``: {"id", "name"} of the workflow job; ``workflow_vars``: its extra vars and survey answers."""
        jt = self.config.job_template(template_name)
        job_id = next(_IDS)
        ident = "%d-%s" % (job_id, node or "job")
        pdd = os.path.join(self.base_dir, "job-%d" % job_id)
        env_dir = os.path.join(pdd, "env")
        os.makedirs(env_dir)
        # project: the playbooks of the collection (what AWX checks out), the collection from a collections path
        shutil.copytree(os.path.join(self.collection_root, "playbooks"), os.path.join(pdd, "project", "playbooks"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        inventory_name = jt["inventory"]
        self._write_inventory(pdd, inventory_name)

        jt_vars = _plain(jt.get("extra_vars") or {})
        if isinstance(jt_vars, str):
            jt_vars = yaml.safe_load(jt_vars) or {}
        if launch_vars and not jt.get("ask_variables_on_launch") and not jt.get("survey_enabled"):
            raise AwxConfigError("job template %r: extra vars given at launch (%s) but ask_variables_on_launch is off: "
                                 "AWX would drop them" % (template_name, sorted(launch_vars)))
        extra = self.meta_vars(job_id, jt, inventory_name, workflow)
        extra.update(jt_vars)
        if jt.get("survey_enabled"):
            extra.update(survey_extra_vars(jt.get("survey_spec")))
        extra.update(_plain(launch_vars or {}))
        extra.update(artifacts or {})
        extra.update(workflow_vars or {})
        with open(os.path.join(env_dir, "extravars"), "w", encoding="utf-8") as out:
            out.write(safe_dump(extra, jt_vars))
        os.chmod(os.path.join(env_dir, "extravars"), stat.S_IRUSR | stat.S_IWUSR)

        envvars = {
            "JOB_ID": str(job_id), "INVENTORY_ID": "1", "PROJECT_REVISION": "0" * 40, "ANSIBLE_FORCE_COLOR": "False",
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
            "ANSIBLE_COLLECTIONS_PATH": self.collections_dir, "ANSIBLE_NOCOLOR": "1",
        }
        cmdline = []
        for cred_name in jt.get("credentials") or []:
            cred, ctype = self.config.credential(cred_name)
            env, extra_vars_file, _files = inject_credential(ctype, cred.get("inputs") or {}, env_dir)
            envvars.update(env)
            if extra_vars_file:
                cmdline += ["-e", "@" + extra_vars_file]
        with open(os.path.join(env_dir, "envvars"), "w", encoding="utf-8") as out:
            json.dump(envvars, out)
        if cmdline:
            with open(os.path.join(env_dir, "cmdline"), "w", encoding="utf-8") as out:
                out.write(" ".join(shlex.quote(a) for a in cmdline))

        run_env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        run_env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + "/usr/local/bin:/usr/bin:/bin"
        started = time.monotonic()
        proc = subprocess.run([self.runner_bin, "run", pdd, "-p", jt["playbook"], "--ident", ident],
                              env=run_env, capture_output=True, text=True, timeout=self.timeout, check=False,
                              stdin=subprocess.DEVNULL)
        return JobResult(template_name, node, ident, pdd, proc, extra, time.monotonic() - started)

    def meta_vars(self, job_id, jt, inventory_name, workflow=None):
        """AWX's ``awx_*`` / ``tower_*`` variables of a job (``Job.awx_meta_vars``)."""
        meta = {"job_id": job_id, "job_launch_type": "workflow" if workflow else "manual",
                "job_template_id": 1, "job_template_name": jt["name"], "project_revision": "0" * 40,
                "project_scm_branch": "main", "inventory_id": 1, "inventory_name": inventory_name,
                "execution_node": "localhost", "user_id": 1, "user_name": "admin"}
        if workflow:
            meta.update({"workflow_job_id": workflow["id"], "workflow_job_name": workflow["name"],
                         "workflow_job_launch_type": "manual"})
        out = {}
        for prefix in ("awx_", "tower_"):
            out.update({prefix + k: v for k, v in meta.items()})
        return out

    def _write_inventory(self, pdd, inventory_name):
        hosts = self.config.inventory_hosts(inventory_name)
        data = {"all": {"hosts": sorted(hosts), "vars": {}, "children": []},
                "_meta": {"hostvars": hosts}}
        path = os.path.join(pdd, "inventory", "hosts")
        os.makedirs(os.path.dirname(path))
        with open(path, "w", encoding="utf-8") as out:   # AWX writes an executable script printing the JSON
            out.write("#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(data))
        os.chmod(path, stat.S_IRWXU)

    # -- workflows --------------------------------------------------------------------------------------------------

    # pylint: disable-next=too-many-locals
    def run_workflow(self, name=None, *, answers=None, as_text=False, approvals=None, extra_vars=None, on_job=None):
        """Run a workflow: nodes in order from the root; ``approvals`` {identifier: bool} (default approve).

        Returns {"status", "jobs": [JobResult], "path": [(identifier, outcome)], "workflow_vars"}."""
        wf = self.config.workflow(name)
        nodes = {n["identifier"]: n for n in wf.get("simplified_workflow_nodes") or []}
        children = {c for n in nodes.values() for key in ("success_nodes", "failure_nodes", "always_nodes")
                    for c in n.get(key) or []}
        missing = children - set(nodes)
        if missing:
            raise AwxConfigError("workflow %r: nodes %s are referenced but not defined" % (wf["name"], sorted(missing)))
        roots = [i for i in nodes if i not in children]
        workflow_vars = _plain(extra_vars or {})
        if wf.get("survey_enabled"):
            workflow_vars.update(survey_extra_vars(wf.get("survey_spec"), answers, as_text=as_text))
        elif answers:
            raise AwxConfigError("workflow %r has no survey: answers %s would be ignored" % (wf["name"], sorted(answers)))
        workflow = {"id": next(_IDS), "name": wf["name"]}
        approvals = dict(approvals or {})
        jobs, path, unhandled = [], [], []
        queue = [(root, {}) for root in roots]
        while queue:
            ident, ancestors = queue.pop(0)
            node = nodes[ident]
            if "approval_node" in node:
                ok = approvals.pop(ident, True)
                path.append((ident, "approved" if ok else "denied"))
                own = {}
            else:
                job = self.launch(node["unified_job_template"], node.get("extra_data"), node=ident, workflow=workflow,
                                  artifacts=ancestors, workflow_vars=workflow_vars)
                jobs.append(job)
                if on_job:
                    on_job(job)
                ok = job.ok
                path.append((ident, job.status))
                own = job.artifacts
            follow = list(node.get("always_nodes") or []) + list(node.get("success_nodes" if ok else "failure_nodes") or [])
            if not ok and not (node.get("failure_nodes") or node.get("always_nodes")):
                unhandled.append(ident)
            passed = dict(ancestors)
            passed.update(own)
            queue.extend((child, passed) for child in follow)
        if approvals:
            raise AwxConfigError("approval decisions for nodes that did not run: %s" % sorted(approvals))
        return {"status": "failed" if unhandled else "successful", "jobs": jobs, "path": path,
                "workflow_vars": workflow_vars, "workflow_job_id": workflow["id"]}


def scan_for_secret(secret, job):
    """Where ``secret`` appears in what a job produced: its job events, stdout/stderr, the runner's own output and
    every file of its artifact directory, except ``command`` (ansible-runner's record of the environment it gave
    the job, i.e. the credential's input, kept private as AWX keeps a job's environment). Returns the places."""
    found = []
    if secret in job.runner_output:
        found.append("ansible-runner output")
    for root, _dirs, names in os.walk(job.artifact_dir):
        for fname in names:
            path = os.path.join(root, fname)
            if os.path.relpath(path, job.artifact_dir) == "command":
                continue
            with open(path, "rb") as handle:
                if secret.encode() in handle.read():
                    found.append(os.path.relpath(path, job.private_data_dir))
    return found


def main(argv=None):
    """Command line: run a workflow, print a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    parser.add_argument("--workflow", default=None, help="workflow name (default: the only one)")
    parser.add_argument("--vars", action="append", default=[], help="YAML/JSON file or string of config variable overrides")
    parser.add_argument("--answers", default="{}", help="survey answers (JSON)")
    parser.add_argument("--as-text", action="store_true", help="every survey question a text question")
    parser.add_argument("--deny", action="append", default=[], help="approval node identifiers to deny")
    parser.add_argument("--dir", default=None, help="where the private data dirs go (default: a temporary dir)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.vars:
        if os.path.exists(item):
            with open(item, encoding="utf-8") as handle:
                overrides.update(yaml.safe_load(handle) or {})
        else:
            overrides.update(yaml.safe_load(item) or {})
    config = ControllerConfig(args.config, overrides)
    runner = AwxRunner(config, args.dir or tempfile.mkdtemp(prefix="awx-runner-"))
    result = runner.run_workflow(args.workflow, answers=json.loads(args.answers), as_text=args.as_text,
                                 approvals={d: False for d in args.deny})
    print(json.dumps({"status": result["status"], "path": result["path"], "jobs": [j.summary() for j in result["jobs"]]},
                     indent=2, default=str))
    return 0 if result["status"] == "successful" else 1


if __name__ == "__main__":
    sys.exit(main())
