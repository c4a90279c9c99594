# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KongModule helpers that keep the modules' behaviour the same on ansible-core 2.17, 2.18 and 2.19."""

from __future__ import annotations

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import _TYPE_ERROR_RE, _empty_as_none, _LongestFirst


def test_an_empty_string_is_none_for_dict_list_and_number_options():
    # ansible-core < 2.19 renders "{{ x if y else none }}" as ""
    spec = {"prometheus": {"type": "dict"}, "urls": {"type": "list"}, "hold": {"type": "float"}, "n": {"type": "int"},
            "name": {"type": "str"}, "raw": {"type": "raw"}, "flag": {"type": "bool"}}
    params = {"prometheus": "", "urls": "", "hold": "", "n": "", "name": "", "raw": "", "flag": ""}
    _empty_as_none(params, spec)
    assert params == {"prometheus": None, "urls": None, "hold": None, "n": None, "name": "", "raw": "", "flag": ""}
    params = {"prometheus": {"url": "x"}, "hold": "1"}
    _empty_as_none(params, spec)
    assert params == {"prometheus": {"url": "x"}, "hold": "1"}


def test_type_errors_of_every_core_are_understood():
    new = "argument 'interval' is of type str found in 'healthchecks -> active -> healthy'. and we were unable to convert to float: x"
    old = "argument 'slots' is of type <class 'str'> and we were unable to convert to int: <class 'str'> cannot be converted to an int"
    assert _TYPE_ERROR_RE.match(new).groups() == ("interval", "healthchecks -> active -> healthy")
    assert _TYPE_ERROR_RE.match(old).groups() == ("slots", None)


def test_no_log_values_are_handed_out_longest_first():
    values = _LongestFirst({"pw", "ops:pw", "a-much-longer-secret"})
    assert list(values) == ["a-much-longer-secret", "ops:pw", "pw"]
    values.update({"ops:pw-and-more"})
    assert list(values)[1] == "ops:pw-and-more"
