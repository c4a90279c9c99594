# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KongModule: an AnsibleModule with the shared Kong connection options and one way to fail."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import (
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    KongApiError,
    KongClient,
    url_secrets,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import validate_upstream_name

KONG_CONNECTION_SPEC = dict(
    admin_url=dict(type="str", fallback=(env_fallback, ["KONG_ADMIN_URL"])),
    admin_token=dict(type="str", no_log=True, fallback=(env_fallback, ["KONG_ADMIN_TOKEN"])),
    admin_token_header=dict(type="str", default="Kong-Admin-Token", no_log=False,
                            fallback=(env_fallback, ["KONG_ADMIN_TOKEN_HEADER"])),
    workspace=dict(type="str", fallback=(env_fallback, ["KONG_WORKSPACE"])),
    headers=dict(type="dict", no_log=True),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["KONG_VALIDATE_CERTS"])),
    ca_path=dict(type="path", fallback=(env_fallback, ["KONG_CA_PATH"])),
    client_cert=dict(type="path", fallback=(env_fallback, ["KONG_CLIENT_CERT"])),
    client_key=dict(type="path", no_log=False, fallback=(env_fallback, ["KONG_CLIENT_KEY"])),
    timeout=dict(type="float", default=10.0),
    retries=dict(type="int", default=3),
)


# "argument 'interval' is of type str found in 'healthchecks -> active -> healthy'. and we were unable to convert ..."
# (ansible-core 2.17 and 2.18 write the type as "<class 'str'>")
_TYPE_ERROR_RE = re.compile(r"^argument '([^']+)' is of type (?:<class '[^']+'>|\S+)(?: found in '([^']+)')?\.? and we were unable to convert")


class _LongestFirst(set):
    """The module's no_log values, handed to Ansible's masking longest first, as ansible-core 2.19 sorts them itself.
    ansible-core 2.17 and 2.18 replace them in set order: a URL's password masked before its whole user part
    (``ops:password``) left the user name in the output."""

    def __iter__(self):
        return iter(sorted(set.__iter__(self), key=lambda value: len(str(value)), reverse=True))


# ansible-core 2.17 and 2.18 render a value that is one expression giving None ("{{ x if y else none }}") as "": for an
# option that takes a dict, a list or a number, an empty string means "not given", as None does on ansible-core 2.19.
_EMPTY_IS_NONE = frozenset(("dict", "list", "int", "float"))


def _empty_as_none(params, spec):
    for name, entry in spec.items():
        if isinstance(entry, dict) and entry.get("type") in _EMPTY_IS_NONE and params.get(name) == "":
            params[name] = None


def kong_argument_spec(**extra):
    """The connection options plus a module's own options."""
    spec = dict((k, dict(v)) for k, v in KONG_CONNECTION_SPEC.items())
    spec.update(extra)
    return spec


class KongModule(AnsibleModule):
    """AnsibleModule + the Kong connection options + ``self.client`` + ``fail_json_kong``.

    ``prepare_params``: a function that may rewrite the raw options before Ansible validates and converts them (for
    a shorthand such as a target given as a ``host:port`` string where the spec wants a dict).
    Every module with an ``upstream`` option gets it checked (a valid upstream name or id) before any request."""

    def __init__(self, argument_spec=None, prepare_params=None, **kwargs):
        self._prepare_params = prepare_params
        super(KongModule, self).__init__(argument_spec=kong_argument_spec(**(argument_spec or {})), **kwargs)
        if not HAS_REQUESTS:
            self.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
        self._client = None
        self.no_log_values = _LongestFirst(self.no_log_values)
        self._mask_url_secrets(self.params)
        if "upstream" in self.argument_spec and self.params.get("upstream") is not None:
            try:
                validate_upstream_name(self.params["upstream"], "upstream")
            except ValueError as exc:
                self.fail_json(msg="%s; nothing was changed" % exc, api_calls=[])

    def _load_params(self):
        super(KongModule, self)._load_params()
        if isinstance(self.params, dict):
            _empty_as_none(self.params, self.argument_spec)
        if self._prepare_params is not None and isinstance(self.params, dict):
            self._prepare_params(self.params)
        self._raw_params = copy.deepcopy(self.params) if isinstance(self.params, dict) else {}

    def fail_json(self, msg=None, **kwargs):  # pylint: disable=arguments-differ
        if getattr(self, "_client", False) is False and isinstance(msg, str):
            # Ansible's own type check (during __init__) names the option but not the value: add it.
            msg = self._with_rejected_value(msg)
        super(KongModule, self).fail_json(msg=msg, **kwargs)

    def _with_rejected_value(self, msg):
        match = _TYPE_ERROR_RE.match(msg)
        if not match:
            return msg
        path = [p for p in (match.group(2) or "").split(" -> ") if p] + [match.group(1)]
        value, spec = getattr(self, "_raw_params", {}), self.argument_spec
        for name in path:
            if not isinstance(value, dict) or name not in value or not isinstance(spec, dict) or name not in spec:
                return msg
            value, entry = value[name], spec[name]
            if entry.get("no_log"):
                return msg
            spec = entry.get("options")
        return "%s; got %r (option %s)" % (msg.rstrip(". "), value, ".".join(path))

    def _mask_url_secrets(self, value):
        """Credentials written into a URL option (``https://user:pw@kong:8444``, ``https://token@kong``) are
        masked in everything the module returns, ``invocation`` included, like a ``no_log`` option."""
        if isinstance(value, dict):
            for item in value.values():
                self._mask_url_secrets(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._mask_url_secrets(item)
        else:
            self.no_log_values.update(url_secrets(value))

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = KongClient.from_params(self.params, check_mode=self.check_mode)
            except ValueError as exc:
                self.fail_json(msg=str(exc), api_calls=[])
        return self._client

    @property
    def api_calls(self):
        return list(self._client.calls) if self._client is not None else []

    def fail_json_kong(self, exc, msg, **result):
        """Fail with ``"<msg>: <what Kong said>"`` plus the calls made; for a Kong error also ``status`` (the
        HTTP status, null when Kong was not reached) and ``kong_error`` (its structured fields)."""
        if isinstance(exc, KongApiError):
            text = "%s: %s" % (msg, exc.describe())
            result["kong_error"] = exc.as_dict()
            result["status"] = exc.status
        else:
            text = "%s: %s" % (msg, exc)
        result.setdefault("api_calls", self.api_calls)
        if not self._diff:
            result.pop("diff", None)
        self.fail_json(msg=text, **result)

    def exit_kong(self, **result):
        """Exit with ``result`` plus ``api_calls``; ``diff`` only in diff mode."""
        result.setdefault("api_calls", self.api_calls)
        if not self._diff:
            result.pop("diff", None)
        self.exit_json(**result)
