# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The label selector grammar: every form, Kubernetes semantics, rendering, and every error."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils._selector import (
    Requirement,
    Selector,
    SelectorError,
    label_value,
    normalize_labels,
    parse_selector,
)

WEB = {"app": "shop", "tier": "web", "version": "2"}
API = {"app": "shop", "tier": "api", "version": "1", "canary": "true"}
CART = {"app": "cart", "tier": "web"}
BARE = {}


def matching(selector, *label_sets):
    parsed = parse_selector(selector)
    return [parsed.matches(labels) for labels in label_sets]


# --- the string syntax: each operator and its Kubernetes semantics ---------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("app=shop", [True, True, False, False]),
    ("app==shop", [True, True, False, False]),
    ("app!=shop", [False, False, True, True]),            # an absent label matches !=
    ("tier in (web,api)", [True, True, True, False]),
    ("tier notin (web)", [False, True, False, True]),     # an absent label matches notin
    ("canary", [False, True, False, False]),              # exists
    ("!canary", [True, False, True, True]),               # does not exist
    ("app=shop,tier in (web,api),!canary,version!=1", [True, False, False, False]),
    ("", [True, True, True, True]),                       # the empty selector matches everything
    ("   ", [True, True, True, True]),
])
def test_string_operators(text, expected):
    assert matching(text, WEB, API, CART, BARE) == expected


def test_whitespace_is_free_between_tokens():
    a = parse_selector("  app = shop ,tier   in(web , api) , ! canary ")
    assert a == parse_selector("app=shop,tier in (web,api),!canary")


def test_empty_value_means_present_and_empty():
    sel = parse_selector("track=,app=shop")
    assert sel.matches({"track": "", "app": "shop"})
    assert not sel.matches({"app": "shop"})
    assert not sel.matches({"track": "x", "app": "shop"})
    assert sel.to_k8s() == "track=,app=shop"


@pytest.mark.parametrize("text, values, rendered", [
    ("tier in ()", [""], "tier in ()"),                   # apimachinery's parseValues: "()" is the empty value
    ("tier in (,)", [""], "tier in ()"),
    ("tier in (web,)", ["", "web"], "tier in (,web)"),
    ("tier in (,web)", ["", "web"], "tier in (,web)"),
    ("tier in (web,,api)", ["", "api", "web"], "tier in (,api,web)"),
    ("tier in (,,web)", ["", "web"], "tier in (,web)"),
    ("tier notin (web,)", ["", "web"], "tier notin (,web)"),
])
def test_empty_values_in_sets_as_kubernetes_reads_them(text, values, rendered):
    sel = parse_selector(text)
    assert sorted(sel.requirements[0].values) == values
    assert sel.to_k8s() == rendered
    assert parse_selector(rendered) == sel                 # what is sent to the API server parses back the same
    empty, web, absent = {"tier": ""}, {"tier": "web"}, {}
    if sel.requirements[0].operator == "in":
        assert [sel.matches(x) for x in (empty, web, absent)] == [True, "web" in values, False]
    else:
        assert [sel.matches(x) for x in (empty, web, absent)] == [False, False, True]


def test_prefixed_keys_and_odd_but_valid_values():
    sel = parse_selector("kubernetes.io/service-name=shop,app.kubernetes.io/version in (1.2.3,v2_beta)")
    assert sel.matches({"kubernetes.io/service-name": "shop", "app.kubernetes.io/version": "v2_beta"})
    assert sel.requirements[0].key == "kubernetes.io/service-name"


def test_key_named_like_an_operator_is_a_key():
    assert parse_selector("in=x").matches({"in": "x"})
    assert parse_selector("notin").matches({"notin": ""})


# --- rendering back to the string the API server takes ---------------------------------------------------

@pytest.mark.parametrize("text, rendered", [
    ("app=shop", "app=shop"),
    ("app == shop", "app==shop"),
    ("app!=shop", "app!=shop"),
    ("tier in (web, api)", "tier in (api,web)"),       # values sorted, like apimachinery
    ("tier notin (b,a)", "tier notin (a,b)"),
    ("canary", "canary"),
    ("! canary", "!canary"),
    ("a=1,b in (x),!c,d", "a=1,b in (x),!c,d"),
    ("", ""),
])
def test_to_k8s(text, rendered):
    sel = parse_selector(text)
    assert sel.to_k8s() == rendered
    assert parse_selector(rendered) == sel                  # the rendering parses back to the same selector


def test_dict_form_renders_and_round_trips():
    sel = parse_selector({"matchLabels": {"app": "shop"},
                          "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                                               {"key": "canary", "operator": "DoesNotExist"},
                                               {"key": "zone", "operator": "Exists"},
                                               {"key": "version", "operator": "NotIn", "values": ["1"]}]})
    assert sel.to_k8s() == "app=shop,tier in (api,web),!canary,zone,version notin (1)"
    assert sel.to_label_selector() == {
        "matchLabels": {"app": "shop"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "web"]},
                             {"key": "canary", "operator": "DoesNotExist"},
                             {"key": "zone", "operator": "Exists"},
                             {"key": "version", "operator": "NotIn", "values": ["1"]}]}
    assert parse_selector(sel.to_label_selector()).to_k8s() == sel.to_k8s()
    assert parse_selector("a!=1").to_label_selector() == {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}


# --- the dict and list forms -----------------------------------------------------------------------------

def test_dict_form_semantics_equal_string_form():
    as_dict = parse_selector({"matchLabels": {"app": "shop"},
                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                                                   {"key": "canary", "operator": "DoesNotExist"}]})
    as_text = parse_selector("app=shop,tier in (web,api),!canary")
    for labels in (WEB, API, CART, BARE):
        assert as_dict.matches(labels) == as_text.matches(labels)


def test_plain_dict_is_match_labels_and_yaml_scalars_become_strings():
    sel = parse_selector({"app": "shop", "canary": True, "version": 2})
    assert sel.to_k8s() == "app=shop,canary=true,version=2"
    assert sel.matches({"app": "shop", "canary": "true", "version": "2"})


def test_list_form_ands_requirements():
    sel = parse_selector(["app=shop", "tier in (web,api)"])
    assert sel == parse_selector("app=shop,tier in (web,api)")


def test_none_and_empty_forms_match_everything():
    for value in (None, "", {}, [], {"matchLabels": {}}, {"matchExpressions": []}):
        assert parse_selector(value).is_empty()
        assert parse_selector(value).matches(WEB)


def test_selector_and_combines_without_repeats():
    a = parse_selector("app=shop,tier=web")
    b = parse_selector("tier=web,!canary")
    assert (a & b).to_k8s() == "app=shop,tier=web,!canary"


def test_requirement_equality_ignores_value_order():
    assert Requirement("a", "in", ["x", "y"]) == Requirement("a", "in", ["y", "x"])
    assert Selector([Requirement("a", "exists")]) != Selector([Requirement("a", "!")])


# --- label value normalisation --------------------------------------------------------------------------

def test_label_values():
    assert label_value(True) == "true"
    assert label_value(False) == "false"
    assert label_value(3) == "3"
    assert label_value(None) == ""
    with pytest.raises(TypeError, match="not a list"):
        label_value(["x"])
    assert normalize_labels({"a": 1, "b": True, "c": "x"}) == {"a": "1", "b": "true", "c": "x"}
    assert normalize_labels(None) == {}
    with pytest.raises(TypeError, match="label 'b': .*not a dict"):
        normalize_labels({"b": {"x": 1}})
    with pytest.raises(TypeError, match="not a list"):
        normalize_labels(["app=shop"])


# --- every error of the string syntax: column, caret and what was expected --------------------------------

@pytest.mark.parametrize("text, column, expected", [
    ("app=shop tier=web", 10, "expected ',' or the end of the selector after a requirement, found 'tier'"),
    ("app=shop,", 10, "expected a requirement after ','"),
    (",app=shop", 1, "expected a label key, found ','"),
    ("app=shop,,tier=web", 10, "expected a label key, found ','"),
    ("=shop", 1, "expected a label key, found '='"),
    ("app shop", 5, "expected an operator (=, ==, !=, in, notin), ',' or the end of the selector after key 'app', found 'shop'"),
    ("app=(shop)", 5, "expected a value after '=', found '('"),
    ("app!=(x)", 6, "expected a value after '!=', found '('"),
    ("app=shop=x", 9, "expected ',' or the end of the selector after a requirement, found '='"),
    ("tier in web", 9, "expected '(' after 'in', found 'web'"),
    ("tier notin", 11, "expected '(' after 'notin', found the end of the selector"),
    ("tier in (web", 13, "expected ',' or ')' in the 'in' set, found the end of the selector"),
    ("tier in (web api)", 14, "expected ',' or ')' in the 'in' set, found 'api'"),
    ("tier in (=)", 10, "expected a value, ',' or ')' after '(' in the 'in' set, found '='"),
    ("tier in (", 10, "expected a value, ',' or ')' after '(' in the 'in' set, found the end of the selector"),
    ("tier in (,,)", 12, "expected a value or ',' in the 'in' set, found ')'"),          # apimachinery rejects these two as well
    ("tier notin (web,,)", 18, "expected a value or ',' in the 'notin' set, found ')'"),
    ("tier in (web,!)", 14, "expected a value or ',' in the 'in' set, found '!'"),
    ("!canary=true", 8, "a '!key' requirement takes no operator"),
    ("!", 2, "expected a label key, found the end of the selector"),
    ("!!a", 2, "expected a label key, found '!'"),
    ("a ! b", 3, "expected an operator (=, ==, !=, in, notin) after key 'a', found '!'"),
    ("version>1", 8, "operator '>' is not supported"),
    ("version<1", 8, "operator '<' is not supported"),
    ("app)=x", 4, "expected an operator (=, ==, !=, in, notin), ',' or the end of the selector after key 'app', found ')'"),
    ("-app=x", 1, "label name '-app' must start and end with a letter or digit"),
    ("app=-x", 5, "label value '-x' must start and end with a letter or digit"),
    ("a/b/c=x", 1, "prefix 'a/b' must be a lower-case DNS subdomain"),
    ("Example.COM/app=x", 1, "prefix 'Example.COM' must be a lower-case DNS subdomain"),
    ("/app=x", 1, "the prefix before '/' may not be empty"),
    ("example.com/=x", 1, "label name '' must start and end"),
    ("a=" + "v" * 64, 3, "is longer than 63 characters"),
    ("k" * 64 + "=v", 1, "is longer than 63 characters"),
    ("tier in (web,-api)", 14, "label value '-api' must start"),
])
def test_string_errors_point_at_the_column(text, column, expected):
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    error = info.value
    assert error.column == column
    assert expected in error.reason
    lines = str(error).splitlines()
    assert lines[0].startswith("invalid selector at column %d: " % column)
    assert lines[1] == "  " + text
    assert lines[2] == "  " + " " * (column - 1) + "^"


def test_error_names_the_field():
    with pytest.raises(SelectorError) as info:
        parse_selector("a b", field="vm.selector")
    assert str(info.value).startswith("invalid vm.selector at column 3")


def test_list_item_errors_name_the_item():
    with pytest.raises(SelectorError) as info:
        parse_selector(["app=shop", "tier in web"])
    assert str(info.value).startswith("invalid selector[1] at column 9: expected '(' after 'in'")
    with pytest.raises(SelectorError, match="item 1 is a dict"):
        parse_selector(["app=shop", {"tier": "web"}])


# --- every error of the dict form ------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ({"matchLabels": ["app=shop"]}, "matchLabels must be a dict of label: value, not a list"),
    ({"matchLabels": {"app": ["x"]}}, "matchLabels['app']: a label value must be a string, number or boolean, not a list"),
    ({"matchLabels": {"-app": "x"}}, "matchLabels key '-app': label name '-app' must start"),
    ({"matchLabels": {"app": "-x"}}, "matchLabels['app']: label value '-x' must start"),
    ({"matchLabels": {"app": "x"}, "matchLables": {}}, "unknown field(s) matchLables next to matchLabels/matchExpressions"),
    ({"matchExpressions": {"key": "a"}}, "matchExpressions must be a list of {key, operator, values}, not a dict"),
    ({"matchExpressions": ["a=b"]}, "matchExpressions[0] must be a dict with key, operator and values"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"], "value": "y"}]}, "matchExpressions[0] has unknown field(s) value"),
    ({"matchExpressions": [{"operator": "Exists"}]}, "matchExpressions[0].key is required and must be a string"),
    ({"matchExpressions": [{"key": "a b", "operator": "Exists"}]}, "matchExpressions[0].key: label name 'a b' must start"),
    ({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]},
     "matchExpressions[0].operator must be one of In, NotIn, Exists, DoesNotExist, got 'in'"),
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, "operator must be one of In, NotIn, Exists, DoesNotExist, got 'Gt'"),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "matchExpressions[0].values must be a non-empty list for operator In"),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}, "values must be a non-empty list for operator NotIn"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}, "values must be a non-empty list for operator In"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", {"y": 1}]}]}, "matchExpressions[0].values[1]: a label value must be"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["-x"]}]}, "matchExpressions[0].values[0]: label value '-x'"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "matchExpressions[0].values must be empty for operator Exists"),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]}, "values must be empty for operator DoesNotExist"),
    ({"match_labels": {"app": "shop"}}, "'match_labels' is not a selector field: write matchLabels / matchExpressions"),
    ({"app": {"nested": 1}}, "matchLabels['app']: a label value must be a string, number or boolean, not a dict"),
    (42, "a selector is a string such as 'app=shop,tier in (web,api)' or a dict with matchLabels/matchExpressions, not a number"),
])
def test_dict_errors(value, expected):
    with pytest.raises(SelectorError) as info:
        parse_selector(value)
    assert expected in str(info.value)
    assert info.value.column is None
    assert str(info.value).startswith("invalid selector: ")
