"""The store's metadata: one SQLite database in WAL mode.

Writers use `Database.transaction()` (BEGIN IMMEDIATE: one writer at a time across
processes, the others wait up to busy_timeout); files to delete once the transaction
is committed are registered with `tx.after_commit(fn)`. Readers use `db.query` /
`db.query_one` (autocommit reads see the last committed state)."""
from __future__ import annotations

import _thread  # threading.RLock is _thread.RLock: importing threading costs a run more (measured)
import contextlib
import sqlite3

from pyrt.errors import PyrtError

# 1: images, layers, containers, build cache; 2: networks and their endpoints. A
# store of an older version gets the new tables when first opened (every statement
# of SCHEMA is CREATE ... IF NOT EXISTS), then its version is raised.
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30000

SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    chain_id      TEXT PRIMARY KEY,          -- sha256:..., also the snapshot dir name (hex)
    diff_id       TEXT NOT NULL,             -- sha256 of the uncompressed layer tar
    digest        TEXT NOT NULL,             -- a stored blob of this layer (compressed as shipped)
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,          -- size of that blob
    parent        TEXT REFERENCES layers(chain_id) DEFERRABLE INITIALLY DEFERRED,
    unpacked_size INTEGER NOT NULL DEFAULT 0, -- bytes of the uncompressed layer
    created       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id                  TEXT PRIMARY KEY,    -- sha256 of the config blob
    config              TEXT NOT NULL,       -- the config JSON (the blob's exact text)
    manifest_digest     TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    parent              TEXT REFERENCES images(id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    created             REAL NOT NULL,       -- config 'created' (seconds), else load time
    loaded              REAL NOT NULL,       -- when it entered this store
    size                INTEGER NOT NULL     -- sum of its layers' uncompressed sizes
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    position   INTEGER NOT NULL,             -- 0 = bottom
    chain_id   TEXT NOT NULL REFERENCES layers(chain_id) DEFERRABLE INITIALLY DEFERRED,
    digest     TEXT NOT NULL,                -- the blob this image's manifest names
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    PRIMARY KEY (image_id, position)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE INDEX IF NOT EXISTS image_layers_digest ON image_layers(digest);
CREATE INDEX IF NOT EXISTS images_parent ON images(parent);
CREATE TABLE IF NOT EXISTS tags (
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    image_id   TEXT NOT NULL REFERENCES images(id) DEFERRABLE INITIALLY DEFERRED,
    created    REAL NOT NULL,
    PRIMARY KEY (repository, tag)
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS containers (
    id       TEXT PRIMARY KEY CHECK (length(id) = 64),
    name     TEXT UNIQUE,
    image_id TEXT REFERENCES images(id),
    created  REAL,
    config   TEXT,
    state    TEXT
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
-- reference counts of layers: how many images use each snapshot
CREATE VIEW IF NOT EXISTS layer_refcounts AS
    SELECT l.chain_id AS chain_id, COUNT(il.image_id) AS refs
    FROM layers l LEFT JOIN image_layers il ON il.chain_id = l.chain_id GROUP BY l.chain_id;
-- pyrt build's cache: the image a build step made, by the sha256 of its parent image,
-- its text, build args and sources; rows go with either image
CREATE TABLE IF NOT EXISTS build_cache (
    key      TEXT PRIMARY KEY,
    parent   TEXT REFERENCES images(id) ON DELETE CASCADE,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    created  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
CREATE INDEX IF NOT EXISTS build_cache_parent ON build_cache(parent);
-- registry repositories known to hold a blob (pulled from or pushed to): push mounts
-- a blob from one of them instead of uploading it again
-- networks (pyrt/network): their settings as JSON (subnet, gateway, bridge, ...)
CREATE TABLE IF NOT EXISTS networks (
    id      TEXT PRIMARY KEY CHECK (length(id) = 64),
    name    TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    config  TEXT NOT NULL
);
-- a container's address on a network while it is wired to it (its lease): made
-- before the CNI plugins run, dropped once they have undone their work; `holder`
-- is the pyrt process wiring it ("pid:start time"), so that a lease a killed
-- process left is found and undone (pyrt/network/endpoints.py)
CREATE TABLE IF NOT EXISTS endpoints (
    container_id TEXT NOT NULL,
    network_id   TEXT NOT NULL REFERENCES networks(id),
    ifname       TEXT NOT NULL,
    ip           TEXT NOT NULL,
    holder       TEXT NOT NULL DEFAULT '',
    info         TEXT NOT NULL DEFAULT '{}',
    created      REAL NOT NULL,
    PRIMARY KEY (container_id, network_id),
    UNIQUE (network_id, ip)
);
CREATE TABLE IF NOT EXISTS blob_sources (
    digest     TEXT NOT NULL,
    registry   TEXT NOT NULL,                -- host[:port] as in the reference
    repository TEXT NOT NULL,                -- the path inside that registry
    PRIMARY KEY (digest, registry, repository)
);
"""


# What SCHEMA's statements create (each name follows IF NOT EXISTS).
SCHEMA_NAMES = frozenset(part.split(None, 1)[0] for part in SCHEMA.split("IF NOT EXISTS")[1:])


class Transaction:
    """A write transaction: `execute`, `query`, `query_one`, `after_commit`."""

    def __init__(self, conn):
        self.conn = conn
        self._after = []

    def execute(self, sql, params=()):
        return self.conn.execute(sql, params)

    def executemany(self, sql, seq):
        return self.conn.executemany(sql, seq)

    def query(self, sql, params=()):
        return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql, params=()):
        return self.conn.execute(sql, params).fetchone()

    def after_commit(self, fn):
        self._after.append(fn)


class Database:
    def __init__(self, path: str):
        self.path = path
        self._lock = _thread.RLock()
        self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":  # e.g. a filesystem without shared memory: still correct
            pass
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA foreign_keys = ON")
        if c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION and \
                SCHEMA_NAMES <= {row[0] for row in c.execute("SELECT name FROM sqlite_master")}:
            # every table, index and view of SCHEMA is there (a table added to it since the
            # store was made is not): its statements would change nothing, and would take
            # the write lock that every other pyrt process on the store waits for
            return
        with self.transaction() as tx:
            version = tx.query_one("PRAGMA user_version")[0]
            if version > SCHEMA_VERSION:
                raise PyrtError(f"store database {path} has schema version {version}, newer than "
                                f"this pyrt ({SCHEMA_VERSION}): upgrade pyrt")
            for stmt in _statements(SCHEMA):
                tx.execute(stmt)
            if version < SCHEMA_VERSION:
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on an exception. Callbacks registered
        with `after_commit` run after a successful commit (errors in them ignored)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._conn)
            try:
                yield tx
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
        for fn in tx._after:
            try:
                fn()
            except Exception:
                pass

    def query(self, sql, params=()):
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql, params=()):
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def dump(self) -> dict:
        """Every row of every table (for tests and debugging)."""
        out = {}
        with self._lock:
            names = [r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            for n in names:
                out[n] = sorted(tuple(r) for r in self._conn.execute(f'SELECT * FROM "{n}"'))
        return out

    def close(self):
        with self._lock:
            self._conn.close()


def _statements(script: str):
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()
