# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure target logic: Kong's target normalisation and whole-set reconciliation.

No I/O here. Kong normalises a target on write (``kong/db/dao/targets.lua``: ``format_target``): the host
part is classified by ``hostname_type`` (more than one colon: IPv6; only digits and dots: IPv4; otherwise a
name), validated, and written back as ``host:port`` with the default port 8000 when none is given. IPv4
loses leading zeros, IPv6 is fully expanded and put in brackets, names are kept as given (Kong does not
lower-case them). Comparisons must always use the normalised form, or a target that exists is seen as
missing and re-created forever.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import re

DEFAULT_TARGET_PORT = 8000
MAX_WEIGHT = 65535
DEFAULT_WEIGHT = 100

_NAME_RE = re.compile(r"^[0-9A-Za-z\-._]+$")
_IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?::(\d+))?$")
_HEX_GROUP_RE = re.compile(r"^[0-9A-Fa-f]{1,4}$")


class TargetError(ValueError):
    """A target string Kong would refuse; the message says why and how to write it."""


def _hostname_type(value):
    if value.count(":") > 1:
        return "ipv6"
    if re.match(r"^[\d.]+$", value.replace(":", "")):
        return "ipv4"
    return "name"


def _check_port(port, value):
    port = int(port)
    if port > 65535:
        raise TargetError("invalid port number in target '%s': ports go from 0 to 65535" % value)
    return port


def _normalize_ipv4(value):
    match = _IPV4_RE.match(value)
    if not match:
        raise TargetError("invalid ipv4 address in target '%s'" % value)
    octets = [int(x) for x in match.group(1, 2, 3, 4)]
    if any(o > 255 for o in octets):
        raise TargetError("invalid ipv4 address in target '%s': each part goes from 0 to 255" % value)
    port = _check_port(match.group(5), value) if match.group(5) is not None else None
    return "%d.%d.%d.%d" % tuple(octets), port


def _expand_ipv6(address, original):
    check = address
    if check.startswith(":"):
        check = "0" + check
    if check.endswith(":"):
        check = check + "0"
    if "::" in check:
        count = check.count(":")
        check = check.replace("::", ":" + "0:" * (8 - count), 1)
    groups = check.split(":")
    if len(groups) != 8 or not all(_HEX_GROUP_RE.match(g) for g in groups):
        raise TargetError("invalid ipv6 address in target '%s'; write it as [address]:port, e.g. [2001:db8::1]:8080" % original)
    return ":".join(g.zfill(4) for g in groups).lower()


def _normalize_ipv6(value):
    port = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise TargetError("invalid ipv6 address in target '%s': missing ']'" % value)
        address, rest = value[1:end], value[end + 1:]
        if rest:
            if not re.match(r"^:\d+$", rest):
                raise TargetError("invalid ipv6 address in target '%s': after ']' only ':port' may follow" % value)
            port = _check_port(rest[1:], value)
    else:
        address = value
    return _expand_ipv6(address, value), port


def _check_hostname(value):
    name, port = value, None
    match = re.search(r":(\d+)$", value)
    if match:
        name = value[:match.start()]
        port = _check_port(match.group(1), value)
    if not name or not _NAME_RE.match(name):
        raise TargetError("invalid hostname in target '%s': use letters, digits, '-', '.', '_' and an optional ':port'" % value)
    segments = name.split(".")
    for index, segment in enumerate(segments):
        if segment.endswith("-") or (segment == "" and index != len(segments) - 1):
            raise TargetError("invalid hostname in target '%s': a label may not be empty or end with '-'" % value)
    return name, port


_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)")


def _refuse_url(value):
    """A URL (``http://10.0.0.5:8080/``) is not a target: say so, and show the target it holds, before the host part
    is classified (its colons would make it read as a broken IPv6 address)."""
    match = _URL_RE.match(value)
    if match:
        host = match.group(2).rsplit("@", 1)[-1]
        if host:
            fix = "write it as host:port without the scheme, e.g. '%s'" % host
        else:
            fix = "write it as host:port, e.g. '10.0.0.5:8080'"
        raise TargetError("target '%s' is a URL, not a target: %s" % (value, fix))


def split_target(value):
    """Validate ``value`` as Kong does and return ``(kind, host, port_or_None)``; raise TargetError."""
    if not isinstance(value, str) or not value.strip():
        raise TargetError("a target must be a non-empty string such as '10.0.0.5:8080' or 'app.example.com:80'")
    value = value.strip()
    _refuse_url(value)
    kind = _hostname_type(value)
    if kind == "ipv4":
        host, port = _normalize_ipv4(value)
    elif kind == "ipv6":
        host, port = _normalize_ipv6(value)
    else:
        host, port = _check_hostname(value)
    return kind, host, port


def normalize_target(value, default_port=DEFAULT_TARGET_PORT):
    """Return ``value`` in the exact form Kong stores: ``host:port``, IPv6 expanded in brackets."""
    kind, host, port = split_target(value)
    if port is None:
        port = default_port
    if kind == "ipv6":
        host = "[%s]" % host
    return "%s:%d" % (host, port)


def target_key(value):
    """Comparison key of a target. Accepts any spelling Kong would accept (``[::1]:80`` or the expanded
    form Kong returns) and maps equal targets to the same key."""
    if isinstance(value, str):
        return _cached_key(value)
    return normalize_target(value)


@functools.lru_cache(maxsize=16384)
def _cached_key(value):
    # A reconcile of N targets asks for the same keys several times; the key is a pure function of the string.
    return normalize_target(value)


def format_target(address, port):
    """Join an address and a port the way Kong would store them (brackets for IPv6)."""
    address = str(address)
    if ":" in address and not address.startswith("["):
        address = "[%s]" % address
    return normalize_target("%s:%d" % (address, int(port)))


def validate_weight(weight, field="weight"):
    """Return ``weight`` as an int in Kong's range or raise ValueError naming ``field`` and the fix."""
    value = None
    if isinstance(weight, int) and not isinstance(weight, bool):
        value = weight
    elif isinstance(weight, float) and weight.is_integer():
        value = int(weight)
    elif isinstance(weight, str) and re.match(r"^\s*-?\d+\s*$", weight):
        value = int(weight)
    if value is None:
        raise ValueError("%s must be a whole number between 0 and %d, got %r" % (field, MAX_WEIGHT, weight))
    if value < 0 or value > MAX_WEIGHT:
        raise ValueError("%s must be between 0 and %d (Kong's limit), got %d" % (field, MAX_WEIGHT, value))
    return value


def tags_equal(current, desired):
    """Kong returns ``null`` for unset tags; order does not matter."""
    return sorted(current or []) == sorted(desired or [])


def plan_target_set(current, desired, purge=False, purge_tag=None):
    """Plan the changes that turn ``current`` into ``desired``.

    current: Kong target objects (``{"id", "target", "weight", "tags"}``).
    desired: ``{"target", "weight" (None = keep/default), "tags" (None = keep)}``, already validated.
    purge: delete current targets that are not desired; with ``purge_tag`` only those carrying that tag.

    Returns a dict of lists: ``create`` (desired items), ``update`` (``(current, patch_body)``), ``delete``
    (current objects) and ``unchanged`` (current objects). A target listed twice with the same settings counts
    once; raises ValueError when two desired entries name the same target with different settings.
    """
    by_key = {}
    for item in current:
        by_key[target_key(item["target"])] = item
    plan = {"create": [], "update": [], "delete": [], "unchanged": []}
    wanted = {}
    for item in desired:
        key = target_key(item["target"])
        if key in wanted:
            if dict(wanted[key], target=key) != dict(item, target=key):
                raise ValueError("target %s is listed twice with different settings; list each target once" % key)
            continue
        wanted[key] = item
        existing = by_key.get(key)
        if existing is None:
            plan["create"].append(dict(item, target=key))
            continue
        body = {}
        if item.get("weight") is not None and int(existing.get("weight", DEFAULT_WEIGHT)) != int(item["weight"]):
            body["weight"] = int(item["weight"])
        if item.get("tags") is not None and not tags_equal(existing.get("tags"), item["tags"]):
            body["tags"] = list(item["tags"])
        if body:
            plan["update"].append((existing, body))
        else:
            plan["unchanged"].append(existing)
    if purge:
        for key, existing in by_key.items():
            if key in wanted:
                continue
            if purge_tag and purge_tag not in (existing.get("tags") or []):
                continue
            plan["delete"].append(existing)
    return plan
