# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action half of mixedrun.kong.node_discovery.

VM discovery needs the play's inventory, which only the controller has: this plugin picks the candidate hosts
(groups, host pattern), reads each candidate's variables as ``hostvars`` gives them and templates only the few
it needs, then runs the module on the task's host for the Kubernetes part and merges both into one result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.inventory.helpers import get_group_vars, sort_groups
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.vars import combine_vars
from ansible.vars.plugins import get_vars_from_inventory_sources, get_vars_from_path

try:
    from ansible.template import is_trusted_as_template
except ImportError:  # ansible-core < 2.19: no trust tags; the value's type (AnsibleUnsafeText) tells instead

    def is_trusted_as_template(value):
        return True

from ansible_collections.mixedrun.kong.plugins.module_utils._discovery import (
    MISSING,
    DiscoveryError,
    argument_spec,
    assemble,
    discover_vms,
    plan_parts,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._selector import SelectorError

MODULE = "mixedrun.kong.node_discovery"


def _fact_cleaning_rules():
    """``needs_cleaning(keys)``: whether ``clean_facts`` would remove (and warn about) any of these top-level fact keys.

    The same rules as ansible.vars.clean.clean_facts, computed once instead of once per host (it lists every
    connection plugin each time)."""
    import os
    import re
    from ansible.plugins.loader import connection_loader
    names = set()
    for group in C.MAGIC_VARIABLE_MAPPING.values():
        names.update(group)
    names.update(C.COMMON_CONNECTION_VARS)
    names.update(C.RESTRICTED_RESULT_KEYS)
    names.update(C.INTERNAL_RESULT_KEYS)
    plugins = sorted(set(os.path.splitext(os.path.basename(p))[0] for p in connection_loader.all(path_only=True)))
    by_plugin = re.compile("^ansible_(%s)_" % "|".join(re.escape(n) for n in plugins)) if plugins else None
    interpreter = re.compile("^ansible_.*_interpreter$")

    def needs_cleaning(keys):
        for key in keys:
            if not isinstance(key, str) or key.startswith("ansible_ssh_host_key_"):
                continue        # clean_facts keeps the ssh host keys
            if key in names or key.startswith("ansible_become_") or interpreter.match(key):
                return True
            if by_plugin is not None and by_plugin.match(key) and not key.endswith(("_bridge", "_gwbridge")):
                return True
        return False
    return needs_cleaning


class _BulkHostVars:
    """``raw_get(host)``: a host's variables exactly as ``hostvars.raw_get(host)`` (VariableManager.get_vars with
    a host and no play or task) returns them, for thousands of hosts.

    get_vars recomputes the ``all`` and group variables (inventory and vars plugins) for every host, copies each
    host's facts twice and lists the connection plugins to clean them: ~0.3 ms a host without facts, ~10 ms with.
    Here the group part is computed once per distinct group set and reused, the magic variables once, and facts
    are merged in get_vars' way (``ansible_facts`` namespace, then the facts as top-level variables without
    Ansible's internal ``_ansible_*`` keys) but without the copies (nothing here changes a value) and without
    looking for ``_ansible_*`` keys nested inside fact values, which no fact module returns. Per host only
    the host's own inventory and vars-plugin variables, its facts, set_fact/include_vars results and extra vars
    are merged, in get_vars' order. A host whose facts hold a key that Ansible's fact cleaning removes (with a
    warning), or any Ansible whose VariableManager lacks what this needs, takes ``hostvars.raw_get`` itself.
    tests/unit/plugins/action/test_node_discovery.py checks both give equal results.
    """

    def __init__(self, hostvars):
        self._hostvars = hostvars
        self._groups = {}
        try:
            self._vm = hostvars._variable_manager  # pylint: disable=protected-access
            self._inventory = self._vm._inventory  # pylint: disable=protected-access
            self._loader = self._vm._loader  # pylint: disable=protected-access
            self._sources = self._inventory._sources  # pylint: disable=protected-access
            self._fact_cache = self._vm._fact_cache  # pylint: disable=protected-access
            self._vars_cache = self._vm._vars_cache  # pylint: disable=protected-access
            self._set_facts = self._vm._nonpersistent_fact_cache  # pylint: disable=protected-access
            self._extra_vars = self._vm._extra_vars  # pylint: disable=protected-access
            self._allowed = self._vm._ALLOWED  # pylint: disable=protected-access
            self._magic = self._vm._get_magic_variables(play=None, host=None, task=None, include_hostvars=False)  # pylint: disable=protected-access
            self._basedirs = [self._loader.get_basedir()] if self._vm.safe_basedir else []
            self._needs_cleaning = None
            self._inject = C.INJECT_FACTS_AS_VARS
            try:
                from ansible.vars.manager import _deprecate_top_level_fact  # pylint: disable=import-outside-toplevel
            except ImportError:   # older Ansible: top-level facts are plain values
                _deprecate_top_level_fact = None
            self._top_level = _deprecate_top_level_fact
            self.fast = True
        except AttributeError:
            self.fast = False

    def _group_part(self, host):
        groups = sort_groups([g for g in host.get_groups() if g.name != "all"])
        key = tuple(g.name for g in groups)
        data = self._groups.get(key)
        if data is None:
            all_group = self._inventory.groups.get("all")
            parts = {
                "all_inventory": all_group.get_vars,
                "all_plugins_inventory": lambda: get_vars_from_inventory_sources(self._loader, self._sources, [all_group], "task"),
                "all_plugins_play": lambda: self._play_plugins([all_group]),
                "groups_inventory": lambda: get_group_vars(groups),
                "groups_plugins_inventory": lambda: get_vars_from_inventory_sources(self._loader, self._sources, groups, "task"),
                "groups_plugins_play": lambda: self._play_plugins(groups),
            }
            data = {}
            for entry in C.VARIABLE_PRECEDENCE:
                if entry in self._allowed and entry in parts:
                    data = combine_vars(data, parts[entry]())
            self._groups[key] = data
        return data

    def _play_plugins(self, entities):
        data = {}
        for path in self._basedirs:
            data = combine_vars(data, get_vars_from_path(self._loader, path, entities, "task"))
        return data

    def _merge_facts(self, data, facts):
        """``data`` with the facts merged as get_vars merges them, or None when Ansible's cleaning would change them."""
        if self._needs_cleaning is None:
            self._needs_cleaning = _fact_cleaning_rules()
        if self._inject and facts and self._needs_cleaning(facts):
            return None
        namespaced = {}
        for key, value in facts.items():
            namespaced[key[8:] if key.startswith("ansible_") and key != "ansible_local" else key] = value
        data |= {"ansible_facts": namespaced}
        if self._inject:
            top = {}
            for key, value in facts.items():
                if isinstance(key, str) and key.startswith("_ansible_"):
                    continue
                top[key] = value if (self._top_level is None or key == "ansible_local") else self._top_level(value)
            if top:
                data = combine_vars(data, top)
        else:
            data = combine_vars(data, {"ansible_local": facts.get("ansible_local", {})})
        return data

    def raw_get(self, name):
        if not self.fast:
            return self._hostvars.raw_get(name)
        host = self._inventory.get_host(name)
        if host is None:
            return self._hostvars.raw_get(name)
        try:
            facts = self._fact_cache.get(name)
        except KeyError:
            facts = {}
        data = combine_vars(self._group_part(host), host.get_vars())
        data = combine_vars(data, get_vars_from_inventory_sources(self._loader, self._sources, [host], "task"))
        data = combine_vars(data, self._play_plugins([host]))
        data = self._merge_facts(data, facts or {})
        if data is None:
            return self._hostvars.raw_get(name)
        for layer in (self._vars_cache.get(host.get_name(), {}), self._set_facts.get(name, {}), self._extra_vars, self._magic):
            if layer:
                data = combine_vars(data, layer)
        return data


class _Uncacheable(Exception):
    pass


_NONDETERMINISTIC = frozenset(("random", "shuffle", "password_hash", "lookup", "query", "q", "now"))


class _TemplateMemo:
    """Templates a value in a host's context, reusing the result of an earlier host when the value and every
    variable its templates reach (transitively) are the same, e.g. ``version: "{{ shop_version }}"`` from
    group_vars for a whole group. A template that uses a name that is not a variable (a lookup, ``now()``, an
    undefined variable), a non-deterministic filter, or ``hostvars``/``groups``-sized data is rendered for every
    host, as Ansible would."""

    _BUDGET = 400

    def __init__(self, templar):
        self._templar = templar
        self._names = {}
        self._results = {}
        self._env = None

    def _strings(self, value, out):
        if isinstance(value, str):
            if self._templar.is_possibly_template(value):
                out.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._strings(key, out)
                self._strings(item, out)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._strings(item, out)
        return out

    def _referenced(self, text):
        if text not in self._names:
            try:
                from jinja2 import Environment, meta, nodes  # pylint: disable=import-outside-toplevel
                if self._env is None:
                    self._env = Environment()
                tree = self._env.parse(text)
                names = meta.find_undeclared_variables(tree)
                used = set(n.name for n in tree.find_all((nodes.Filter, nodes.Test)))
                used.update(n.node.name for n in tree.find_all(nodes.Call) if isinstance(n.node, nodes.Name))
                self._names[text] = None if used & _NONDETERMINISTIC else frozenset(names)
            except Exception:  # pylint: disable=broad-except
                self._names[text] = None
        return self._names[text]

    def _freeze(self, value, budget):
        budget[0] -= 1
        if budget[0] < 0:
            raise _Uncacheable()
        if isinstance(value, str):
            return (type(value), is_trusted_as_template(value), str(value))
        if isinstance(value, (bool, int, float)) or value is None:
            return (type(value), value)
        if isinstance(value, dict):
            return (dict, tuple((self._freeze(k, budget), self._freeze(v, budget)) for k, v in value.items()))
        if isinstance(value, (list, tuple)):
            return (list, tuple(self._freeze(v, budget) for v in value))
        raise _Uncacheable()

    def _key(self, value, strings, variables):
        budget = [self._BUDGET]
        pending, seen, parts = list(strings), set(), []
        while pending:
            names = self._referenced(pending.pop())
            if names is None:
                raise _Uncacheable()
            for name in names:
                if name in seen:
                    continue
                seen.add(name)
                if name not in variables:
                    raise _Uncacheable()
                raw = variables[name]
                parts.append((name, self._freeze(raw, budget)))
                self._strings(raw, pending)
        return (self._freeze(value, budget), tuple(sorted(parts, key=lambda p: p[0])))

    def template(self, value, variables):
        strings = self._strings(value, [])
        if not strings:
            return value
        try:
            key = self._key(value, strings, variables)
        except _Uncacheable:
            return self._templar.template(value)
        if key not in self._results:
            self._results[key] = self._templar.template(value)
        return self._results[key]


class _HostVarReader:
    """``get(host, name)``: a host's variable as ``hostvars[host][name]`` would give it, templated in that host's
    context. Each host's variables are computed once (``_BulkHostVars``) and only the variables asked for are
    templated, with one Templar reused for every host and results shared where the inputs are equal."""

    def __init__(self, hostvars, templar):
        self._bulk = _BulkHostVars(hostvars)
        self._templar = templar.copy_with_new_env()
        self._memo = _TemplateMemo(self._templar)
        self._host = None
        self._vars = None

    def _switch(self, host):
        if host != self._host:
            raw = self._bulk.raw_get(host)
            self._vars = raw if hasattr(raw, "keys") else {}
            self._templar.available_variables = self._vars
            self._host = host

    def get(self, host, name):
        self._switch(host)
        if name not in self._vars:
            return MISSING
        value = self._vars[name]
        if isinstance(value, (bool, int, float)) or value is None:
            return value
        try:
            return self._memo.template(value, self._vars)
        except AnsibleError as exc:
            raise AnsibleError("cannot template %s for host %s: %s" % (name, host, to_text(exc)))


class ActionModule(ActionBase):
    """Runs VM discovery here and the module for the Kubernetes part."""

    _supports_check_mode = True
    _supports_async = False

    def _inventory(self, task_vars):
        inventory = getattr(task_vars.get("hostvars"), "_inventory", None)
        if inventory is not None and hasattr(inventory, "get_hosts"):
            return inventory
        # Same fallback as the inventory_hostnames lookup: rebuild the host/group structure from `groups`.
        from ansible.inventory.manager import InventoryManager
        manager = InventoryManager(self._loader, parse=False)
        for group, hosts in (task_vars.get("groups") or {}).items():
            manager.add_group(group)
            for host in hosts:
                manager.add_host(host, group=group)
        return manager

    def _candidates(self, vm_options, task_vars, warnings):
        groups = task_vars.get("groups") or {}
        ordered = None
        if vm_options.get("hosts_pattern"):
            inventory = self._inventory(task_vars)
            try:
                hosts = inventory.get_hosts(vm_options["hosts_pattern"], ignore_limits=True, ignore_restrictions=True)
            except AnsibleError as exc:
                raise AnsibleError("vm.hosts_pattern %r is not a valid host pattern: %s" % (vm_options["hosts_pattern"], to_text(exc)))
            ordered = [h.name for h in hosts]
        if vm_options.get("groups"):
            in_groups, members = [], set()
            for group in vm_options["groups"]:
                if group not in groups:
                    warnings.append("vm.groups: group %r is not in the inventory (no hosts from it)" % group)
                    continue
                for host in groups[group]:
                    if host not in members:
                        members.add(host)
                        in_groups.append(host)
            ordered = in_groups if ordered is None else [h for h in ordered if h in members]
        if ordered is None:
            ordered = list(groups.get("all") or [])
        return ordered

    def _vm_part(self, parts, params, task_vars, warnings):
        vm_options = params.get("vm") or {}
        hosts = self._candidates(vm_options, task_vars, warnings)
        reader = _HostVarReader(task_vars["hostvars"], self._templar)
        return discover_vms(hosts, reader.get, parts["vm"], vm_options, default_port=params.get("default_port"))

    def _container_part(self, task_vars):
        module_args = dict(self._task.args)
        module_args.pop("vm", None)
        module_args.update(kind="container", allow_empty=True, allow_duplicates=True)
        result = self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)
        if result.get("failed"):
            return None, result
        # The module reduced its nodes to one per target (allow_duplicates above); its duplicates travel on, so that
        # assemble() reports them with any VM duplicates and applies the task's own allow_duplicates to all of them.
        return {"nodes": result.get("nodes") or [], "skipped": result.get("skipped_nodes") or [],
                "duplicates": result.get("duplicates") or []}, result

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        started = time.monotonic()
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        result.update(changed=False)
        _validation, params = self.validate_argument_spec(argument_spec=argument_spec())
        try:
            parts = plan_parts(params)
        except (SelectorError, ValueError) as exc:
            result.update(failed=True, msg=to_text(exc))
            return result
        warnings = []
        timings = {"vm": 0.0, "container": 0.0}
        vm_part = container_part = None
        if parts["vm"] is not None:
            mark = time.monotonic()
            try:
                vm_part = self._vm_part(parts, params, task_vars, warnings)
            except AnsibleError as exc:
                result.update(failed=True, msg="VM discovery failed: %s" % to_text(exc))
                return result
            timings["vm"] = round(time.monotonic() - mark, 4)
        if parts["container"] is not None:
            mark = time.monotonic()
            container_part, module_result = self._container_part(task_vars)
            timings["container"] = round(time.monotonic() - mark, 4)
            if container_part is None:
                module_result.pop("invocation", None)
                result.update(module_result)
                result["changed"] = False
                return result
            warnings.extend(module_result.get("warnings") or [])
        try:
            found = assemble(vm_part, container_part, allow_duplicates=params["allow_duplicates"], allow_empty=params["allow_empty"])
            failed = None
        except DiscoveryError as exc:
            found, failed = exc.result, to_text(exc)
        timings["total"] = round(time.monotonic() - started, 4)
        result.update(found)
        result["timings"] = timings
        if warnings:
            result["warnings"] = list(result.get("warnings") or []) + warnings
        if failed:
            result.update(failed=True, msg=failed)
        return result
