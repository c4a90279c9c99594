# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Target normalisation follows Kong 3.x (kong/tools/ip.lua, kong/db/dao/targets.lua)."""

from __future__ import annotations

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils._targets import (
    TargetError,
    format_target,
    normalize_target,
    plan_target_set,
    split_target,
    target_key,
    validate_weight,
)

V6_LOOPBACK = "[0000:0000:0000:0000:0000:0000:0000:0001]"


@pytest.mark.parametrize("given, stored", [
    ("10.0.0.5", "10.0.0.5:8000"),
    ("10.0.0.5:8080", "10.0.0.5:8080"),
    ("010.000.000.005:80", "10.0.0.5:80"),
    ("127.0.10.1:18080", "127.0.10.1:18080"),
    ("app.example.com", "app.example.com:8000"),
    ("app.example.com:80", "app.example.com:80"),
    ("App-1.Example.COM:80", "App-1.Example.COM:80"),  # Kong keeps a name's case
    ("localhost:0", "localhost:0"),
    ("fqdn.example.com.:80", "fqdn.example.com.:80"),
    ("::1", V6_LOOPBACK + ":8000"),
    ("[::1]", V6_LOOPBACK + ":8000"),
    ("[::1]:80", V6_LOOPBACK + ":80"),
    ("[2001:DB8::7]:8080", "[2001:0db8:0000:0000:0000:0000:0000:0007]:8080"),
    ("2001:db8:1:2:3:4:5:6", "[2001:0db8:0001:0002:0003:0004:0005:0006]:8000"),
    ("[fe80::]:443", "[fe80:0000:0000:0000:0000:0000:0000:0000]:443"),
    (" 10.0.0.5:80 ", "10.0.0.5:80"),
])
def test_normalize_matches_kong(given, stored):
    assert normalize_target(given) == stored
    # Kong's stored form is a fixed point.
    assert normalize_target(stored) == stored


@pytest.mark.parametrize("bad, words", [
    ("", "non-empty"),
    ("   ", "non-empty"),
    ("1.2.3.256", "0 to 255"),
    ("1.2.3", "invalid ipv4"),
    ("1.2.3.4:", "invalid ipv4"),
    ("host:65536", "invalid port"),
    ("1.2.3.4:70000", "invalid port"),
    ("bad host", "invalid hostname"),
    ("under/score", "invalid hostname"),
    ("a-.example.com", "end with '-'"),
    ("a..b", "empty"),
    ("[::1", "missing ']'"),
    ("[::1]x", "only ':port'"),
    ("1::2::3", "invalid ipv6"),
    ("12345::1", "invalid ipv6"),
    ("[::g]:80", "invalid ipv6"),
])
def test_invalid_targets_are_refused_with_a_reason(bad, words):
    with pytest.raises(TargetError) as err:
        normalize_target(bad)
    assert words in str(err.value)


def test_non_string_target():
    with pytest.raises(TargetError):
        normalize_target(None)
    with pytest.raises(TargetError):
        normalize_target(8080)


def test_split_target_kinds():
    assert split_target("10.0.0.1:1") == ("ipv4", "10.0.0.1", 1)
    assert split_target("name") == ("name", "name", None)
    assert split_target("[::1]:2")[0] == "ipv6"


def test_target_key_equates_spellings():
    assert target_key("[::1]:80") == target_key(V6_LOOPBACK + ":80") == target_key("[0:0:0:0:0:0:0:1]:80")
    assert target_key("10.0.0.5") == target_key("10.0.0.5:8000")
    assert target_key("10.0.0.5:80") != target_key("10.0.0.5:8080")


def test_format_target():
    assert format_target("10.0.0.1", 80) == "10.0.0.1:80"
    assert format_target("::1", 80) == V6_LOOPBACK + ":80"
    assert format_target("[::1]", "80") == V6_LOOPBACK + ":80"


@pytest.mark.parametrize("value, expected", [(0, 0), (65535, 65535), ("42", 42), (7.0, 7), (" 5 ", 5)])
def test_validate_weight_accepts(value, expected):
    assert validate_weight(value) == expected


@pytest.mark.parametrize("value", [-1, 65536, "x", 1.5, True, None, "1e3"])
def test_validate_weight_refuses_and_names_the_field(value):
    with pytest.raises(ValueError) as err:
        validate_weight(value, "targets[3].weight")
    assert "targets[3].weight" in str(err.value)
    assert "65535" in str(err.value)


def _t(target, weight=100, tags=None, id_=None):
    return {"id": id_ or "id-" + target, "target": target, "weight": weight, "tags": tags}


def test_plan_create_update_unchanged_and_purge_by_tag():
    current = [
        _t("10.0.0.1:80", 100, ["mixedrun-managed"]),
        _t("10.0.0.2:80", 50, ["mixedrun-managed"]),
        _t("10.0.0.3:80", 10, ["mixedrun-managed"]),   # not listed, managed: purged
        _t("10.0.0.9:80", 10, ["hand-made"]),          # not listed, foreign: kept
        _t(V6_LOOPBACK + ":80", 5, None),
    ]
    desired = [
        {"target": "10.0.0.1:80", "weight": 100, "tags": None},
        {"target": "10.0.0.2:80", "weight": 70, "tags": None},
        {"target": "[::1]:80", "weight": 5, "tags": None},  # other spelling, same target
        {"target": "10.0.0.4:80", "weight": 1, "tags": ["mixedrun-managed"]},
    ]
    plan = plan_target_set(current, desired, purge=True, purge_tag="mixedrun-managed")
    assert [c["target"] for c in plan["create"]] == ["10.0.0.4:80"]
    assert [(cur["target"], body) for cur, body in plan["update"]] == [("10.0.0.2:80", {"weight": 70})]
    assert sorted(u["target"] for u in plan["unchanged"]) == sorted(["10.0.0.1:80", V6_LOOPBACK + ":80"])
    assert [d["target"] for d in plan["delete"]] == ["10.0.0.3:80"]


def test_plan_without_purge_deletes_nothing_and_purge_without_tag_deletes_all_unlisted():
    current = [_t("10.0.0.1:80"), _t("10.0.0.2:80", tags=["x"])]
    assert plan_target_set(current, [], purge=False)["delete"] == []
    assert len(plan_target_set(current, [], purge=True)["delete"]) == 2


def test_plan_tags_compare_without_order_and_none_keeps():
    current = [_t("10.0.0.1:80", 100, ["b", "a"])]
    assert plan_target_set(current, [{"target": "10.0.0.1:80", "weight": None, "tags": ["a", "b"]}])["unchanged"]
    assert plan_target_set(current, [{"target": "10.0.0.1:80", "weight": None, "tags": None}])["unchanged"]
    plan = plan_target_set(current, [{"target": "10.0.0.1:80", "weight": None, "tags": []}])
    assert plan["update"][0][1] == {"tags": []}


def test_plan_refuses_conflicting_duplicates_and_folds_identical_ones():
    with pytest.raises(ValueError) as err:
        plan_target_set([], [{"target": "10.0.0.1", "weight": 1, "tags": None},
                             {"target": "10.0.0.1:8000", "weight": 2, "tags": None}])
    assert "10.0.0.1:8000" in str(err.value)
    plan = plan_target_set([], [{"target": "10.0.0.1:80", "weight": 1, "tags": None}] * 2)
    assert len(plan["create"]) == 1


def test_plan_identical_duplicates_in_other_spellings_are_folded():
    plan = plan_target_set([], [{"target": "10.0.0.1", "weight": 1, "tags": None},
                                {"target": "10.0.0.1:8000", "weight": 1, "tags": None}])
    assert [c["target"] for c in plan["create"]] == ["10.0.0.1:8000"]
