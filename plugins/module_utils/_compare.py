# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure desired-vs-current comparison of Kong entities (no I/O).

Rules, the same for every module:

- only the fields the user gave are compared (a ``None`` value means "not given, keep what Kong has");
- ``id``, ``created_at`` and ``updated_at`` are never compared;
- lists of plain values (tags, hosts, methods, paths, protocols, http_statuses, ...) compare without order and
  without duplicates, as Kong gives them no meaning;
- a foreign key (``service: {id: ...}``) compares by id only, after the caller resolved a name to its id;
- nested records compare whole, except ``healthchecks``, which the caller merges over Kong's defaults first
  (``merge_healthchecks``) so that a partial input and Kong's full answer compare equal on a re-run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

IGNORED_FIELDS = frozenset(["id", "created_at", "updated_at"])
FOREIGN_KEYS = frozenset(["service", "upstream", "route", "consumer", "client_certificate"])

PASSIVE_HEALTHY_STATUSES = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                            300, 301, 302, 303, 304, 305, 306, 307, 308]

# Kong 3.x upstream ``healthchecks`` defaults (kong/db/schema/entities/upstreams.lua).
HEALTHCHECKS_DEFAULTS = {
    "active": {
        "type": "http",
        "timeout": 1,
        "concurrency": 10,
        "http_path": "/",
        "https_sni": None,
        "https_verify_certificate": True,
        "headers": None,
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                      "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    },
    "passive": {
        "type": "http",
        "healthy": {"http_statuses": PASSIVE_HEALTHY_STATUSES, "successes": 0},
        "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    },
    "threshold": 0,
}

# Records whose sub-keys Kong fills with defaults; partial input merges over them.
RECORD_DEFAULTS = {"healthchecks": HEALTHCHECKS_DEFAULTS}


def merge_defaults(partial, defaults):
    """Deep-merge ``partial`` over ``defaults``; ``None`` in ``partial`` keeps the default. Returns a copy."""
    if partial is None:
        return copy.deepcopy(defaults)
    if not isinstance(defaults, dict) or not isinstance(partial, dict):
        return copy.deepcopy(partial)
    out = copy.deepcopy(defaults)
    for key, value in partial.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_defaults(value, out[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_healthchecks(partial):
    """The full ``healthchecks`` record Kong would store for ``partial`` (unset parts take Kong's defaults)."""
    return merge_defaults(partial, HEALTHCHECKS_DEFAULTS)


def unknown_keys(partial, defaults, path="healthchecks"):
    """Names (dotted) of keys in ``partial`` that the defaults record does not know: typos to report."""
    found = []
    if not isinstance(partial, dict) or not isinstance(defaults, dict):
        return found
    for key, value in partial.items():
        where = "%s.%s" % (path, key)
        if key not in defaults:
            found.append(where)
        elif isinstance(value, dict) and isinstance(defaults[key], dict):
            found.extend(unknown_keys(value, defaults[key], where))
    return found


class _KongNull:
    """Marks a field the user wants set to ``null`` (distinct from ``None`` = "not given")."""

    def __repr__(self):
        return "KONG_NULL"


KONG_NULL = _KongNull()


def to_body(fields):
    """A JSON-ready copy of ``fields``: ``KONG_NULL`` becomes ``None``."""
    return dict((k, None if v is KONG_NULL else v) for k, v in fields.items())


def _is_scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def _sort_key(value):
    return (type(value).__name__, str(value))


def normalize(value):
    """A canonical form for comparison: scalar lists sorted and de-duplicated, dicts normalised inside."""
    if isinstance(value, dict):
        return dict((k, normalize(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [normalize(v) for v in value]
        if all(_is_scalar(v) for v in items):
            unique = []
            for item in sorted(items, key=_sort_key):
                if not unique or unique[-1] != item or type(unique[-1]) is not type(item):
                    unique.append(item)
            return unique
        return items
    return value


def _fk_id(value):
    if isinstance(value, dict):
        return value.get("id")
    return value


def values_equal(field, desired, current):
    """True when Kong's ``current`` value already satisfies the user's ``desired`` value of ``field``."""
    if desired is KONG_NULL:
        return current is None or current == [] or current == ""
    if field in FOREIGN_KEYS and (isinstance(desired, dict) or isinstance(current, dict)):
        return _fk_id(desired) == _fk_id(current)
    if field == "tags" or (isinstance(desired, list) and current is None):
        # Kong answers null for an empty list field.
        return normalize(desired or []) == normalize(current or [])
    if field in RECORD_DEFAULTS:
        return normalize(merge_defaults(desired, RECORD_DEFAULTS[field])) == \
            normalize(merge_defaults(current, RECORD_DEFAULTS[field]))
    if isinstance(desired, bool) or isinstance(current, bool):
        return isinstance(desired, bool) and isinstance(current, bool) and desired == current
    if isinstance(desired, (int, float)) and isinstance(current, (int, float)):
        return float(desired) == float(current)
    return normalize(desired) == normalize(current)


def diff_entity(desired, current):
    """Return ``{field: desired_value}`` for every given field whose value differs from ``current``.

    ``desired``: the fields the user gave (``None`` values are ignored). ``current``: Kong's object, or
    ``None`` when it does not exist (then every given field is returned)."""
    changes = {}
    for field, value in desired.items():
        if value is None or field in IGNORED_FIELDS:
            continue
        if current is None or not values_equal(field, value, current.get(field)):
            changes[field] = value
    return changes


def predict_after(current, changes):
    """What Kong will hold after applying ``changes`` to ``current`` (for check mode and diffs)."""
    after = copy.deepcopy(current) if current else {}
    for field, value in changes.items():
        if field in RECORD_DEFAULTS:
            after[field] = merge_defaults(value, RECORD_DEFAULTS[field])
        elif value is KONG_NULL:
            after[field] = None
        else:
            after[field] = copy.deepcopy(value)
    return after


def strip_volatile(entity):
    """A copy of an entity without fields that change on every write (for diffs)."""
    if entity is None:
        return None
    return dict((k, v) for k, v in entity.items() if k not in ("created_at", "updated_at"))


def healthchecks_enabled(upstream):
    """Whether Kong runs a health checker for this upstream: Kong's own rule (``is_upstream_using_healthcheck``
    in ``kong/runloop/balancer/healthcheckers.lua``): active healthy or unhealthy ``interval``, or passive
    unhealthy ``tcp_failures``, ``timeouts`` or ``http_failures`` above 0. Without one, Kong reports every
    target ``HEALTHCHECKS_OFF`` and cannot set a target's health."""
    checks = (upstream or {}).get("healthchecks") or {}
    active = checks.get("active") or {}
    passive_unhealthy = (checks.get("passive") or {}).get("unhealthy") or {}
    values = [(active.get("healthy") or {}).get("interval"), (active.get("unhealthy") or {}).get("interval")]
    values += [passive_unhealthy.get(key) for key in ("tcp_failures", "timeouts", "http_failures")]
    return any(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 for value in values)
