# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() in-process with the real AnsibleModule I/O, HTTP mocked by ``responses``."""

from __future__ import annotations

import copy
import json

import pytest
import responses

from kong_module_helpers import ADMIN, patch_module_args


@pytest.fixture
def kong():
    """A ``responses`` mock; no request escapes to the network (an unmatched request is refused)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def no_sleep(monkeypatch):
    import time
    monkeypatch.setattr(time, "sleep", lambda _s: None)


class Result(dict):
    """The module's JSON answer plus the raw stdout (for leak checks)."""

    raw = ""


@pytest.fixture
def run_module(capsys):
    def run(module, args, check_mode=False, diff=False):
        full = {"admin_url": ADMIN, "_ansible_check_mode": check_mode, "_ansible_diff": diff}
        full.update(copy.deepcopy(args))
        with patch_module_args(full):
            with pytest.raises(SystemExit):
                module.main()
        out = capsys.readouterr().out
        result = Result(json.loads(out))
        result.raw = out
        return result
    return run
