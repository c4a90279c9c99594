# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM discovery by the action plugin on real inventories parsed by Ansible (YAML with group_vars and Jinja, INI,
and ``constructed`` with ``compose`` over cloud-style tags), with Ansible's own InventoryManager,
VariableManager, HostVars, Templar and the local connection plugin: no mocks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible import context
from ansible.errors import AnsibleActionFail
from ansible.inventory.manager import InventoryManager
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play import Play
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

from ansible_collections.mixedrun.kong.plugins.action.node_discovery import (
    ActionModule,
    _BulkHostVars,
    _NotSimple,
    _same,
    _SimpleTemplates,
    _TemplateMemo,
)

try:
    from ansible.template import trust_as_template
    HAS_TRUST = True
except ImportError:  # ansible-core < 2.19 templates every string
    HAS_TRUST = False

    def trust_as_template(value):
        return value

# The action plugin renders simple templates itself only on ansible-core >= 2.19 (_HostVarReader); before, its
# templates all go through Ansible's Templar, whose non-native rendering turns a single expression into text.
needs_simple_renderer = pytest.mark.skipif(not HAS_TRUST, reason="the simple renderer is used on ansible-core >= 2.19 only")

HERE = os.path.dirname(os.path.abspath(__file__))
INVENTORIES = os.path.join(HERE, "inventories")
V6 = "[2001:0db8:0000:0000:0000:0000:0000:0001]:9090"


@pytest.fixture(scope="module", autouse=True)
def collection_loader():
    """Ansible's collection loader, as the CLI installs it (inventory plugins such as ansible.builtin.constructed
    are loaded through it); removed again afterwards so other test modules see the import system unchanged."""
    finder = _AnsibleCollectionFinder(paths=[os.path.join(HERE, "..", "..", "..", "..", ".tmp", "collections")])
    finder._install()  # pylint: disable=protected-access
    yield finder
    _AnsibleCollectionFinder._remove()  # pylint: disable=protected-access


class PlaySetup:
    """One parsed inventory and the objects a task runs with."""

    def __init__(self, *sources, limit=None, extra_vars=None):
        context.CLIARGS = ImmutableDict(extra_vars=[], check=False, diff=False)
        self.loader = DataLoader()
        self.inventory = InventoryManager(loader=self.loader, sources=["localhost,"] + [os.path.join(INVENTORIES, s) for s in sources])
        if limit:
            self.inventory.subset(limit)
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        if extra_vars:
            self.variables._extra_vars = extra_vars  # pylint: disable=protected-access
        HostVars(inventory=self.inventory, variable_manager=self.variables, loader=self.loader)
        self.play = Play.load({"hosts": "localhost", "gather_facts": False, "tasks": []}, variable_manager=self.variables, loader=self.loader)

    def run(self, check_mode=False, **args):
        task = Task()
        task.action = "mixedrun.kong.node_discovery"
        task.args = args
        task.check_mode = check_mode
        task_vars = self.variables.get_vars(play=self.play, host=self.inventory.get_host("localhost"), task=task)
        play_context = PlayContext(play=self.play)
        connection = connection_loader.get("local", play_context)
        action = ActionModule(task, connection, play_context, self.loader, Templar(loader=self.loader, variables=task_vars), None)
        action._load_name = task.action  # pylint: disable=protected-access  # set by the plugin loader; ansible-core < 2.19 reads it
        return action.run(task_vars=task_vars)


def names(result):
    return [n["name"] for n in result["nodes"]]


def by_name(result):
    return dict((n["name"], n) for n in result["nodes"])


# --------------------------------------------------------------------------------------------------------
# YAML inventory: inline labels, group_vars files, Jinja in labels and in the drain flag


@pytest.fixture(scope="module")
def yaml_play():
    return PlaySetup("shop.yml")


def test_yaml_selector_with_group_vars_and_jinja(yaml_play):
    result = yaml_play.run(selector="app=shop,tier in (web,api)", kind="vm")
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    nodes = by_name(result)
    assert sorted(nodes) == ["api-1", "api-2", "web-1", "web-2"]
    assert nodes["web-1"]["labels"] == {"app": "shop", "tier": "web", "version": "2.1"}       # Jinja in the host's labels
    assert nodes["api-1"]["labels"] == {"app": "shop", "tier": "api", "version": "2.1"}       # group_vars/shop_api.yml + Jinja
    assert nodes["web-2"]["target"] == "10.0.0.12:8080"                                       # Kong drops the leading zero
    assert nodes["web-2"]["labels"]["canary"] == "true"
    assert nodes["api-1"]["target"] == V6 and nodes["api-1"]["port"] == 9090
    assert nodes["api-2"]["target"] == "api-2:9091"                                           # no ansible_host, port from a string
    assert result["drained"] == [{"name": "web-3", "kind": "vm", "reason": "mixed_drain is true"}]   # drain flag built by Jinja
    assert result["counts"] == {"vm": 4, "container": 0, "total": 4, "ready": 4}
    assert result["duplicates"] == []
    reason = "mixed_labels is not usable: labels must be a dict of label: value, not a list"
    assert result["skipped_nodes"] == [{"name": "bad-labels", "kind": "vm", "reason": reason}]
    assert set(result["timings"]) == {"vm", "container", "total"}
    assert all(n["kind"] == "vm" and n["source"] == "inventory" and n["ready"] for n in result["nodes"])


def test_yaml_selector_excludes_and_reports(yaml_play):
    result = yaml_play.run(vm={"selector": "app=shop,!canary,version!=2.0"}, allow_duplicates=True)
    assert not result.get("failed"), result.get("msg")
    assert "web-2" not in names(result) and "cart-1" not in names(result)
    reasons = dict((s["name"], s["reason"]) for s in result["skipped_nodes"])
    assert reasons["bad-labels"] == "mixed_labels is not usable: labels must be a dict of label: value, not a list"
    assert reasons["no-port"] == "no port: set mixed_port on the host (or its group) or default_port"
    assert "is not a valid Kong target" in reasons["bad-address"]
    assert len(result["duplicates"]) == 1
    duplicate = result["duplicates"][0]
    assert duplicate["target"] == "10.0.0.11:8080"
    assert sorted(duplicate["nodes"]) == ["dup-of-web-1", "web-1"]
    assert duplicate["kept"] == duplicate["nodes"][0] and duplicate["kept"] in names(result)
    assert duplicate["nodes"][1] not in names(result)


def test_yaml_duplicates_fail_by_default(yaml_play):
    result = yaml_play.run(selector="app=shop", vm={"groups": ["shop_web", "broken"]}, default_port=80)
    assert result["failed"] is True
    assert result["msg"].startswith("1 target(s) found more than once: 10.0.0.11:8080 from ")
    assert "allow_duplicates" in result["msg"]
    assert len(result["duplicates"]) == 1


def test_yaml_groups_and_pattern(yaml_play):
    result = yaml_play.run(vm={"groups": ["shop_web"]})
    assert names(result) == ["web-1", "web-2"]
    result = yaml_play.run(vm={"hosts_pattern": "shop:!shop_api"})
    assert names(result) == ["web-1", "web-2"]
    result = yaml_play.run(vm={"hosts_pattern": "~(web|api)-[12]", "groups": ["shop_api"]})
    assert names(result) == ["api-1", "api-2"]
    result = yaml_play.run(vm={"hosts_pattern": "shop:&shop_web", "selector": {"matchLabels": {"version": "2.1"}}})
    assert names(result) == ["web-1"]


def test_default_port_and_configurable_variables(yaml_play):
    result = yaml_play.run(vm={"groups": ["broken"], "selector": "tier=batch"}, default_port=7000)
    assert [(n["name"], n["target"]) for n in result["nodes"]] == [("no-port", "10.0.2.2:7000")]
    result = yaml_play.run(vm={"groups": ["shop_web"], "address_var": "inventory_hostname", "port_var": "nope", "drain_var": "nope"},
                           default_port=81)
    assert [(n["name"], n["target"]) for n in result["nodes"]] == [("web-1", "web-1:81"), ("web-2", "web-2:81"), ("web-3", "web-3:81")]


def test_limit_does_not_narrow_discovery():
    play = PlaySetup("shop.yml", limit="localhost")
    assert names(play.run(vm={"groups": ["shop_web"]})) == ["web-1", "web-2"]


def test_extra_vars_reach_the_templates():
    play = PlaySetup("shop.yml", extra_vars={"shop_version": "3.0", "maintenance_window": False})
    result = play.run(vm={"groups": ["shop_web", "shop_api"], "selector": "version=3.0"})
    assert names(result) == ["web-1", "api-1", "api-2"]                    # web-3's version is a literal 2.1
    result = play.run(vm={"groups": ["shop_web"]})
    assert names(result) == ["web-1", "web-2", "web-3"] and result["drained"] == []    # the drain flag's Jinja sees the extra var


def test_warnings_and_empty_results(yaml_play):
    result = yaml_play.run(vm={"groups": ["nope"]})
    assert result["failed"] is True
    assert result["msg"].startswith("no nodes found")
    assert "vm.groups: group 'nope' is not in the inventory (no hosts from it)" in result["warnings"]
    result = yaml_play.run(vm={"groups": ["nope"]}, allow_empty=True)
    assert not result.get("failed") and result["nodes"] == [] and result["counts"]["total"] == 0
    result = yaml_play.run(selector="app=nothing", vm={}, allow_empty=True)
    assert result["nodes"] == []


def test_check_mode_runs_fully(yaml_play):
    result = yaml_play.run(check_mode=True, vm={"groups": ["shop_web"]})
    assert names(result) == ["web-1", "web-2"] and result["changed"] is False


@pytest.mark.parametrize("args, message", [
    ({}, "say which nodes to discover"),
    ({"vm": {}}, "VM discovery needs at least one of selector"),
    ({"selector": "app in shop", "vm": {}}, "invalid selector at column 8: expected '(' after 'in', found 'shop'\n  app in shop\n         ^"),
    ({"kind": "container", "vm": {"groups": ["shop"]}}, "kind is container but vm options are given"),
])
def test_option_errors(yaml_play, args, message):
    result = yaml_play.run(**args)
    assert result["failed"] is True
    assert message in result["msg"]


def test_unknown_options_fail_validation(yaml_play):
    with pytest.raises(AnsibleActionFail, match="vm.grups|grups"):
        yaml_play.run(vm={"grups": ["shop"]})


# --------------------------------------------------------------------------------------------------------
# INI inventory: the INI parser's typing (JSON dicts, numbers, "true" strings)


def test_ini_inventory():
    play = PlaySetup("shop.ini")
    result = play.run(selector="app=shop,tier=web", vm={})
    assert [(n["name"], n["target"], n["labels"].get("track")) for n in result["nodes"]] == [
        ("ini-web-1", "10.1.0.1:8080", "stable"), ("ini-web-3", "10.1.0.3:8081", "canary")]
    assert [d["name"] for d in result["drained"]] == ["ini-web-2"]
    result = play.run(selector="app=shop,track notin (canary)", vm={"hosts_pattern": "all:!ini-web-1"})
    assert names(result) == ["ini-batch-1"]


# --------------------------------------------------------------------------------------------------------
# constructed over a cloud-style source: compose turns tags into labels, address, port and drain flag


def test_constructed_compose_from_cloud_tags():
    play = PlaySetup("cloud_hosts.yml", "cloud.constructed.yml")
    result = play.run(vm={"selector": "app=shop,tier=web"})
    assert [(n["name"], n["target"]) for n in result["nodes"]] == [("i-0a1", "172.31.0.10:8080")]
    assert result["nodes"][0]["labels"]["Name"] == "shop-web-a"
    assert [d["name"] for d in result["drained"]] == ["i-0a2"]
    result = play.run(vm={"hosts_pattern": "tag_app_billing"})           # a keyed group made by constructed
    assert [(n["name"], n["target"]) for n in result["nodes"]] == [("i-0b1", "172.31.1.10:8443")]


def test_all_sources_together():
    play = PlaySetup("shop.yml", "shop.ini", "cloud_hosts.yml", "cloud.constructed.yml")
    result = play.run(selector="app=shop,tier=web", kind="vm", allow_duplicates=True)
    assert sorted(names(result)) == ["i-0a1", "ini-web-1", "ini-web-3", "web-1", "web-2"]
    assert sorted(d["name"] for d in result["drained"]) == ["i-0a2", "ini-web-2", "web-3"]
    assert result["counts"]["vm"] == 5


# --------------------------------------------------------------------------------------------------------
# The fast paths: bulk host variables equal hostvars.raw_get; shared template results only where inputs are equal


def test_bulk_host_vars_equal_ansible_hostvars():
    play = PlaySetup("shop.yml", "shop.ini", "cloud_hosts.yml", "cloud.constructed.yml", extra_vars={"shop_version": "9.9"})
    variables = play.variables
    variables.set_nonpersistent_facts("web-2", {"mixed_port": 9999})                  # set_fact
    variables.set_host_variable("api-2", "mixed_drain", True)                         # include_vars / add_host vars
    variables.set_host_facts("ini-web-1", {"ansible_distribution": "Debian", "mixed_labels": {"x": "y"}})   # facts
    hostvars = variables._hostvars  # pylint: disable=protected-access
    bulk = _BulkHostVars(hostvars)
    assert bulk.fast
    names_all = [h.name for h in play.inventory.get_hosts("all")]
    assert len(names_all) == 18
    for name in names_all:
        assert bulk.raw_get(name) == hostvars.raw_get(name), name
    assert bulk.raw_get("cart-1")["mixed_labels"]["from"] == "host_vars"
    assert bulk.raw_get("web-2")["mixed_port"] == 9999


def gathered_facts(address, name):
    """Facts shaped like the setup module's (as the fact cache holds them, internal marker included)."""
    return {
        "_ansible_facts_gathered": True,
        "ansible_hostname": name, "ansible_fqdn": name + ".example.test", "ansible_distribution": "Debian",
        "ansible_distribution_major_version": "12", "ansible_os_family": "Debian", "ansible_processor_vcpus": 2,
        "ansible_default_ipv4": {"address": address, "interface": "eth0", "gateway": "10.9.0.1", "prefix": "24"},
        "ansible_all_ipv4_addresses": [address], "ansible_interfaces": ["lo", "eth0", "docker0"],
        "ansible_eth0": {"device": "eth0", "active": True, "ipv4": {"address": address, "netmask": "255.255.255.0"}},
        "ansible_docker0": {"device": "docker0", "active": False}, "ansible_docker_bridge": {"present": True},
        "ansible_ssh_host_key_ed25519_public": "AAAAC3NzaC1lZDI1NTE5AAAAIJ0",
        "ansible_local": {"shop": {"zone": "eu-1", "labels": {"app": "shop", "tier": "web"}}},
        "ansible_env": {"HOME": "/root", "LANG": "C.UTF-8"}, "discovered_interpreter_python": "/usr/bin/python3",
        "gather_subset": ["all"], "module_setup": True,
    }


class CountingHostVars:
    """hostvars whose raw_get (the exact, slow path) counts its calls."""

    def __init__(self, hostvars):
        self._variable_manager = hostvars._variable_manager  # pylint: disable=protected-access
        self.hostvars = hostvars
        self.exact = []

    def raw_get(self, name):
        self.exact.append(name)
        return self.hostvars.raw_get(name)


def test_bulk_host_vars_take_facts_on_the_fast_path():
    play = PlaySetup("shop.yml", "shop.ini", "cloud_hosts.yml", "cloud.constructed.yml")
    variables = play.variables
    names_all = [h.name for h in play.inventory.get_hosts("all")]
    for index, name in enumerate(names_all):
        variables.set_host_facts(name, gathered_facts("10.9.0.%d" % (index + 1), name))
    variables.set_host_facts("web-1", {"ansible_connection": "ssh"})      # a fact Ansible's cleaning removes (with a warning)
    hostvars = variables._hostvars  # pylint: disable=protected-access
    counting = CountingHostVars(hostvars)
    bulk = _BulkHostVars(counting)
    assert bulk.fast
    for name in names_all:
        assert bulk.raw_get(name) == hostvars.raw_get(name), name
    assert counting.exact == ["web-1"]                                    # only the host whose facts need cleaning
    got = bulk.raw_get("api-1")
    assert got["ansible_facts"]["default_ipv4"]["address"] == got["ansible_default_ipv4"]["address"]
    assert got["ansible_facts"]["_ansible_facts_gathered"] is True and "_ansible_facts_gathered" not in got
    assert got["ansible_local"]["shop"]["zone"] == "eu-1"


def test_discovery_with_a_fact_cache_templates_facts():
    play = PlaySetup("shop.yml")
    variables = play.variables
    for index, name in enumerate(("web-1", "web-2", "web-3", "api-1", "api-2")):
        variables.set_host_facts(name, gathered_facts("10.9.0.%d" % (index + 1), name))
        variables.set_host_variable(name, "ansible_host", trust_as_template("{{ ansible_default_ipv4.address }}"))
        variables.set_host_variable(name, "mixed_labels", trust_as_template("{{ ansible_local.shop.labels | combine({'os': ansible_os_family}) }}"))
    result = play.run(vm={"groups": ["shop_web", "shop_api"], "selector": "app=shop,os=Debian"}, allow_duplicates=False)
    assert not result.get("failed"), result.get("msg")
    assert [(n["name"], n["target"]) for n in result["nodes"]] == [
        ("web-1", "10.9.0.1:8080"), ("web-2", "10.9.0.2:8080"), ("api-1", "10.9.0.4:9090"), ("api-2", "10.9.0.5:9091")]
    assert result["nodes"][0]["labels"] == {"app": "shop", "tier": "web", "os": "Debian"}
    assert [d["name"] for d in result["drained"]] == ["web-3"]


def test_bulk_host_vars_drive_discovery():
    play = PlaySetup("shop.yml")
    play.variables.set_nonpersistent_facts("web-2", {"mixed_drain": True})
    play.variables.set_host_variable("web-1", "mixed_port", 8181)
    result = play.run(vm={"groups": ["shop_web", "cart"]}, default_port=8080)
    assert [(n["name"], n["target"]) for n in result["nodes"]] == [("web-1", "10.0.0.11:8181"), ("cart-1", "10.0.1.1:8080")]
    assert sorted(d["name"] for d in result["drained"]) == ["web-2", "web-3"]
    assert result["nodes"][1]["labels"]["from"] == "host_vars"


class CountingTemplar:
    """A real Templar that counts its template() calls."""

    def __init__(self, loader):
        self.templar = Templar(loader=loader)
        self.calls = 0

    def is_possibly_template(self, value):
        return self.templar.is_possibly_template(value)

    def template(self, value):
        self.calls += 1
        return self.templar.template(value)

    def set(self, variables):
        self.templar.available_variables = variables


def test_template_memo_shares_only_equal_inputs():
    play = PlaySetup("shop.yml")
    bulk = _BulkHostVars(play.variables._hostvars)  # pylint: disable=protected-access
    templar = CountingTemplar(play.loader)
    memo = _TemplateMemo(templar)
    shared = {"app": "shop", "version": trust_as_template("{{ shop_version }}")}
    per_host = {"host": trust_as_template("{{ inventory_hostname }}")}
    lookup = {"when": trust_as_template("{{ lookup('env', 'HOME') }}")}
    undefined = {"x": trust_as_template("{{ not_defined | default('d') }}")}
    results = []
    for name in ("web-1", "web-2", "web-3", "api-1"):
        variables = dict(bulk.raw_get(name))
        templar.set(variables)
        results.append((memo.template(shared, variables), memo.template(per_host, variables), memo.template(lookup, variables),
                        memo.template(undefined, variables)))
    assert [r[0] for r in results] == [{"app": "shop", "version": "2.1"}] * 4
    assert [r[1]["host"] for r in results] == ["web-1", "web-2", "web-3", "api-1"]
    assert [r[3] for r in results] == [{"x": "d"}] * 4
    # shared: rendered once; per-host: once per host; the lookup and the undefined variable: every time
    assert templar.calls == 1 + 4 + 4 + 4
    variables = dict(bulk.raw_get("web-1"), shop_version="3.0")                  # another value: rendered again
    templar.set(variables)
    assert memo.template(shared, variables) == {"app": "shop", "version": "3.0"}
    assert memo.template({"plain": "no template"}, variables) == {"plain": "no template"}
    assert templar.calls == 14


# --------------------------------------------------------------------------------------------------------
# The simple renderer: the same results as Ansible's templating for what it accepts, refusal for the rest


SIMPLE_VARS = {"n": None, "i": 5, "s": "7", "b": True, "l": [1, 2], "d": {"a": 1, "items": 3, "x": {"y": "z"}}, "f": 1.5, "e": "",
               "name": "web-1"}
SIMPLE = ["{{ 1 }}", "{{ '1' }}", "{{ n }}", "a{{ n }}", "{{ b }}", "x{{ b }}", "{{ l }}", " {{ i }}", "{{ i }}{{ i }}", "{{ s }}",
          "{{ d.a }}", "{{ d['items'] }}", "{{ d.x.y }}", "{{ f }}", "x{{ f }}", "{{ i // 2 }}", "{{ i / 2 }}", "{{ 'a' if i else 'b' }}",
          "{{ s ~ i }}", "{{ n ~ 'a' }}", "{{ n is none }}", "{{ i | string }}", "{{ s | int + 1 }}", "{{ l | length }}", "{{ 'A' | lower }}",
          "{{ ' a ' | trim }}", "{{ e | default('dflt', true) }}", "{{ l | join(',') }}", "x{{ l }}", "{{ d }}", "x{{ d.x }}", "{{ i > 3 }}",
          "{{ 'web' in name }}", "{{ i is number }}", "{{ [i, s] }}", "{{ {'k': i} }}", "{{ i }}\n", "{{ name | replace('-', '_') }}",
          "{# a comment #}{{ i }}", "{{ -i }}", "{{ not b }}", "{{ b and i }}", "{{ n or 'x' }}", "{{ i % 3 }}", "{{ name[0] }}",
          "{{ l | first }}", "{{ l[0] }}", "10.0.{{ i }}.1"]
NOT_SIMPLE = ["{{ d.items }}", "{% if i %}x{% endif %}", "{{ lookup('env', 'HOME') }}", "{{ i | abs }}", "{{ name.upper() }}",
              "{{ l[5] }}", "{{ i / 0 }}", "{{ nope }}", "{{ 1 < i < 9 }}", "{{ 'a' if b }}", "{{ range(3) | list }}", "{{ l[0:1] }}"]


@pytest.fixture(scope="module")
def simple_templar():
    templar = Templar(loader=DataLoader(), variables=SIMPLE_VARS)
    return templar, _SimpleTemplates(templar.is_possibly_template)


@needs_simple_renderer
@pytest.mark.parametrize("source", SIMPLE)
def test_simple_templates_render_as_ansible_does(simple_templar, source):
    templar, simple = simple_templar
    fast = simple.render(trust_as_template(source), SIMPLE_VARS)
    slow = templar.template(trust_as_template(source))
    assert _same(fast, slow), (fast, slow)
    assert type(fast) in (type(slow), str) or isinstance(fast, type(slow))


@pytest.mark.parametrize("source", NOT_SIMPLE)
def test_other_templates_are_left_to_ansible(simple_templar, source):
    _templar, simple = simple_templar
    with pytest.raises(_NotSimple):
        simple.render(trust_as_template(source), SIMPLE_VARS)


@needs_simple_renderer
def test_simple_render_of_structures_templates_trusted_values_only(simple_templar):
    templar, simple = simple_templar
    value = {trust_as_template("{{ s }}"): trust_as_template("{{ i }}"), "plain": "{{ i }}", "list": [trust_as_template("{{ name }}"), 1, None]}
    assert simple.render(value, SIMPLE_VARS) == templar.template(value) == {"{{ s }}": 5, "plain": "{{ i }}", "list": ["web-1", 1, None]}


def test_same_compares_values_and_kinds():
    assert _same({"a": [1, "x", None]}, {"a": [1, "x", None]})
    assert not _same(1, True) and not _same(1, 1.0) and not _same("1", 1) and not _same([1], (1, 2)) and not _same({"a": 1}, {"b": 1})


class WrongRenderer:
    """A simple renderer that answers wrongly for one template: the memo must notice on the first host."""

    def __init__(self, real):
        self.real = real
        self.calls = 0

    def render(self, value, variables):
        self.calls += 1
        if "wrong" in str(value):
            return "not what Ansible says"
        return self.real.render(value, variables)


def test_memo_uses_the_simple_renderer_only_after_ansible_agreed():
    play = PlaySetup("shop.yml")
    bulk = _BulkHostVars(play.variables._hostvars)  # pylint: disable=protected-access
    templar = CountingTemplar(play.loader)
    simple = WrongRenderer(_SimpleTemplates(templar.is_possibly_template))
    memo = _TemplateMemo(templar, simple)
    right = {"address": trust_as_template("10.9.{{ mixed_port // 100 }}.{{ inventory_hostname | replace('web-', '') }}")}
    wrong = {"x": trust_as_template("{{ inventory_hostname ~ '-wrong' }}")}
    rendered = []
    for name in ("web-1", "web-2", "web-3"):
        variables = dict(bulk.raw_get(name))
        templar.set(variables)
        rendered.append((memo.template(right, variables), memo.template(wrong, variables)))
    assert [r[0]["address"] for r in rendered] == ["10.9.80.1", "10.9.80.2", "10.9.80.3"]
    assert [r[1]["x"] for r in rendered] == ["web-1-wrong", "web-2-wrong", "web-3-wrong"]      # Ansible's, every time
    # right: Ansible once (the check), then the simple renderer; wrong: Ansible for all three hosts
    assert templar.calls == 1 + 3
    assert simple.calls == 3 + 1


def _bulk_for(directory, with_host_vars):
    inventory = directory / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h1: {mixed_labels: {app: shop}, mixed_port: 80}\n    h2: {mixed_labels: {app: shop}, mixed_port: 81}\n")
    if with_host_vars:
        (directory / "host_vars").mkdir()
        (directory / "host_vars" / "h2.yml").write_text("mixed_port: 8082\n")
    context.CLIARGS = ImmutableDict(extra_vars=[], check=False, diff=False)
    loader = DataLoader()
    loader.set_basedir(str(directory))
    manager = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=manager)
    hostvars = HostVars(inventory=manager, variable_manager=variables, loader=loader)
    return _BulkHostVars(hostvars), hostvars


def test_host_vars_plugins_are_asked_only_where_they_can_answer(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "with").mkdir()
    bulk, hostvars = _bulk_for(tmp_path / "plain", with_host_vars=False)
    assert [bulk.raw_get(h) == hostvars.raw_get(h) for h in ("h1", "h2")] == [True, True]
    assert bulk._host_plugins is False  # pylint: disable=protected-access
    bulk, hostvars = _bulk_for(tmp_path / "with", with_host_vars=True)
    assert bulk.raw_get("h2")["mixed_port"] == 8082 == hostvars.raw_get("h2")["mixed_port"]
    assert bulk._host_plugins is True  # pylint: disable=protected-access
    assert bulk.raw_get("h1") == hostvars.raw_get("h1")


def test_memo_stops_memoizing_per_host_templates_and_stays_right():
    play = PlaySetup("shop.yml")
    bulk = _BulkHostVars(play.variables._hostvars)  # pylint: disable=protected-access
    templar = CountingTemplar(play.loader)
    memo = _TemplateMemo(templar, _SimpleTemplates(templar.is_possibly_template))
    per_host = {"host": trust_as_template("{{ inventory_hostname }}-{{ n }}")}
    base = dict(bulk.raw_get("web-1"))
    templar.set(base)
    results = []
    for i in range(200):
        variables = dict(base, n=i)
        templar.set(variables)
        results.append(memo.template(per_host, variables)["host"])
    assert results == ["web-1-%d" % i for i in range(200)]
    assert templar.calls == 1                                   # Ansible once (the check); the simple renderer for the rest
    assert len(memo._results) == _TemplateMemo._UNSHARED       # pylint: disable=protected-access
