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

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

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


class _HostVarReader:
    """``get(host, name)``: a host's variable as ``hostvars[host][name]`` would give it, templated in that host's
    context. The host's variables are computed once per host (VariableManager.get_vars, as HostVars does) and only
    the variables asked for are templated, with one Templar reused for every host."""

    def __init__(self, hostvars, templar):
        self._hostvars = hostvars
        self._templar = templar.copy_with_new_env()
        self._host = None
        self._vars = None

    def _switch(self, host):
        if host != self._host:
            raw = self._hostvars.raw_get(host)
            self._vars = raw if isinstance(raw, dict) or hasattr(raw, "keys") else {}
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
            return self._templar.template(value)
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
        return {"nodes": result.get("nodes") or [], "skipped": result.get("skipped") or []}, result

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
