"""Kong 3.9 Admin API (the entities and behaviours in /work/shared/kong-admin-api.md) on aiohttp."""

import hmac
import json
import logging
import time
import uuid
from urllib.parse import quote, unquote

from aiohttp import web

from . import errors, schema, tls
from .errors import ApiError
from .store import UniqueConflict, decode_offset, encode_offset

LOG = logging.getLogger("kong_sim.admin")

VERSION = "3.9.1"
TOP_LEVEL = ("upstreams", "services", "routes", "consumers", "workspaces")
# /{entities}/{key}: a UUID is the id, anything else this unique field (Kong's endpoint_key)
ENDPOINT_KEYS = {"consumers": "username"}
# entities outside the proxy configuration: writing them is no configuration change (Kong only invalidates their
# cache entries: no router, balancer or plugins rebuild), so nodes do not rebuild either
OFF_CONFIG = {"consumers"}
RESERVED = set(TOP_LEVEL) | {"targets", "status", "metrics", "config", "_lab", "tags", "plugins", "certificates",
                             "snis", "ca_certificates", "endpoints", "schemas", "timers", "debug", "clustering", "cache"}
WRITE_VERBS = {"POST": "create", "PUT": "create or update", "PATCH": "update", "DELETE": "remove"}
DEFAULT_PAGE = 100
MAX_PAGE = 1000
RBAC_MESSAGE = "Invalid credentials. Token or User credentials required"
PROMETHEUS_OPTIONS = ("per_consumer", "status_code_metrics", "ai_metrics", "latency_metrics", "bandwidth_metrics", "upstream_health_metrics")
PLUGIN_FIELDS = [
    ("name", {"type": "string", "default": None, "required": True}),
    ("instance_name", {"type": "string", "default": None, "required": False}),
    ("config", {"type": "record", "required": True, "default_record": True,
                "fields": [(option, {"type": "boolean", "default": False, "required": True}) for option in PROMETHEUS_OPTIONS]}),
    ("enabled", {"type": "boolean", "default": True, "required": True}),
    ("protocols", {"type": "set", "elements": {"type": "string", "one_of": ["grpc", "grpcs", "http", "https"]},
                   "default": ["grpc", "grpcs", "http", "https"], "required": True}),
    ("service", {"type": "map", "default": None, "required": False}),
    ("route", {"type": "map", "default": None, "required": False}),
    ("consumer", {"type": "map", "default": None, "required": False}),
    ("tags", schema.TAGS),
]


# GET /schemas/plugins/prometheus as Kong 3.9 answers it (the parts a client reads: field names, types, defaults).
PROMETHEUS_SCHEMA = {"fields": [
    {"protocols": {"type": "set", "required": True, "default": ["grpc", "grpcs", "http", "https"],
                   "elements": {"type": "string", "one_of": ["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough",
                                                             "udp", "ws", "wss"]}}},
    {"config": {"type": "record", "required": True,
                "fields": [{option: {"type": "boolean", "default": False}} for option in PROMETHEUS_OPTIONS]}},
]}


def _plugin_cache_key(entity):
    return {"name": entity.get("name"), "route": entity.get("route"), "service": entity.get("service"),
            "consumer": entity.get("consumer")}


def _plugin_uniq(entity):
    """Kong's uniqueness of a plugin instance: one per name and scope (its cache_key)."""
    return ":".join([entity.get("name") or ""] + [str((entity.get(s) or {}).get("id") or "") for s in ("service", "route", "consumer")])


def dumps(value):
    return json.dumps(value, separators=(",", ":"))


def json_response(status, body=None, headers=None):
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=dumps(body).encode(), content_type="application/json", charset="utf-8",
                        headers=headers)


def _now_seconds():
    return int(time.time())


def _now_millis():
    return round(time.time(), 3)


class Request:
    """What a handler needs from one HTTP request."""

    def __init__(self, method, ws, segs, query, body, raw_path):
        self.method = method
        self.ws = ws
        self.segs = segs
        self.query = query
        self.body = body
        self.raw_path = raw_path


class AdminApi:  # pylint: disable=too-many-public-methods
    """The Admin API of one node. ``node`` provides store, node_id, options, health and metrics."""

    def __init__(self, node):
        self.node = node
        self.store = node.store
        self.started = time.time()
        self.requests = 0

    # -- aiohttp plumbing ------------------------------------------------------------------------------------

    def make_app(self):
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request):
        started = time.monotonic()
        self.requests += 1
        path = request.rel_url.raw_path
        if self.node.options.admin_tls == "mutual" and not tls.has_client_cert(request):
            return web.Response(status=400, text=tls.NO_CLIENT_CERT_PAGE, content_type="text/html", headers={"Server": "openresty"})
        if path.startswith("/_lab/") or path == "/_lab":
            return await self.node.lab_api(request)
        faults = self.node.faults
        fault = faults.decide(request.method, path)
        if fault and fault.latency:
            await fault.sleep()
        if fault and fault.action and fault.before:
            return fault.respond(request)
        try:
            if self.node.options.rbac_token is not None and not self._authorized(request):
                response = json_response(401, {"message": RBAC_MESSAGE})
            else:
                response = await self.dispatch(request)
                if request.method in WRITE_VERBS and response.status < 400:
                    # this node applies its own writes at once (Kong: local worker events); others at their next poll
                    await self.node.refresh_if_changed()
        except ApiError as exc:
            response = json_response(exc.status, exc.body)
        except Exception:  # pylint: disable=broad-exception-caught  # Kong answers 500 on any internal error
            LOG.exception("admin request %s %s failed", request.method, path)
            response = json_response(500, {"message": "An unexpected error occurred"})
        if fault and fault.action and not fault.before:
            return fault.respond(request)
        response.headers["Server"] = "kong/" + VERSION
        response.headers["X-Kong-Admin-Latency"] = str(int((time.monotonic() - started) * 1000))
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    def _authorized(self, request):
        given = request.headers.get(self.node.options.rbac_header)
        if not given:
            return False
        return hmac.compare_digest(given.encode(), self.node.options.rbac_token.encode())

    async def _read_body(self, request, fields):
        if request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return {}
        ctype = request.content_type or ""
        if ctype.startswith("multipart/form-data"):
            pairs = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                pairs.append((part.name, (await part.read(decode=True)).decode("utf-8", "replace")))
            return schema.form_to_body(fields or [], pairs)
        raw = await request.read()
        if ctype == "application/x-www-form-urlencoded" or (ctype != "application/json" and raw and not raw.lstrip().startswith(b"{")):
            post = await request.post()
            return schema.form_to_body(fields or [], list(post.items()))
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise errors.bad_json() from exc
        if not isinstance(body, dict):
            raise errors.bad_json()
        return body

    async def dispatch(self, request):
        raw_path = request.rel_url.raw_path
        segs = [unquote(s) for s in raw_path.strip("/").split("/")] if raw_path.strip("/") else []
        method = request.method
        if not segs:
            if method != "GET":
                raise errors.method_not_allowed()
            return json_response(200, self.root_info())
        ws = "default"
        if segs[0] not in RESERVED and len(segs) > 1:
            if not self.store.get_by_uniq("workspaces", "*", segs[0]):
                raise errors.not_found()
            ws = segs[0]
            segs = segs[1:]
        head = segs[0]
        if head == "status" and len(segs) == 1:
            if method != "GET":
                raise errors.method_not_allowed()
            return json_response(200, self.status_info())
        if head == "metrics" and len(segs) == 1:
            if method != "GET":
                raise errors.method_not_allowed()
            return web.Response(text=self.node.metrics.render(self.node), content_type="text/plain", charset="utf-8")
        if head == "config" and len(segs) == 1:
            return await self.declarative_config(request)
        if head == "schemas" and len(segs) == 3 and segs[1] == "plugins":
            if method != "GET":
                raise errors.method_not_allowed()
            if segs[2] != "prometheus":
                raise errors.ApiError(404, {"message": "No plugin named '%s'" % segs[2]})
            return json_response(200, PROMETHEUS_SCHEMA)
        if head == "plugins" and len(segs) <= 2:
            body = await self._read_body(request, PLUGIN_FIELDS)
            return self.plugins(Request(method, ws, segs, request.rel_url.query, body, raw_path))
        if head not in TOP_LEVEL:
            raise errors.not_found()
        fields = schema.TARGET if head == "upstreams" and len(segs) >= 3 else schema.SCHEMAS[head]
        if head == "services" and len(segs) >= 3:
            fields = schema.ROUTE
        body = await self._read_body(request, fields)
        req = Request(method, ws, segs, request.rel_url.query, body, raw_path)
        return await self.route(req)

    # -- routing ---------------------------------------------------------------------------------------------

    async def route(self, req):  # pylint: disable=too-many-return-statements,too-many-branches
        segs, method = req.segs, req.method
        kind = segs[0]
        if kind == "workspaces":
            return self.workspaces(req)
        if len(segs) == 1:
            return self.collection(req, kind)
        if len(segs) == 2:
            return self.entity_endpoint(req, kind, segs[1])
        if kind == "upstreams" and segs[2] in ("targets", "health"):
            upstream = self.find(kind, req.ws, segs[1])
            if segs[2] == "health":
                if len(segs) != 3:
                    raise errors.not_found()
                if method != "GET":
                    raise errors.method_not_allowed()
                if upstream is None:
                    raise errors.not_found()
                return await self.health(req, upstream)
            return await self.targets_endpoint(req, upstream)
        if kind == "services" and segs[2] == "routes":
            service = self.find(kind, req.ws, segs[1])
            if service is None:
                raise errors.not_found()
            if len(segs) == 3:
                if method == "GET":
                    return self.list_nested_routes(req, service)
                if method == "POST":
                    self._dbless_guard(method, "routes")
                    body = dict(req.body)
                    body["service"] = {"id": service["id"]}
                    return json_response(201, self.create("routes", req.ws, body))
                raise errors.method_not_allowed()
            if len(segs) == 4:
                route = self.find("routes", req.ws, segs[3])
                if route is not None and (route.get("service") or {}).get("id") != service["id"]:
                    route = None
                if method == "GET":
                    if route is None:
                        raise errors.not_found()
                    return json_response(200, route)
                req.segs = ["routes", segs[3]]
                if method in ("PATCH", "PUT"):
                    req.body = dict(req.body, service={"id": service["id"]})
                return self.entity_endpoint(req, "routes", segs[3])
        if kind == "routes" and segs[2] == "service" and len(segs) == 3:
            route = self.find(kind, req.ws, segs[1])
            if route is None or not route.get("service"):
                raise errors.not_found()
            if method != "GET":
                raise errors.method_not_allowed()
            service = self.store.get_by_id("services", req.ws, route["service"]["id"])
            if service is None:
                raise errors.not_found()
            return json_response(200, service)
        raise errors.not_found()

    def collection(self, req, kind):
        """``/{entities}``: GET lists, POST creates."""
        if req.method == "GET":
            if kind == "consumers" and "custom_id" in req.query:
                return self.consumer_by_custom_id(req)
            return self.list_top(req, kind)
        if req.method == "POST":
            if self.node.options.dbless:
                self.build_new(kind, req.ws, req.body, foreign=False)     # Kong validates first (400), then refuses
            self._dbless_guard(req.method, kind)
            return json_response(201, self.create(kind, req.ws, req.body))
        raise errors.method_not_allowed()

    @staticmethod
    def _dbless_entity_write(method, kind, key, current):
        """DB-less answers for writes on /{entities}/{key}: Kong looks the entity up first (PATCH 404, DELETE 204);
        the message names the endpoint key (``by 'name'``, ``by 'username'``), not the id (Kong 3.9.3)."""
        by = "id" if schema.is_uuid(key) else ENDPOINT_KEYS.get(kind, "name")
        if method == "PATCH" and current is None:
            raise errors.entity_not_found(by, key)
        if method == "DELETE" and current is None:
            return
        verb = {"PUT": "create or update", "PATCH": "update", "DELETE": "remove"}[method]
        how = "" if by == "id" else " by '%s'" % by
        raise errors.operation_unsupported("cannot %s '%s' entities%s when not using a database" % (verb, kind, how))

    def _dbless_guard(self, method, kind):
        if self.node.options.dbless:
            raise errors.operation_unsupported("cannot %s '%s' entities when not using a database" % (WRITE_VERBS[method], kind))

    # -- lookups ---------------------------------------------------------------------------------------------

    def find(self, kind, ws, key):
        if schema.is_uuid(key):
            return self.store.get_by_id(kind, ws, key.lower())
        if kind == "workspaces":
            return self.store.get_by_uniq(kind, "*", key)
        return self.store.get_by_uniq(kind, ws, key)

    def find_target(self, upstream, key):
        if schema.is_uuid(key):
            target = self.store.get_by_id("targets", upstream["ws"], key.lower())
            if target and target["upstream"]["id"] != upstream["id"]:
                return None
            return target
        if schema.normalize_ip(key) is None:
            return None
        return self.store.get_by_uniq("targets", upstream["ws"], "%s|%s" % (upstream["id"], schema.normalise_target(key)))

    # -- pagination ------------------------------------------------------------------------------------------

    @staticmethod
    def page_args(query):
        size = query.get("size")
        if size is None:
            size = DEFAULT_PAGE
        else:
            try:
                size = float(size)
            except ValueError as exc:
                raise errors.invalid_size() from exc
            if not size.is_integer() or size < 1 or size > MAX_PAGE:
                raise errors.invalid_size()
            size = int(size)
        offset = query.get("offset")
        cursor = None
        if offset is not None:
            try:
                cursor = decode_offset(offset)
            except ValueError as exc:
                raise errors.invalid_offset(offset, str(exc)) from exc
        return size, offset, cursor

    @staticmethod
    def tags_predicate(query):
        tags = query.get("tags")
        if tags is None:
            return None, None
        if "," in tags and "/" in tags:
            raise errors.invalid_options({"tags": "invalid filter syntax"})
        wanted = [t for t in (tags.split("/") if "/" in tags else tags.split(",")) if t != ""]
        if not wanted:
            raise errors.invalid_options({"tags": "invalid filter syntax"})
        if len(wanted) > 5:
            raise errors.invalid_options({"tags": "cannot query more than 5 tags"})
        any_of = "/" in tags

        def predicate(entity):
            have = entity.get("tags") or []
            if any_of:
                return any(t in have for t in wanted)
            return all(t in have for t in wanted)
        return predicate, tags

    @staticmethod
    def _prefix(req):  # pylint: disable=unused-argument
        # Kong builds `next` from the entity path alone (endpoints.lua), without a workspace prefix
        return ""

    def list_top(self, req, kind, predicate_extra=None):
        size, offset, cursor = self.page_args(req.query)
        predicate, tags = self.tags_predicate(req.query)
        if cursor is not None and not isinstance(cursor[0], str):
            raise errors.invalid_offset(offset, "bad cursor")
        if predicate_extra is not None:
            base = predicate

            def predicate(entity):  # pylint: disable=function-redefined
                return predicate_extra(entity) and (base is None or base(entity))
        items, last = self.store.page_top(kind, req.ws, size, cursor[0] if cursor else None, predicate)
        result = {"data": [self.public(item) for item in items], "next": None}
        if last is not None:
            token = encode_offset([last])
            path = "/" + "/".join(quote(s, safe="") for s in req.segs)
            nxt = "%s%s?offset=%s" % (self._prefix(req), path, quote(token, safe=""))
            if tags is not None:
                nxt += "&tags=" + quote(tags, safe="")
            if req.query.get("size") is not None:
                nxt += "&size=%d" % size
            result["offset"] = token
            result["next"] = nxt
        return json_response(200, result)

    def list_nested_routes(self, req, service):
        req = Request(req.method, req.ws, req.segs, {k: v for k, v in req.query.items() if k != "tags"}, req.body, req.raw_path)
        return self.list_top(req, "routes", lambda e: (e.get("service") or {}).get("id") == service["id"])

    def page_targets(self, req, upstream):
        size, offset, cursor = self.page_args(req.query)
        if cursor is not None and (len(cursor) != 2 or not isinstance(cursor[0], (int, float)) or not isinstance(cursor[1], str)):
            raise errors.invalid_offset(offset, "bad cursor")
        items, last = self.store.page_children("targets", upstream["id"], size, cursor)
        token = encode_offset(last) if last is not None else None
        return items, token

    # -- entity CRUD -----------------------------------------------------------------------------------------

    @staticmethod
    def _uniq(kind, entity):
        if kind == "targets":
            return "%s|%s" % (entity["upstream"]["id"], entity["target"])
        return entity.get(ENDPOINT_KEYS.get(kind, "name"))

    @staticmethod
    def _parent(kind, entity):
        if kind == "targets":
            return entity["upstream"]["id"]
        if kind == "routes":
            return (entity.get("service") or {}).get("id")
        return None

    @staticmethod
    def _unique_error(kind, entity):
        if kind == "targets":
            return errors.unique_violation({"target": entity["target"], "upstream": {"id": entity["upstream"]["id"]}})
        key = ENDPOINT_KEYS.get(kind, "name")
        return errors.unique_violation({key: entity[key]})

    def _second_unique(self, kind, ws, entity):
        """A consumer's ``custom_id`` is unique too (checked inside the write's transaction, after ``username``: of
        two taken fields Kong names ``username``)."""
        if kind == "consumers" and entity.get("custom_id") is not None:
            if self.store.get_by_field(kind, ws, "custom_id", entity["custom_id"], exclude_id=entity["id"]):
                raise errors.unique_violation({"custom_id": entity["custom_id"]})

    def _prepare(self, kind, ws, entity, updating=False, foreign=True):  # pylint: disable=too-many-arguments,too-many-positional-arguments
        """Validate a complete entity (defaults filled); normalise; check foreign keys (unless not ``foreign``).
        ``updating``: a PATCH (Kong's entity check messages then start with ``when updating, ``). Raises ApiError."""
        fields = schema.SCHEMAS[kind]
        schema.normalise_numbers(fields, entity)
        schema.dedupe_sets(fields, entity)
        errs = schema.validate_fields(fields, entity, skip=("id", "created_at", "updated_at", "ws"))
        if kind == "routes" and not errs:
            errs = schema.route_entity_checks(entity)
        if kind == "upstreams" and not errs:
            errs = schema.upstream_entity_checks(entity)
        if kind == "consumers":
            errs.update(schema.consumer_entity_checks(entity, updating))
        if errs:
            raise errors.schema_violation(errs)
        if kind == "targets":
            entity["target"] = schema.normalise_target(entity["target"])
        if kind == "routes" and entity.get("service") and foreign:
            ref = entity["service"]
            service = None
            if isinstance(ref.get("id"), str) and schema.is_uuid(ref["id"]):
                service = self.store.get_by_id("services", ws, ref["id"].lower())
            if service is None:
                raise errors.foreign_key_invalid({"id": ref.get("id")}, "service", "services")
            entity["service"] = {"id": service["id"]}
        return entity

    def _resolve_service_name(self, ws, body):
        ref = body.get("service")
        if isinstance(ref, dict) and "name" in ref and "id" not in ref:
            service = self.store.get_by_uniq("services", ws, ref["name"]) if isinstance(ref["name"], str) else None
            if service is None:
                raise errors.foreign_key_invalid({"name": ref["name"]}, "service", "services")
            body["service"] = {"id": service["id"]}

    def _pre_body(self, kind, ws, body):
        body = dict(body)
        for key in ("created_at", "updated_at", "ws"):
            body.pop(key, None)
        if kind == "services":
            errs = schema.service_from_url(body)
            if errs:
                raise errors.schema_violation(errs)
        if kind == "routes":
            self._resolve_service_name(ws, body)
        return body

    def _stamp(self, kind, entity, created=None):
        now = _now_millis() if kind == "targets" else _now_seconds()
        entity["created_at"] = created if created is not None else now
        entity["updated_at"] = now

    def build_new(self, kind, ws, body, entity_id=None, foreign=True):  # pylint: disable=too-many-arguments,too-many-positional-arguments
        """The entity a create would store (validated, id and timestamps set), without storing it."""
        body = self._pre_body(kind, ws, body)
        given_id = body.pop("id", None)
        if given_id is not None and not schema.is_uuid(given_id):
            raise errors.schema_violation({"id": "expected a valid UUID"})
        entity = schema.fill_defaults(schema.SCHEMAS[kind], body)
        self._prepare(kind, ws, entity, foreign=foreign)
        entity["id"] = entity_id or (given_id.lower() if given_id else str(uuid.uuid4()))
        self._stamp(kind, entity)
        return entity

    def create(self, kind, ws, body, entity_id=None):
        entity = self.build_new(kind, ws, body, entity_id)
        stored = dict(entity, ws=ws)
        with self.store.transaction(bump=kind not in OFF_CONFIG):
            try:
                self.store.insert(kind, ws, stored, self._uniq(kind, entity), self._parent(kind, entity))
            except UniqueConflict as exc:
                if self.store.id_taken(entity["id"]):
                    raise errors.primary_key_violation(entity["id"]) from exc
                raise self._unique_error(kind, entity) from exc
            self._second_unique(kind, ws, entity)
        return self.public(entity)

    def build_update(self, kind, ws, current, body, replace=False, foreign=True):  # pylint: disable=too-many-arguments,too-many-positional-arguments
        """The entity an update (PATCH; PUT with ``replace``) would store, without storing it."""
        body = self._pre_body(kind, ws, body)
        body.pop("id", None)
        fields = schema.SCHEMAS[kind]
        if replace:
            entity = schema.fill_defaults(fields, body)
        else:
            base = {k: v for k, v in current.items() if k not in ("id", "created_at", "updated_at", "ws")}
            entity = schema.merge(fields, base, body)
        self._prepare(kind, ws, entity, updating=not replace, foreign=foreign)
        entity["id"] = current["id"]
        self._stamp(kind, entity, created=current["created_at"])
        return entity

    def update(self, kind, ws, current, body, replace=False):
        entity = self.build_update(kind, ws, current, body, replace)
        with self.store.transaction(bump=kind not in OFF_CONFIG):
            try:
                self.store.update(kind, ws, dict(entity, ws=ws), self._uniq(kind, entity), self._parent(kind, entity))
            except UniqueConflict as exc:
                raise self._unique_error(kind, entity) from exc
            self._second_unique(kind, ws, entity)
        return self.public(entity)

    @staticmethod
    def public(entity):
        return {k: v for k, v in entity.items() if k != "ws"}

    def entity_endpoint(self, req, kind, key):
        method = req.method
        if method not in ("GET", "PATCH", "PUT", "DELETE"):
            raise errors.method_not_allowed()
        current = self.find(kind, req.ws, key)
        by = "id" if schema.is_uuid(key) else ENDPOINT_KEYS.get(kind, "name")
        if method != "GET" and self.node.options.dbless:
            self._dbless_refuse(req, kind, key, current, by)
        if method == "GET":
            if current is None:
                raise errors.not_found()
            return json_response(200, self.public(current))
        if method == "DELETE":
            if current is not None:
                self.delete(kind, req.ws, current)
            return json_response(204)
        if method == "PATCH":
            if current is None:
                raise errors.entity_not_found(by, key)
            return json_response(200, self.update(kind, req.ws, current, req.body))
        # PUT: upsert by id or by the endpoint key (name, username): the key in the URL wins over the body
        body = dict(req.body)
        if by == "id":
            body["id"] = key.lower()
        else:
            body[by] = key
        if current is None:
            return json_response(200, self.create(kind, req.ws, body, entity_id=body.get("id")))
        return json_response(200, self.update(kind, req.ws, current, body, replace=True))

    def _dbless_refuse(self, req, kind, key, current, by):  # pylint: disable=too-many-arguments,too-many-positional-arguments
        """DB-less writes on /{entities}/{key}: Kong looks the entity up (PATCH 404, DELETE 204) and validates the write
        (400) before it refuses it (405)."""
        if req.method == "PATCH" and current is not None:
            self.build_update(kind, req.ws, current, req.body, foreign=False)
        elif req.method == "PUT":
            self.build_new(kind, req.ws, dict(req.body, **{by: key.lower() if by == "id" else key}), foreign=False)
        self._dbless_entity_write(req.method, kind, key, current)

    def delete(self, kind, ws, entity):
        with self.store.transaction(bump=kind not in OFF_CONFIG):
            if kind == "services" and self.store.count_children("routes", entity["id"]):
                raise errors.foreign_key_restricted("services", "routes")
            if kind == "upstreams":
                self.store.delete_children("targets", entity["id"])
            scope = {"services": "service", "routes": "route", "consumers": "consumer"}.get(kind)
            if scope:
                # Kong: a plugin's service, route and consumer keys cascade on delete
                for (plugin_id,) in self.store.conn.execute(
                        "SELECT id FROM entities WHERE kind = 'plugins' AND ws = ? AND json_extract(body, ?) = ?",
                        (ws, "$.%s.id" % scope, entity["id"])).fetchall():
                    self.store.delete("plugins", ws, plugin_id)
            self.store.delete(kind, ws, entity["id"])

    def consumer_by_custom_id(self, req):
        """``GET /consumers?custom_id=x``: the one consumer with that custom_id (``size``, ``offset`` and ``tags``
        are ignored), ``{"data": [], "next": null}`` when none; an empty value is 400 (kong/api/routes/consumers.lua)."""
        custom_id = req.query["custom_id"]
        if custom_id == "":
            raise ApiError(400, {"message": "custom_id must be an unempty string"})
        found = self.store.get_by_field("consumers", req.ws, "custom_id", custom_id)
        return json_response(200, {"data": [self.public(found)] if found else [], "next": None})

    # -- targets ---------------------------------------------------------------------------------------------

    async def targets_endpoint(self, req, upstream):  # pylint: disable=too-many-return-statements,too-many-branches
        segs, method = req.segs, req.method
        if len(segs) == 3 or (len(segs) == 4 and segs[3] == "all"):
            if len(segs) == 3 and method == "POST":
                if upstream is None:
                    raise errors.not_found()
                self._dbless_guard(method, "targets")
                body = dict(req.body)
                body["upstream"] = {"id": upstream["id"]}
                return json_response(201, self.create_target(upstream, body))
            if method != "GET":
                raise errors.method_not_allowed()
            if upstream is None:
                raise errors.not_found()
            items, token = self.page_targets(req, upstream)
            result = {"data": [self.public(t) for t in items], "next": None}
            if token:
                result["offset"] = token
                result["next"] = "%s/%s?offset=%s" % (self._prefix(req), "/".join(quote(s, safe="") for s in segs), quote(token, safe=""))
            return json_response(200, result)
        if len(segs) in (5, 6) and segs[-1] in ("healthy", "unhealthy"):
            if method != "PUT":
                raise errors.method_not_allowed()
            if upstream is None:
                raise errors.not_found()
            target = self.find_target(upstream, segs[3])
            if target is None:
                raise errors.not_found()
            address = segs[4] if len(segs) == 6 else None
            if address is not None and schema.normalize_ip(address) is None:
                return json_response(400, {"message": "invalid address: %s" % address})
            if self.node.balancer_for(upstream["id"]) is None:
                # Kong answers this until the node has built the upstream's balancer (kong/runloop/balancer/healthcheckers.lua)
                return json_response(400, {"message": "Upstream %s has no balancer" % upstream["name"]})
            if not schema.healthchecks_on(upstream):
                # Kong keeps no health checker for an upstream whose checks are all off; post_health answers
                # 400 "no healthchecker found for <name>" (kong/runloop/balancer/healthcheckers.lua).
                return json_response(400, {"message": "no healthchecker found for %s" % upstream["name"]})
            await self.node.post_health(upstream, target, address, segs[-1] == "healthy")
            return json_response(204)
        if len(segs) != 4:
            raise errors.not_found()
        if method not in ("GET", "PATCH", "PUT", "DELETE"):
            raise errors.method_not_allowed()
        if upstream is None:
            raise errors.not_found()
        target = self.find_target(upstream, segs[3])
        if target is None:
            raise errors.not_found()
        if method != "GET":
            # Kong looks the upstream and the target up first (404), then its DAO refuses the write (DB-less);
            # PUT and PATCH on a target both go through update_target_cb
            self._dbless_guard("DELETE" if method == "DELETE" else "PATCH", "targets")
        if method == "GET":
            return json_response(200, self.public(target))
        if method == "DELETE":
            with self.store.transaction():
                self.store.delete("targets", upstream["ws"], target["id"])
            return json_response(204)
        body = dict(req.body)
        body["upstream"] = {"id": upstream["id"]}
        return json_response(200, self.update("targets", upstream["ws"], target, body))

    def create_target(self, upstream, body):
        return self.create("targets", upstream["ws"], body)

    # -- health ----------------------------------------------------------------------------------------------

    async def health(self, req, upstream):
        node_id = self.node.node_id
        balancer = self.node.balancer_for(upstream["id"])
        if str(req.query.get("balancer_health")) == "1":
            if balancer is None:
                # no balancer on this node (yet): Kong answers without `data`
                return json_response(200, {"next": None, "node_id": node_id})
            return json_response(200, {"data": balancer.balancer_health(), "next": None, "node_id": node_id})
        items, token = self.page_targets(req, upstream)
        data = []
        for target in items:
            entry = self.public(target)
            if balancer is None:
                # no balancer on this node yet: the target as stored, without `health` and `data` (Kong 3.9)
                data.append(entry)
                continue
            known = balancer.target_by_name.get(target["target"])
            if known is None:
                entry["health"] = "HEALTHCHECKS_OFF" if not schema.healthchecks_on(upstream) else "DNS_ERROR"
                entry["data"] = {"host": None, "port": None, "dns": None, "nodeWeight": target["weight"], "addresses": [],
                                 "weight": {"total": 0, "available": 0, "unavailable": 0}}
            else:
                entry["health"], entry["data"] = balancer.target_health(known)
            data.append(entry)
        result = {"data": data, "next": None, "node_id": node_id}
        if token:
            result["offset"] = token
            result["next"] = "%s/%s?offset=%s" % (self._prefix(req), "/".join(quote(s, safe="") for s in req.segs), quote(token, safe=""))
        return json_response(200, result)

    # -- workspaces (Kong Enterprise; `default` always exists) --------------------------------------------------

    def workspaces(self, req):
        segs, method = req.segs, req.method
        if len(segs) == 1:
            if method == "GET":
                req.ws = "*"
                return self.list_top(req, "workspaces")
            if method == "POST":
                return json_response(201, self.create("workspaces", "*", req.body))
            raise errors.method_not_allowed()
        if len(segs) != 2:
            raise errors.not_found()
        current = self.find("workspaces", "*", segs[1])
        if method == "GET":
            if current is None:
                raise errors.not_found()
            return json_response(200, self.public(current))
        if method == "DELETE":
            if current is None:
                return json_response(204)
            if current["name"] == "default":
                return json_response(400, {"message": "Cannot delete default workspace"})
            count = self.store.conn.execute("SELECT COUNT(*) FROM entities WHERE ws = ?", (current["name"],)).fetchone()[0]
            if count:
                return json_response(400, {"message": "Workspace is not empty"})
            with self.store.transaction():
                self.store.delete("workspaces", "*", current["id"])
            return json_response(204)
        raise errors.method_not_allowed()

    # -- plugins: the prometheus plugin only (global, or scoped to a service, route or consumer) ------------------

    def plugins(self, req):  # pylint: disable=too-many-return-statements
        """``/plugins`` and ``/plugins/{id}`` for prometheus plugin instances (what the lab models of plugins). Scoped
        instances are stored and listed like Kong's; for the metrics the simulator applies every enabled instance's
        options to every request (real Kong runs the most specific instance per request)."""
        segs, method = req.segs, req.method
        if len(segs) == 1:
            if method == "GET":
                return self.list_top(req, "plugins")
            if method != "POST":
                raise errors.method_not_allowed()
            self._dbless_guard(method, "plugins")
            return json_response(201, self.create_plugin(req.ws, req.body))
        current = self.store.get_by_id("plugins", req.ws, segs[1].lower()) if schema.is_uuid(segs[1]) else None
        if method == "GET":
            if current is None:
                raise errors.not_found()
            return json_response(200, self.public(current))
        if method not in ("PATCH", "PUT", "DELETE"):
            raise errors.method_not_allowed()
        if self.node.options.dbless:
            self._dbless_entity_write(method, "plugins", segs[1], current)
        if method == "DELETE":
            if current is not None:
                with self.store.transaction():
                    self.store.delete("plugins", req.ws, current["id"])
            return json_response(204)
        if current is None:
            if method == "PATCH":
                raise errors.not_found()
            return json_response(200, self.create_plugin(req.ws, dict(req.body, id=segs[1].lower())))
        body = dict(req.body)
        if method == "PATCH":
            base = {k: v for k, v in current.items() if k not in ("id", "created_at", "updated_at", "ws")}
            body = schema.merge(PLUGIN_FIELDS, base, body)
        entity = self._prepare_plugin(body, req.ws)
        entity["id"] = current["id"]
        self._stamp("plugins", entity, created=current["created_at"])
        with self.store.transaction():
            try:
                self.store.update("plugins", req.ws, dict(entity, ws=req.ws), _plugin_uniq(entity), None)
            except UniqueConflict as exc:
                raise errors.unique_violation(_plugin_cache_key(entity)) from exc
        return json_response(200, self.public(entity))

    def _prepare_plugin(self, body, ws):
        body = {k: v for k, v in body.items() if k not in ("id", "created_at", "updated_at", "ws")}
        name = body.get("name")
        if name is None:
            raise errors.schema_violation({"name": "required field missing"})
        if name != "prometheus":
            raise errors.schema_violation({"name": "plugin '%s' not enabled; add it to the 'plugins' configuration property" % name})
        entity = schema.fill_defaults(PLUGIN_FIELDS, body)
        errs = schema.validate_fields(PLUGIN_FIELDS, entity)
        kinds = {"service": "services", "route": "routes", "consumer": "consumers"}
        for scope, kind in kinds.items():
            ref = entity.get(scope)
            if ref is None or scope in errs:
                continue
            ident = str(ref.get("id") or "").lower()
            if not schema.is_uuid(ident) or self.store.get_by_id(kind, ws, ident) is None:
                raise errors.foreign_key_invalid({"id": ident}, scope, kind)
            entity[scope] = {"id": ident}
        if errs:
            raise errors.schema_violation(errs)
        return entity

    def create_plugin(self, ws, body):
        """Validate and store a (global prometheus) plugin."""
        given_id = body.get("id")
        if given_id is not None and not schema.is_uuid(given_id):
            raise errors.schema_violation({"id": "expected a valid UUID"})
        entity = self._prepare_plugin(body, ws)
        entity["id"] = given_id.lower() if given_id else str(uuid.uuid4())
        self._stamp("plugins", entity)
        with self.store.transaction():
            try:
                self.store.insert("plugins", ws, dict(entity, ws=ws), _plugin_uniq(entity), None)
            except UniqueConflict as exc:
                raise errors.unique_violation(_plugin_cache_key(entity)) from exc
        return self.public(entity)

    # -- DB-less declarative config ----------------------------------------------------------------------------

    async def declarative_config(self, request):
        if request.method == "GET":
            if not self.node.options.dbless:
                raise errors.not_found()
            return json_response(200, {"config": dumps(self.export_config())})
        if request.method != "POST":
            raise errors.method_not_allowed()
        if not self.node.options.dbless:
            raise errors.not_found()
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise errors.bad_json() from exc
        config = body.get("config", body) if isinstance(body, dict) else None
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except ValueError as exc:
                raise errors.bad_json() from exc
        if not isinstance(config, dict):
            raise errors.bad_json()
        self.load_config(config)
        return json_response(201, self.export_config())

    def load_config(self, config):
        """Replace every entity of the default workspace with a declarative config (JSON form of kong.yml)."""
        saved = self.node.options.dbless
        self.node.options.dbless = False
        try:
            with self.store.transaction():
                self.store.delete_all()
            try:
                for service in config.get("services") or []:
                    service = dict(service)
                    routes = service.pop("routes", None) or []
                    created = self.create("services", "default", service)
                    for route in routes:
                        self.create("routes", "default", dict(route, service={"id": created["id"]}))
                for route in config.get("routes") or []:
                    self.create("routes", "default", dict(route))
                for consumer in config.get("consumers") or []:
                    self.create("consumers", "default", dict(consumer))
                for upstream in config.get("upstreams") or []:
                    upstream = dict(upstream)
                    targets = upstream.pop("targets", None) or []
                    created = self.create("upstreams", "default", upstream)
                    created["ws"] = "default"
                    for target in targets:
                        self.create_target(created, dict(target, upstream={"id": created["id"]}))
            except ApiError as exc:
                with self.store.transaction():
                    self.store.delete_all()
                raise ApiError(400, {"code": 14, "name": "invalid declarative configuration",
                                     "message": "declarative config is invalid: %s" % exc.body.get("message"),
                                     "fields": exc.body.get("fields", {})}) from exc
        finally:
            self.node.options.dbless = saved

    def export_config(self):
        out = {"_format_version": "3.0", "services": [], "routes": [], "upstreams": [], "targets": [], "consumers": []}
        for kind, ws, entity in self.store.all_entities():
            if ws == "default" and kind in out:
                out[kind].append(self.public(entity))
        return out

    # -- node info -------------------------------------------------------------------------------------------

    def root_info(self):
        opts = self.node.options
        return {
            "version": VERSION,
            "edition": "community" if opts.rbac_token is None else "enterprise",
            "tagline": "Welcome to kong",
            "node_id": self.node.node_id,
            "hostname": opts.node_name,
            "lua_version": "LuaJIT 2.1.0-20231117",
            "pids": {"master": self.node.pid, "workers": [self.node.pid]},
            "timers": {"running": 0, "pending": 0},
            "plugins": {"available_on_server": {"prometheus": {"version": VERSION, "priority": 13}},
                        "enabled_in_cluster": ["prometheus"] if self.node.prometheus_options() else []},
            "configuration": {
                "database": "off" if opts.dbless else "postgres",
                "role": "traditional",
                "admin_listen": ["%s:%d%s" % (opts.admin_listen[0], opts.admin_listen[1], "" if opts.admin_tls == "off" else " ssl")],
                "admin_ssl_enabled": opts.admin_tls != "off",
                "proxy_listen": ["%s:%d" % opts.proxy_listen],
                "status_listen": ["%s:%d" % opts.status_listen] if opts.status_listen else [],
                "db_update_frequency": self.node.options.db_update_frequency,
                "db_update_propagation": 0,
                "enforce_rbac": "on" if opts.rbac_token is not None else "off",
                "rbac_auth_header": opts.rbac_header,
                "admin_gui_auth": None,
                "nginx_worker_processes": "1",
                "lab_simulator": True,
            },
        }

    def status_info(self):
        info = {
            "database": {"reachable": True},
            "memory": {"workers_lua_vms": [{"http_allocated_gc": "0 MiB", "pid": self.node.pid}],
                       "lua_shared_dicts": {}},
            "server": {"connections_accepted": self.node.connections, "connections_active": 1, "connections_handled": self.node.connections,
                       "connections_reading": 0, "connections_waiting": 0, "connections_writing": 1,
                       "total_requests": self.requests + self.node.proxy_requests},
        }
        if self.node.options.dbless:
            info["configuration_hash"] = "%032x" % self.store.version()
        return info
