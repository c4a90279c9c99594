# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared constants and helpers of the Kong module tests (fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os

try:
    from ansible.module_utils.testing import patch_module_args  # pylint: disable=unused-import  # ansible-core >= 2.19
except ImportError:  # ansible-core 2.17 and 2.18 (the core matrix, `make core-matrix`)
    from unittest import mock

    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args=None):
        """What ansible-core 2.19's ansible.module_utils.testing.patch_module_args does, for the older cores."""
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
            yield

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ADMIN = "http://kong.test:8001"
TOKEN = "s3cr3t-kong-admin-token-value"


def fixture(name):
    with open(os.path.join(FIXTURES, name + ".json")) as handle:
        return json.load(handle)


def writes(mock):
    """The non-GET requests the mock received, as (METHOD, path, json-body)."""
    out = []
    for call in mock.calls:
        req = call.request
        if req.method != "GET":
            body = json.loads(req.body) if req.body else None
            out.append((req.method, req.path_url, body))
    return out
