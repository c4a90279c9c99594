"""The shared state: one SQLite database in WAL mode (Kong's database), used directly by every node.

Every write bumps ``meta.version`` in the same transaction; nodes poll that counter to rebuild their proxy
configuration (Kong's ``db_update_frequency``). Manual target health changes are broadcast through the
``events`` table (Kong's cluster events).
"""

import base64
import json
import sqlite3
import time
import uuid
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    ws TEXT NOT NULL,
    uniq TEXT,
    parent TEXT,
    created_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS entities_uniq ON entities(kind, ws, uniq);
CREATE INDEX IF NOT EXISTS entities_kind ON entities(kind, ws, id);
CREATE INDEX IF NOT EXISTS entities_parent ON entities(kind, parent, created_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, body TEXT NOT NULL, at REAL NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('version', 1);
"""


class UniqueConflict(Exception):
    """The (kind, workspace, unique key) already exists."""


def encode_offset(values):
    return base64.b64encode(json.dumps(values, separators=(",", ":")).encode()).decode()


def decode_offset(offset):
    """Return the cursor values, or raise ValueError with Kong's reason."""
    try:
        raw = base64.b64decode(offset.encode(), validate=True)
    except (ValueError, UnicodeError) as exc:
        raise ValueError("bad base64 encoding") from exc
    try:
        values = json.loads(raw.decode())
    except (ValueError, UnicodeError) as exc:
        raise ValueError("bad json encoding") from exc
    if not isinstance(values, list) or not values:
        raise ValueError("bad json encoding")
    return values


class Store:  # pylint: disable=too-many-public-methods
    """Thin data access over the shared SQLite file (one connection per process, used from one thread)."""

    def __init__(self, path):
        self.path = path
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        with self.transaction(bump=False):
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)

    def close(self):
        self.conn.close()

    @contextmanager
    def transaction(self, bump=True):
        """BEGIN IMMEDIATE ... COMMIT; a write transaction bumps the config version."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            if bump:
                self.conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def version(self):
        return self.conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0]

    def node_id(self, name):
        """The node's id, created on first start and kept across restarts."""
        with self.transaction(bump=False):
            row = self.conn.execute("SELECT id FROM nodes WHERE name = ?", (name,)).fetchone()
            if row:
                return row[0]
            node_id = str(uuid.uuid4())
            self.conn.execute("INSERT INTO nodes (name, id) VALUES (?, ?)", (name, node_id))
            return node_id

    # -- reads ---------------------------------------------------------------------------------------------

    @staticmethod
    def _load(row):
        return json.loads(row[0]) if row else None

    def get_by_id(self, kind, ws, entity_id):
        row = self.conn.execute("SELECT body FROM entities WHERE id = ? AND kind = ? AND ws = ?", (entity_id, kind, ws)).fetchone()
        return self._load(row)

    def get_by_uniq(self, kind, ws, uniq):
        row = self.conn.execute("SELECT body FROM entities WHERE kind = ? AND ws = ? AND uniq = ?", (kind, ws, uniq)).fetchone()
        return self._load(row)

    def get_by_field(self, kind, ws, field, value, exclude_id=None):  # pylint: disable=too-many-arguments,too-many-positional-arguments
        """The entity of ``kind`` in ``ws`` whose body has ``field`` == ``value`` (a second unique field, like a
        consumer's ``custom_id``); ``exclude_id`` is left out."""
        row = self.conn.execute("SELECT body FROM entities WHERE kind = ? AND ws = ? AND json_extract(body, ?) = ? AND id != ? LIMIT 1",
                                (kind, ws, "$." + field, value, exclude_id or "")).fetchone()
        return self._load(row)

    def id_taken(self, entity_id):
        """Whether any entity has this id (the primary key)."""
        return self.conn.execute("SELECT 1 FROM entities WHERE id = ?", (entity_id,)).fetchone() is not None

    def count_children(self, kind, parent):
        return self.conn.execute("SELECT COUNT(*) FROM entities WHERE kind = ? AND parent = ?", (kind, parent)).fetchone()[0]

    def children(self, kind, parent):
        rows = self.conn.execute("SELECT body FROM entities WHERE kind = ? AND parent = ? ORDER BY created_at DESC, id DESC",
                                 (kind, parent)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def page_top(self, kind, ws, size, after=None, predicate=None):
        """Top-level list ordered by id; returns (items, last_id_or_None)."""
        sql = "SELECT id, body FROM entities WHERE kind = ? AND ws = ?"
        args = [kind, ws]
        if after is not None:
            sql += " AND id > ?"
            args.append(after)
        sql += " ORDER BY id"
        if predicate is None:
            sql += " LIMIT ?"
            args.append(size + 1)
        items = []
        for row in self.conn.execute(sql, args):
            entity = json.loads(row[1])
            if predicate is not None and not predicate(entity):
                continue
            items.append(entity)
            if len(items) > size:
                break
        if len(items) > size:
            items = items[:size]
            return items, items[-1]["id"]
        return items, None

    def page_children(self, kind, parent, size, after=None):
        """Nested list, newest first; returns (items, cursor_or_None) with cursor = [created_at, id]."""
        sql = "SELECT created_at, id, body FROM entities WHERE kind = ? AND parent = ?"
        args = [kind, parent]
        if after is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            args += [after[0], after[0], after[1]]
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(size + 1)
        rows = self.conn.execute(sql, args).fetchall()
        if len(rows) > size:
            rows = rows[:size]
            return [json.loads(r[2]) for r in rows], [rows[-1][0], rows[-1][1]]
        return [json.loads(r[2]) for r in rows], None

    def all_entities(self):
        """Every entity as (kind, ws, body) for a node's config snapshot."""
        return [(r[0], r[1], json.loads(r[2])) for r in self.conn.execute("SELECT kind, ws, body FROM entities")]

    # -- writes (call inside transaction()) ----------------------------------------------------------------

    def insert(self, kind, ws, entity, uniq=None, parent=None):
        try:
            self.conn.execute("INSERT INTO entities (id, kind, ws, uniq, parent, created_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (entity["id"], kind, ws, uniq, parent, float(entity["created_at"]), json.dumps(entity)))
        except sqlite3.IntegrityError as exc:
            raise UniqueConflict(str(exc)) from exc

    def update(self, kind, ws, entity, uniq=None, parent=None):
        try:
            self.conn.execute("UPDATE entities SET body = ?, uniq = ?, parent = ? WHERE id = ? AND kind = ? AND ws = ?",
                              (json.dumps(entity), uniq, parent, entity["id"], kind, ws))
        except sqlite3.IntegrityError as exc:
            raise UniqueConflict(str(exc)) from exc

    def delete(self, kind, ws, entity_id):
        self.conn.execute("DELETE FROM entities WHERE id = ? AND kind = ? AND ws = ?", (entity_id, kind, ws))

    def delete_children(self, kind, parent):
        self.conn.execute("DELETE FROM entities WHERE kind = ? AND parent = ?", (kind, parent))

    def delete_all(self):
        self.conn.execute("DELETE FROM entities WHERE kind != 'workspaces'")

    # -- cluster events ------------------------------------------------------------------------------------

    def post_event(self, channel, body):
        self.conn.execute("INSERT INTO events (channel, body, at) VALUES (?, ?, ?)", (channel, json.dumps(body), time.time()))
        # keep the table small: events older than a minute have been seen by every live node
        self.conn.execute("DELETE FROM events WHERE at < ?", (time.time() - 60,))

    def last_event(self):
        row = self.conn.execute("SELECT MAX(seq) FROM events").fetchone()
        return row[0] or 0

    def events_after(self, seq):
        return [(r[0], r[1], json.loads(r[2])) for r in self.conn.execute(
            "SELECT seq, channel, body FROM events WHERE seq > ? ORDER BY seq", (seq,))]
