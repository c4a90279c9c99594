"""Kong's Admin API error bodies (``kong/db/errors.lua``) as exceptions the handlers raise."""

import re

SCHEMA_VIOLATION = 2
PRIMARY_KEY_VIOLATION = 3
FOREIGN_KEY_VIOLATION = 4
UNIQUE_VIOLATION = 5
NOT_FOUND = 6
INVALID_OFFSET = 7
INVALID_SIZE = 9
INVALID_OPTIONS = 11
OPERATION_UNSUPPORTED = 12

NAMES = {
    SCHEMA_VIOLATION: "schema violation",
    PRIMARY_KEY_VIOLATION: "primary key violation",
    FOREIGN_KEY_VIOLATION: "foreign key violation",
    UNIQUE_VIOLATION: "unique constraint violation",
    NOT_FOUND: "not found",
    INVALID_OFFSET: "invalid offset",
    INVALID_SIZE: "invalid size",
    INVALID_OPTIONS: "invalid options",
    OPERATION_UNSUPPORTED: "operation unsupported",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiError(Exception):
    """An HTTP error answer: ``status`` and the JSON ``body``."""

    def __init__(self, status, body):
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def not_found():
    return ApiError(404, {"message": "Not found"})


def method_not_allowed():
    return ApiError(405, {"message": "Method not allowed"})


def bad_json():
    return ApiError(400, {"message": "Cannot parse JSON body"})


def lua_pretty(value, indent="", compact=False):
    """Render ``value`` like Penlight's ``pretty.write`` (Kong uses it inside error messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(value, list):
        items = [lua_pretty(v, indent + "  ", compact) for v in value]
        keys = [None] * len(items)
    else:
        keys = sorted(value)
        items = [lua_pretty(value[k], indent + "  ", compact) for k in keys]
    parts = []
    for key, item in zip(keys, items):
        if key is None:
            parts.append(item)
        elif _IDENT.match(str(key)):
            parts.append("%s=%s" % (key, item) if compact else "%s = %s" % (key, item))
        else:
            parts.append('["%s"]=%s' % (key, item) if compact else '["%s"] = %s' % (key, item))
    if compact:
        return "{" + ",".join(parts) + "}"
    if not parts:
        return "{}"
    inner = indent + "  "
    return "{\n" + ",\n".join(inner + p for p in parts) + "\n" + indent + "}"


def schema_violation(fields):
    """Code 2 with Kong's message: one line per (top-level or second-level) field, sorted."""
    buf = list(fields.get("@entity", []))
    for name in sorted(k for k in fields if k != "@entity"):
        errs = fields[name]
        if isinstance(errs, dict):
            for sub in sorted(errs, key=str):
                val = errs[sub]
                buf.append("%s.%s: %s" % (name, sub, lua_pretty(val) if isinstance(val, (dict, list)) else val))
        elif isinstance(errs, list):
            for i, val in enumerate(errs, 1):
                if val is not None:
                    buf.append("%s.%d: %s" % (name, i, lua_pretty(val) if isinstance(val, (dict, list)) else val))
        else:
            buf.append("%s: %s" % (name, errs))
    if len(buf) == 1:
        message = "schema violation (%s)" % buf[0]
    else:
        message = "%d schema violations (%s)" % (len(buf), "; ".join(buf))
    return ApiError(400, {"code": SCHEMA_VIOLATION, "name": NAMES[SCHEMA_VIOLATION], "message": message, "fields": fields})


def unique_violation(key):
    message = "UNIQUE violation detected on '%s'" % lua_pretty(key, compact=True)
    return ApiError(409, {"code": UNIQUE_VIOLATION, "name": NAMES[UNIQUE_VIOLATION], "message": message, "fields": key})


def primary_key_violation(entity_id):
    """POST of an entity with an id already taken: 400 code 3 (Kong 3.9.3, upstreams and consumers alike)."""
    key = {"id": entity_id}
    return ApiError(400, {"code": PRIMARY_KEY_VIOLATION, "name": NAMES[PRIMARY_KEY_VIOLATION],
                          "message": "primary key violation on key '%s'" % lua_pretty(key, compact=True), "fields": key})


def entity_not_found(field, value):
    """PATCH of a missing entity: 404 code 6 naming the key it was looked up by (``id``: the primary key; else the
    endpoint key, ``name`` or ``username``), with or without a database."""
    key = {field: value}
    where = "primary key '%s'" if field == "id" else "'%s'"
    return ApiError(404, {"code": NOT_FOUND, "name": NAMES[NOT_FOUND], "message": ("could not find the entity with " + where)
                          % lua_pretty(key, compact=True), "fields": key})


def foreign_key_invalid(foreign_key, field, parent):
    message = "the foreign key '%s' does not reference an existing '%s' entity." % (lua_pretty(foreign_key, compact=True), parent)
    return ApiError(400, {"code": FOREIGN_KEY_VIOLATION, "name": NAMES[FOREIGN_KEY_VIOLATION], "message": message,
                          "fields": {field: foreign_key}})


def foreign_key_restricted(parent, child):
    message = "an existing '%s' entity references this '%s' entity" % (child, parent)
    return ApiError(400, {"code": FOREIGN_KEY_VIOLATION, "name": NAMES[FOREIGN_KEY_VIOLATION], "message": message,
                          "fields": {"@referenced_by": child}})


def invalid_offset(offset, why):
    return ApiError(400, {"code": INVALID_OFFSET, "name": NAMES[INVALID_OFFSET],
                          "message": "'%s' is not a valid offset: %s" % (offset, why)})


def invalid_size():
    return ApiError(400, {"code": INVALID_SIZE, "name": NAMES[INVALID_SIZE], "message": "size must be an integer between 1 and 1000"})


def invalid_options(options):
    buf = ["%s: %s" % (k, options[k]) for k in sorted(options)]
    if len(buf) == 1:
        message = "invalid option (%s)" % buf[0]
    else:
        message = "%d option violations (%s)" % (len(buf), "; ".join(buf))
    return ApiError(400, {"code": INVALID_OPTIONS, "name": NAMES[INVALID_OPTIONS], "message": message, "options": options})


def operation_unsupported(message):
    return ApiError(405, {"code": OPERATION_UNSUPPORTED, "name": NAMES[OPERATION_UNSUPPORTED], "message": message})
