# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kong plugin instances: scope resolution, lookup, schema-driven typing of ``config`` and the ensure logic of
``kong_plugin`` / ``kong_plugin_info``.

A plugin's ``config`` is a free-form mapping to Ansible, so Ansible cannot convert ``"true"`` or ``"5"`` (what
``-e k=v``, AWX surveys and older ansible-core templating give) to the types Kong wants. The plugin's own schema
(``GET /schemas/plugins/{name}``) says each field's type: values are converted by it, unknown fields are refused
before any write, and fields the schema marks as secrets (``encrypted`` or ``referenceable``) are masked in every
result and diff."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.mixedrun.kong.plugins.module_utils._compare import values_equal, strip_volatile

SCOPES = ("service", "route", "consumer")
_SCOPE_PATHS = {"service": "services", "route": "routes", "consumer": "consumers"}
# Kong's plugin names: lowercase letters, digits, '-' and '_' (the directory under kong/plugins).
_PLUGIN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")
MASK = "********"


def validate_plugin_name(value, field="name"):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("%s is empty: give the plugin's name, e.g. prometheus" % field)
    if not _PLUGIN_NAME_RE.match(value):
        raise ValueError("%s %r is not a Kong plugin name: lowercase letters, digits, '-' and '_', e.g. prometheus"
                         % (field, value))
    return value


def resolve_scope(client, params, scopes=SCOPES, missing=None):
    """``{scope: entity}`` for each of ``scopes`` given in ``params``; a clear error naming the option when one is
    empty or, unless ``missing`` (a list that collects their names) is given, does not exist (before any write)."""
    out = {}
    for scope in scopes:
        ref = params.get(scope)
        if ref is None:
            continue
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError("%s is empty: give the %s's name or id, or leave %s out (a plugin without service, route "
                             "and consumer is global)" % (scope, scope, scope))
        found = client.get("/%s/%s" % (_SCOPE_PATHS[scope], client.quote(ref)))
        if found is None:
            if missing is None:
                raise ValueError("%s %r does not exist in Kong: create it first or fix the %s option" % (scope, ref, scope))
            missing.append(scope)
            continue
        out[scope] = found
    return out


def scope_ids(plugin):
    """``{service, route, consumer}`` ids of a plugin instance (None = not scoped to one)."""
    return dict((s, (plugin.get(s) or {}).get("id")) for s in SCOPES)


def scope_label(plugin):
    """``global`` or ``service=<id>,route=<id>`` for messages and results."""
    ids = scope_ids(plugin)
    parts = ["%s=%s" % (s, ids[s]) for s in SCOPES if ids[s]]
    return ",".join(parts) if parts else "global"


def find_plugins(client, name=None, wanted=None, mode="any"):
    """Plugin instances named ``name`` (None: any) whose scope matches: ``mode`` ``any`` (no filter), ``global``
    (no service, route or consumer) or ``exact`` (exactly the ids in ``wanted``, the others unset)."""
    found = []
    for item in client.list("/plugins"):
        if name is not None and item.get("name") != name:
            continue
        ids = scope_ids(item)
        if mode == "global" and any(ids.values()):
            continue
        if mode == "exact" and any(ids[s] != (wanted or {}).get(s) for s in SCOPES):
            continue
        found.append(item)
    return found


def effective_instance(plugins, service_id=None, route_id=None):
    """The instance Kong runs for a request through ``route_id`` / ``service_id`` without an authenticated consumer:
    the most specific enabled one of route+service, route, service, global (``lookup_cfg`` in
    kong/runloop/plugins_iterator.lua; disabled instances are not loaded, so a less specific one takes over)."""
    order = []
    if route_id and service_id:
        order.append({"service": service_id, "route": route_id, "consumer": None})
    if route_id:
        order.append({"service": None, "route": route_id, "consumer": None})
    if service_id:
        order.append({"service": service_id, "route": None, "consumer": None})
    order.append({"service": None, "route": None, "consumer": None})
    enabled = [p for p in plugins if p.get("enabled", True) is not False]
    for want in order:
        for item in enabled:
            if scope_ids(item) == want:
                return item
    return None


# -- the plugin's schema ---------------------------------------------------------------------------------------

def _field_map(fields):
    """Kong's schema ``fields`` (a list of one-key mappings) as one mapping."""
    out = {}
    for item in fields or []:
        if isinstance(item, dict):
            out.update(item)
    return out


def config_fields(schema):
    """The ``fields`` of the ``config`` record of a plugin schema (``GET /schemas/plugins/{name}``)."""
    record = _field_map((schema or {}).get("fields")).get("config") or {}
    return record.get("fields") or []


def _coerce(value, fdef, path):  # pylint: disable=too-many-return-statements,too-many-branches
    kind = (fdef or {}).get("type")
    if value is None:
        return None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("%s must be true or false, got %r" % (path, value))
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("%s must be a whole number, got %r" % (path, value))
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_RE.match(value.strip()):
            return int(value.strip())
        raise ValueError("%s must be a whole number, got %r" % (path, value))
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("%s must be a number, got %r" % (path, value))
        if isinstance(value, (int, float)):
            return value
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError("%s must be a number, got %r" % (path, value))
        return int(number) if number.is_integer() and _INT_RE.match(str(value).strip()) else number
    if kind == "record":
        return coerce_config(value, fdef.get("fields"), path)
    if kind in ("array", "set"):
        if not isinstance(value, list):
            raise ValueError("%s must be a list, got %r" % (path, value))
        return [_coerce(item, fdef.get("elements") or {}, "%s[%d]" % (path, index)) for index, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError("%s must be a mapping, got %r" % (path, value))
        return dict((k, _coerce(v, fdef.get("values") or {}, "%s.%s" % (path, k))) for k, v in value.items())
    if kind == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def coerce_config(value, fields, path="config"):
    """``value`` converted to the types of the schema ``fields``; unknown keys refused with the known ones."""
    if not isinstance(value, dict):
        raise ValueError("%s must be a mapping of the plugin's config fields, got %r" % (path, value))
    known = _field_map(fields)
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError("%s: unknown field(s) %s; this plugin's fields there are: %s"
                         % (path, ", ".join(unknown), ", ".join(sorted(known)) or "(none)"))
    return dict((key, _coerce(val, known[key], "%s.%s" % (path, key))) for key, val in value.items())


def secret_paths(fields, prefix=()):
    """Paths (tuples) of the config fields Kong's schema marks as secrets (``encrypted`` or ``referenceable``)."""
    out = []
    for key, fdef in _field_map(fields).items():
        fdef = fdef or {}
        if fdef.get("encrypted") or fdef.get("referenceable"):
            out.append(prefix + (key,))
        elif fdef.get("type") == "record":
            out.extend(secret_paths(fdef.get("fields"), prefix + (key,)))
    return out


def mask_secrets(plugin, paths):
    """A copy of a plugin instance whose secret config values are replaced by a mask."""
    if not plugin or not paths:
        return plugin
    out = copy.deepcopy(plugin)
    for path in paths:
        node = out.get("config")
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]) not in (None, "", [], {}):
            node[path[-1]] = MASK
    return out


def config_satisfied(desired, current):
    """True when every field of ``desired`` (nested records compared field by field) equals ``current``'s."""
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return False
        return all(config_satisfied(v, current.get(k)) for k, v in desired.items())
    if isinstance(desired, float) or isinstance(current, float):
        try:
            return float(desired) == float(current)
        except (TypeError, ValueError):
            return False
    return desired == current


def merge_config(current, desired):
    """``desired`` deep-merged over ``current`` (records merged, everything else replaced)."""
    out = copy.deepcopy(current) if isinstance(current, dict) else {}
    for key, value in (desired or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def plugin_schema(client, name):
    """The plugin's schema from the node; a clear error when the node does not have the plugin."""
    found = client.get("/schemas/plugins/%s" % client.quote(name))
    if found is None:
        raise ValueError("plugin %r is not available on this Kong node (GET /schemas/plugins/%s answered 404): check "
                         "the name, or add it to Kong's 'plugins' setting (KONG_PLUGINS=bundled,%s)" % (name, name, name))
    return found


# -- ensure -------------------------------------------------------------------------------------------------

OTHER_FIELDS = ("enabled", "tags", "protocols", "instance_name")


def ensure_plugin(client, params):
    """One plugin instance, identified by its name and exact scope (Kong allows one per name and scope)."""
    name = validate_plugin_name(params["name"])
    state = params["state"]
    scope = resolve_scope(client, params)
    wanted = dict((s, scope[s]["id"]) for s in scope)
    schema = plugin_schema(client, name)
    fields = config_fields(schema)
    secrets = secret_paths(fields)
    config = None
    if params.get("config") is not None:
        config = coerce_config(params["config"], fields)
    existing = find_plugins(client, name, wanted, mode="exact")
    current = existing[0] if existing else None
    where = scope_label({s: {"id": i} for s, i in wanted.items()})
    result = {"changed": False, "scope": where}
    before = mask_secrets(strip_volatile(current), secrets) or {}
    if state == "absent":
        if current is not None:
            client.write("DELETE", "/plugins/%s" % client.quote(current["id"]))
            result["changed"] = True
        result.update(plugin=None, diff={"before": before, "after": {}})
        return result
    desired = dict((f, params.get(f)) for f in OTHER_FIELDS if params.get(f) is not None)
    if current is None:
        body = dict(desired, name=name)
        if config is not None:
            body["config"] = config
        for s, ident in wanted.items():
            body[s] = {"id": ident}
        written = client.write("POST", "/plugins", body)
        after = written if written is not None else dict(body, id=None, config=config or {})
        result["changed"] = True
    else:
        changes = {}
        if config is not None and not config_satisfied(config, current.get("config") or {}):
            changes["config"] = merge_config(current.get("config") or {}, config)
        for field, value in desired.items():
            if not values_equal(field, value, current.get(field)):
                changes[field] = value
        after = current
        if changes:
            written = client.write("PATCH", "/plugins/%s" % client.quote(current["id"]), changes)
            after = written if written is not None else dict(current, **changes)
            result["changed"] = True
    shown = mask_secrets(after, secrets)
    result.update(plugin=shown, diff={"before": before, "after": strip_volatile(shown) or {}})
    return result


def plugin_info(client, params):
    """The plugin instances matching ``params`` (name, scope options, ``scope_mode``), secrets masked."""
    name = params.get("name")
    if name is not None:
        validate_plugin_name(name)
    if params.get("effective"):
        return _effective_info(client, params)
    scope = resolve_scope(client, params)
    mode = params.get("scope_mode") or ("exact" if scope else "any")
    if mode == "global" and scope:
        raise ValueError("scope_mode=global lists plugins without service, route and consumer: leave %s out, or use "
                         "scope_mode=exact" % ", ".join(sorted(scope)))
    wanted = dict((s, scope[s]["id"]) for s in scope)
    return {"changed": False, "plugins": _masked(client, find_plugins(client, name, wanted, mode=mode))}


def _effective_info(client, params):
    """``effective=true``: the instance of plugin ``name`` that runs for a request through the route and service given
    (either may not exist yet: then only the less specific instances count)."""
    name = params.get("name")
    if not name:
        raise ValueError("effective=true needs name: the plugin whose instance for the requests is wanted, e.g. prometheus")
    if params.get("consumer") or params.get("scope_mode"):
        raise ValueError("effective=true reads the instance for requests without a consumer: leave consumer and "
                         "scope_mode out")
    missing = []
    ids = dict((scope, entity["id"]) for scope, entity in
               resolve_scope(client, params, scopes=("service", "route"), missing=missing).items())
    plugins = find_plugins(client, name)
    chosen = effective_instance(plugins, ids.get("service"), ids.get("route"))
    listed = _masked(client, plugins)
    effective = None
    if chosen is not None:
        effective = [p for p in listed if p.get("id") == chosen.get("id")][0]
    return {"changed": False, "plugins": listed, "effective": effective, "not_found": missing}


def _masked(client, found):
    schemas = {}
    out = []
    for item in found:
        pname = item.get("name")
        if pname not in schemas:
            schema = client.get("/schemas/plugins/%s" % client.quote(pname))
            schemas[pname] = secret_paths(config_fields(schema)) if schema else None
        paths = schemas[pname]
        if paths is None:
            # no schema to tell the secrets: show no config value at all rather than risk one
            masked = dict(item, config=dict((k, MASK) for k in (item.get("config") or {})))
        else:
            masked = mask_secrets(item, paths)
        out.append(dict(masked, scope=scope_label(item)))
    return out
