"""Fault injection for the Admin API (``/_lab/faults``): errors, latency and dropped connections."""

import asyncio
import random
import re

from .admin import json_response

KNOWN = {"admin_error_rate", "admin_error_status", "admin_latency_ms", "drop_rate", "only_methods", "only_paths", "count",
         "seed", "after_write"}


class FaultConfigError(ValueError):
    """A bad ``/_lab/faults`` body; the message names the field."""


class Decision:
    """What to do with one request."""

    def __init__(self, action, status, latency_ms, before):
        self.action = action          # None, "error" or "drop"
        self.status = status
        self.latency = latency_ms
        self.before = before

    async def sleep(self):
        await asyncio.sleep(self.latency / 1000.0)

    def respond(self, request):
        if self.action == "drop":
            request.transport.abort()
            raise asyncio.CancelledError()
        if self.action == "error":
            return json_response(self.status, {"message": "lab fault injected (HTTP %d)" % self.status})
        return None


class Faults:
    """Current fault configuration of one node and counters of what was applied."""

    def __init__(self):
        self.config = {}
        self.remaining = None
        self.rng = random.Random()
        self.applied = {"error": 0, "drop": 0, "latency": 0, "matched": 0}

    def set(self, body):
        if not isinstance(body, dict):
            raise FaultConfigError("the body must be a JSON object with fields from: %s" % ", ".join(sorted(KNOWN)))
        unknown = sorted(set(body) - KNOWN)
        if unknown:
            raise FaultConfigError("unknown field(s) %s; allowed: %s" % (", ".join(unknown), ", ".join(sorted(KNOWN))))
        for field in ("admin_error_rate", "drop_rate"):
            value = body.get(field, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise FaultConfigError("%s must be a number between 0 and 1" % field)
        status = body.get("admin_error_status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultConfigError("admin_error_status must be an integer between 400 and 599")
        latency = body.get("admin_latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not 0 <= latency <= 60000:
            raise FaultConfigError("admin_latency_ms must be a number between 0 and 60000")
        count = body.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise FaultConfigError("count must be a non-negative integer (or null for no limit)")
        methods = body.get("only_methods")
        if methods is not None and (not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)):
            raise FaultConfigError("only_methods must be a list of HTTP methods, e.g. [\"PATCH\"]")
        paths = body.get("only_paths")
        if paths is not None:
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise FaultConfigError("only_paths must be a list of regular expressions matched against the path")
            try:
                paths = [re.compile(p) for p in paths]
            except re.error as exc:
                raise FaultConfigError("only_paths: invalid regular expression: %s" % exc) from exc
        seed = body.get("seed")
        self.config = dict(body)
        self.config["_paths"] = paths
        self.config["only_methods"] = [m.upper() for m in methods] if methods else None
        self.remaining = count
        self.rng = random.Random(seed)
        self.applied = {"error": 0, "drop": 0, "latency": 0, "matched": 0}

    def clear(self):
        self.set({})

    def state(self):
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        return {"config": config, "remaining": self.remaining, "applied": dict(self.applied)}

    def decide(self, method, path):
        cfg = self.config
        if not cfg or self.remaining == 0:
            return None
        if cfg.get("only_methods") and method.upper() not in cfg["only_methods"]:
            return None
        if cfg.get("_paths") and not any(p.search(path) for p in cfg["_paths"]):
            return None
        if self.remaining is not None:
            self.remaining -= 1
        self.applied["matched"] += 1
        action = None
        if cfg.get("drop_rate") and self.rng.random() < cfg["drop_rate"]:
            action = "drop"
        elif cfg.get("admin_error_rate") and self.rng.random() < cfg["admin_error_rate"]:
            action = "error"
        latency = cfg.get("admin_latency_ms") or 0
        if action:
            self.applied[action] += 1
        if latency:
            self.applied["latency"] += 1
        if not action and not latency:
            return None
        return Decision(action, cfg.get("admin_error_status", 500), latency, not cfg.get("after_write"))
