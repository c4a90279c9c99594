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

import gc
import threading
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
    _HAS_TRUST = True
except ImportError:  # ansible-core < 2.19: no trust tags; the value's type (AnsibleUnsafeText) tells instead
    _HAS_TRUST = False

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
            self._replace = C.DEFAULT_HASH_BEHAVIOUR != "merge"
            self._host_plugins = None
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
        data = data | {"ansible_facts": namespaced}      # a new dict: data may be a cached group part
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
        data = self._combine(self._group_part(host), host.get_vars())
        if self._host_plugins is None:
            self._host_plugins = self._host_plugins_needed()
        if self._host_plugins:
            data = self._combine(data, get_vars_from_inventory_sources(self._loader, self._sources, [host], "task"))
            data = self._combine(data, self._play_plugins([host]))
        data = self._merge_facts(data, facts or {})
        if data is None:
            return self._hostvars.raw_get(name)
        for layer in (self._vars_cache.get(host.get_name(), {}), self._set_facts.get(name, {}), self._extra_vars, self._magic):
            if layer:
                data = self._combine(data, layer)
        return data

    def _host_plugins_needed(self):
        """False when asking the vars plugins for each host's variables cannot give anything: the only vars plugin is
        ansible.builtin.host_group_vars and none of the directories it would look in has a ``host_vars`` entry (it
        reads nothing, and says nothing, then). Otherwise True, and every host asks, as get_vars does."""
        import os  # pylint: disable=import-outside-toplevel
        try:
            from ansible.plugins.loader import vars_loader  # pylint: disable=import-outside-toplevel
            from ansible.utils.path import basedir  # pylint: disable=import-outside-toplevel
            if vars_loader._paths is None:  # pylint: disable=protected-access
                return True
            plugins = [vars_loader.get(name) for name in list(vars_loader._plugin_instance_cache)]  # pylint: disable=protected-access
        except (ImportError, AttributeError):
            return True
        if any(p is not None and getattr(p, "ansible_name", None) != "ansible.builtin.host_group_vars" for p in plugins):
            return True
        paths = list(self._basedirs)
        for source in self._sources or []:
            if source is None or ("," in source and not os.path.exists(source)):
                continue
            paths.append(source if os.path.isdir(source) else os.path.dirname(source))
        for path in paths:
            where = basedir(path)
            if where is None or os.path.lexists(os.path.join(os.path.realpath(where), b"host_vars" if isinstance(where, bytes) else "host_vars")):
                return True
        return False

    def _combine(self, data, layer):
        """combine_vars(data, layer); with hash_behaviour 'replace' and two plain dicts that is ``data | layer``, minus
        combine_vars' type checks (the dearest part of merging 10,000 hosts' variables)."""
        if not layer:
            return data if type(data) is dict else combine_vars(data, layer)  # pylint: disable=unidiomatic-typecheck
        if self._replace and type(data) is dict and type(layer) is dict:  # pylint: disable=unidiomatic-typecheck
            return data | layer
        return combine_vars(data, layer)


class _Uncacheable(Exception):
    pass


_NONDETERMINISTIC = frozenset(("random", "shuffle", "password_hash", "lookup", "query", "q", "now"))


class _NotSimple(Exception):
    pass


def _shape(value, budget):
    """The types in ``value`` (recursively, dict keys included), to tell which values render the same way."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _Uncacheable()
    if isinstance(value, bool):
        return "b"
    if isinstance(value, (int, float, str)) or value is None:
        return type(value).__mro__[-2].__name__ if isinstance(value, str) else type(value).__name__
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _shape(v, budget)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_shape(v, budget) for v in value))
    raise _Uncacheable()


def _kind(value):
    for kind in (bool, int, float, str, dict):
        if isinstance(value, kind):
            return kind
    if isinstance(value, (list, tuple)):
        return list
    return type(value)


def _same(fast, slow):
    """Equal values of the same kinds (bool, int, float, str, dict, list; subclasses such as tagged values count
    as their base type)."""
    kind = _kind(fast)
    if kind is not _kind(slow):
        return False
    if kind is dict:
        return list(fast) == list(slow) and all(_same(fast[k], slow[k]) for k in fast)
    if kind is list:
        return len(fast) == len(slow) and all(_same(a, b) for a, b in zip(fast, slow))
    return fast == slow


class _SimpleTemplates:
    """Renders simple templates without Ansible's templating engine (whose per-call cost is ~0.5 ms): a template
    made of text and ``{{ }}`` expressions over variable names, constants, dict-key and index access, arithmetic,
    one comparison, ``and``/``or``/``not``, ``x if c else y``, ``~`` and a few pure Jinja filters and tests is
    compiled once into a Python function. No calls, blocks, lookups or attribute access other than a dict key.
    The result follows Ansible's rules (a single expression keeps its type; text and expressions give a string,
    None as ''). Anything else, a missing key or a failing expression raises _NotSimple, and Ansible renders the
    value instead; _TemplateMemo also has Ansible render the first value of each template and variable types and
    uses this only when both agree."""

    FILTERS = frozenset(("default", "d", "lower", "upper", "string", "int", "float", "trim", "replace", "length", "join", "first", "last"))
    TESTS = frozenset(("defined", "undefined", "none", "number", "string", "mapping", "sequence", "integer", "float", "boolean", "true",
                       "false", "eq", "ne", "lt", "le", "gt", "ge", "in"))
    _BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "FloorDiv": "//", "Mod": "%"}
    _COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "lteq": "<=", "gt": ">", "gteq": ">=", "in": "in", "notin": "not in"}

    def __init__(self, is_template):
        from jinja2 import Environment, nodes  # pylint: disable=import-outside-toplevel
        from jinja2.nodes import EvalContext  # pylint: disable=import-outside-toplevel
        self._env = Environment(autoescape=False)
        self._eval_ctx = EvalContext(self._env)
        self._nodes = nodes
        self._is_template = is_template
        self._compiled = {}

    # -- helpers the compiled functions call --------------------------------------------------------------
    @staticmethod
    def _attr(obj, name):
        # a dict key that is no dict method name ('items', 'keys', ... are ambiguous, Ansible refuses them)
        if isinstance(obj, dict) and name in obj and not hasattr(dict, name):
            return obj[name]
        raise _NotSimple()

    @staticmethod
    def _item(obj, key):
        if isinstance(obj, (dict, list, tuple, str)) and not isinstance(key, slice):
            try:
                return obj[key]
            except (KeyError, IndexError, TypeError):
                pass
        raise _NotSimple()

    @staticmethod
    def _tilde(*parts):
        return "".join(str(part) for part in parts)

    def _filter(self, name, value, args, kwargs):
        return self._env.call_filter(name, value, args, kwargs, eval_ctx=self._eval_ctx)

    def _test(self, name, value, args, kwargs):
        return self._env.call_test(name, value, args, kwargs)

    # -- compiling ------------------------------------------------------------------------------------------
    def _expr(self, node, consts):
        n = self._nodes
        kind = type(node).__name__

        def sub(child):
            return self._expr(child, consts)

        def const(value):
            consts.append(value)
            return "_c[%d]" % (len(consts) - 1)

        def call_args(call):
            if call.dyn_args or call.dyn_kwargs:
                raise _NotSimple()
            return "(%s)" % "".join(sub(a) + ", " for a in call.args), "{%s}" % ", ".join("%s: %s" % (const(k.key), sub(k.value)) for k in call.kwargs)

        if isinstance(node, n.Name) and node.ctx == "load":
            return "_v[%s]" % const(node.name)
        if isinstance(node, n.Const):
            return const(node.value)
        if isinstance(node, (n.List, n.Tuple)):
            return "%s([%s])" % ("list" if isinstance(node, n.List) else "tuple", ", ".join(sub(i) for i in node.items))
        if isinstance(node, n.Dict):
            return "{%s}" % ", ".join("%s: %s" % (sub(p.key), sub(p.value)) for p in node.items)
        if isinstance(node, n.Getattr):
            return "_attr(%s, %s)" % (sub(node.node), const(node.attr))
        if isinstance(node, n.Getitem):
            return "_item(%s, %s)" % (sub(node.node), sub(node.arg))
        if kind in self._BINARY:
            return "(%s %s %s)" % (sub(node.left), self._BINARY[kind], sub(node.right))
        if isinstance(node, n.Neg):
            return "(-%s)" % sub(node.node)
        if isinstance(node, n.Pos):
            return "(+%s)" % sub(node.node)
        if isinstance(node, n.Not):
            return "(not %s)" % sub(node.node)
        if isinstance(node, (n.And, n.Or)):
            return "(%s %s %s)" % (sub(node.left), "and" if isinstance(node, n.And) else "or", sub(node.right))
        if isinstance(node, n.CondExpr) and node.expr2 is not None:
            return "(%s if %s else %s)" % (sub(node.expr1), sub(node.test), sub(node.expr2))
        if isinstance(node, n.Compare) and len(node.ops) == 1 and node.ops[0].op in self._COMPARE:
            return "(%s %s %s)" % (sub(node.expr), self._COMPARE[node.ops[0].op], sub(node.ops[0].expr))
        if isinstance(node, n.Concat):
            return "_tilde(%s)" % ", ".join(sub(i) for i in node.nodes)
        if isinstance(node, n.Filter) and node.name in self.FILTERS and node.node is not None:
            args, kwargs = call_args(node)
            return "_filter(%s, %s, %s, %s)" % (const(node.name), sub(node.node), args, kwargs)
        if isinstance(node, n.Test) and node.name in self.TESTS:
            args, kwargs = call_args(node)
            return "_test(%s, %s, %s, %s)" % (const(node.name), sub(node.node), args, kwargs)
        raise _NotSimple()

    def _compile(self, text):
        """A function ``f(variables)`` for the template ``text``, or None when it is not simple."""
        n = self._nodes
        try:
            tree = self._env.parse(text)
        except Exception:  # pylint: disable=broad-except
            return None
        if not all(isinstance(item, n.Output) for item in tree.body):
            return None
        children = [child for item in tree.body for child in item.nodes]
        consts, parts = [], []
        try:
            for child in children:
                if isinstance(child, n.TemplateData):
                    consts.append(child.data)
                    parts.append("_c[%d]" % (len(consts) - 1))
                else:
                    parts.append(self._expr(child, consts))
        except _NotSimple:
            return None
        if len(parts) == 1 and not isinstance(children[0], n.TemplateData):
            body = parts[0]                                  # a single expression keeps its type
        else:
            body = "_join((%s))" % "".join(p + ", " for p in parts)
        scope = {"_c": consts, "_attr": self._attr, "_item": self._item, "_tilde": self._tilde, "_filter": self._filter,
                 "_test": self._test, "_join": lambda values: "".join("" if v is None else str(v) for v in values),
                 "__builtins__": {"list": list, "tuple": tuple}}
        try:
            return eval(compile("lambda _v: " + body, "<node_discovery simple template>", "eval"), scope)  # pylint: disable=eval-used
        except SyntaxError:
            return None

    def render(self, value, variables):
        """``value`` (a string, or a dict/list holding strings) rendered; raises _NotSimple."""
        if isinstance(value, str):
            if not self._is_template(value) or not is_trusted_as_template(value):
                return value
            text = str(value)
            function = self._compiled.get(text, False)
            if function is False:
                function = self._compiled[text] = self._compile(text)
            if function is None:
                raise _NotSimple()
            try:
                return function(variables)
            except _NotSimple:
                raise
            except Exception:  # pylint: disable=broad-except
                raise _NotSimple()
        if isinstance(value, dict):
            return dict((key, self.render(item, variables)) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return [self.render(item, variables) for item in value]
        return value


class _TemplateMemo:
    """Templates a value in a host's context, reusing the result of an earlier host when the value and every
    variable its templates reach (transitively) are the same, e.g. ``version: "{{ shop_version }}"`` from
    group_vars for a whole group. A template that uses a name that is not a variable (a lookup, ``now()``, an
    undefined variable), a non-deterministic filter, or ``hostvars``/``groups``-sized data is rendered for every
    host, as Ansible would.

    A value whose templates are simple (see ``_SimpleTemplates``) and reach only plain variables is rendered by
    the simple renderer once Ansible's own rendering of the first value of the same template and variable types
    gave the same result; per-host templates (``ansible_host: "10.0.{{ rack }}.{{ slot }}"``) then cost microseconds
    instead of Ansible's milliseconds."""

    _BUDGET = 400
    _UNSHARED = 64      # results of a template not shared by any of its first 64 hosts: stop memoizing it

    def __init__(self, templar, simple=None):
        self._templar = templar
        self._names = {}
        self._results = {}
        self._simple = simple
        self._verified = {}
        self._env = None
        self._containers = {}
        self._frozen = {}
        self._looks_like_template = {}
        self._stats = {}

    def use_simple(self, simple):
        """Render simple templates with ``simple`` (a _SimpleTemplates), checked against Ansible as described above."""
        self._simple = simple

    def is_template(self, text):
        """templar.is_possibly_template(text), remembered by content (it only looks at the characters)."""
        found = self._looks_like_template.get(text)
        if found is None:
            found = self._looks_like_template[text] = bool(self._templar.is_possibly_template(text))
        return found

    def _strings(self, value, out):
        """The template strings in ``value`` appended to ``out``. A container's are found once: the same dict or
        list object (group_vars shared by a group's hosts) is looked up by identity; the cache holds a reference,
        so the object cannot be freed and its id reused while this runs."""
        if isinstance(value, str):
            if self.is_template(value):
                out.append(value)
        elif isinstance(value, (dict, list, tuple)):
            cached = self._containers.get(id(value))
            if cached is None or cached[0] is not value:
                found = []
                if isinstance(value, dict):
                    for key, item in value.items():
                        if not _HAS_TRUST:
                            self._strings(key, found)       # before ansible-core 2.19 dict keys were templated too
                        self._strings(item, found)
                else:
                    for item in value:
                        self._strings(item, found)
                cached = self._containers[id(value)] = (value, found)
            out.extend(cached[1])
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
        if isinstance(value, (dict, list, tuple)):
            cached = self._frozen.get(id(value))                  # by identity, as in _strings
            if cached is None or cached[0] is not value:
                before = budget[0]
                cached = self._frozen[id(value)] = (value, self._freeze_container(value, budget), before - budget[0])
            else:
                budget[0] -= cached[2]
                if budget[0] < 0:
                    raise _Uncacheable()
            return cached[1]
        budget[0] -= 1
        if budget[0] < 0:
            raise _Uncacheable()
        if isinstance(value, str):
            # trust only changes how a template renders; a plain string renders as itself either way
            return (type(value), is_trusted_as_template(value) if self.is_template(value) else None, value)
        if isinstance(value, (bool, int, float)) or value is None:
            return (type(value), value)
        raise _Uncacheable()

    def _freeze_container(self, value, budget):
        budget[0] -= 1
        if budget[0] < 0:
            raise _Uncacheable()
        if isinstance(value, dict):
            return (dict, tuple((self._freeze(k, budget), self._freeze(v, budget)) for k, v in value.items()))
        return (list, tuple(self._freeze(v, budget) for v in value))

    def _reach(self, strings, variables, freeze=None):
        """``(names, plain)``: the variables the templates in ``strings`` reach (transitively) and whether their values
        are plain data (no templates of their own); with ``freeze`` (a budget), also their frozen values."""
        pending, seen, parts = list(strings), set(), []
        plain = True
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
                if freeze is not None:
                    parts.append((name, self._freeze(raw, freeze)))
                before = len(pending)
                self._strings(raw, pending)
                plain = plain and len(pending) == before
        return seen, plain, parts

    def _render(self, value, variables, ident, names, plain):
        if self._simple is None or not plain:
            return self._templar.template(value)
        try:
            budget = [self._BUDGET]
            signature = (ident, _shape(value, budget), tuple((name, _shape(variables[name], budget)) for name in sorted(names)))
        except _Uncacheable:
            return self._templar.template(value)
        verified = self._verified.get(signature)
        if verified is False:
            return self._templar.template(value)
        try:
            fast = self._simple.render(value, dict((name, variables[name]) for name in names))
        except _NotSimple:
            self._verified[signature] = False
            return self._templar.template(value)
        if verified:
            return fast
        # The first value of this template and these types: Ansible renders it too, and the simple renderer is used
        # for the next ones only when both agree (value and type).
        slow = self._templar.template(value)
        self._verified[signature] = _same(fast, slow)
        return slow

    def template(self, value, variables):
        strings = self._strings(value, [])
        if not strings:
            return value
        ident = tuple(strings)
        stats = self._stats.get(ident)
        if stats is None:
            stats = self._stats[ident] = [0, 0]
        try:
            if stats[0] == 0 and stats[1] >= self._UNSHARED:
                # These templates never gave a result an earlier host could share (per-host variables): no memo
                names, plain, _parts = self._reach(strings, variables)
                return self._render(value, variables, ident, names, plain)
            budget = [self._BUDGET]
            names, plain, parts = self._reach(strings, variables, budget)
            key = (self._freeze(value, budget), tuple(sorted(parts, key=lambda p: p[0])))
        except _Uncacheable:
            return self._templar.template(value)
        if key in self._results:
            stats[0] += 1
        else:
            stats[1] += 1
            self._results[key] = self._render(value, variables, ident, names, plain)
        return self._results[key]


class _HostVarReader:
    """``get(host, name)``: a host's variable as ``hostvars[host][name]`` would give it, templated in that host's
    context. Each host's variables are computed once (``_BulkHostVars``) and only the variables asked for are
    templated, with one Templar reused for every host and results shared where the inputs are equal."""

    def __init__(self, hostvars, templar):
        self._bulk = _BulkHostVars(hostvars)
        self._templar = templar.copy_with_new_env()
        self._memo = _TemplateMemo(self._templar)
        if _HAS_TRUST:
            self._memo.use_simple(_SimpleTemplates(self._memo.is_template))
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

    def _timed_container_part(self, task_vars, out):
        mark = time.monotonic()
        try:
            out["part"], out["result"] = self._container_part(task_vars)
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            out["error"] = exc  # re-raised in the task's own thread
        out["seconds"] = round(time.monotonic() - mark, 4)

    def run(self, tmp=None, task_vars=None):
        # The play's inventory is millions of objects; every full garbage collection walks all of them, and building
        # 10,000 nodes triggers several. Frozen objects are left out of collections until unfreeze(), which puts them
        # back (the worker process is about to end anyway).
        gc.freeze()
        try:
            return self._run(task_vars or {})
        finally:
            gc.unfreeze()

    def _run(self, task_vars):
        tmp = None
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
        # The Kubernetes half is a module run: a child process that mostly waits on the API. It runs in a thread
        # while this one reads the inventory (CPU-bound, in this process), so the task takes about the longer of
        # the two instead of their sum.
        container_run = {}
        container_thread = None
        if parts["container"] is not None:
            container_thread = threading.Thread(target=self._timed_container_part, args=(task_vars, container_run),
                                                name="node_discovery-k8s", daemon=True)
            container_thread.start()
        vm_error = None
        if parts["vm"] is not None:
            mark = time.monotonic()
            try:
                vm_part = self._vm_part(parts, params, task_vars, warnings)
            except AnsibleError as exc:
                vm_error = "VM discovery failed: %s" % to_text(exc)
            timings["vm"] = round(time.monotonic() - mark, 4)
        if container_thread is not None:
            container_thread.join()
            if "error" in container_run:
                raise container_run["error"]
            timings["container"] = container_run["seconds"]
        if vm_error:
            result.update(failed=True, msg=vm_error)
            return result
        if container_thread is not None:
            container_part, module_result = container_run["part"], container_run["result"]
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
