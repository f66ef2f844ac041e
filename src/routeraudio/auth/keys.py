"""Router API keys: ``router_<id>_<secret>``, stored only as SHA-256 digests in SQLite.

The public ``id`` (8 hex characters) finds the row; the digest of the whole key is compared in
constant time. The full key is shown once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "router_"
_ID_HEX = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    revoked REAL,
    max_sessions INTEGER
);
"""


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """The router's SQLite database (WAL, autocommit), with ``schema`` applied. Shared by the worker
    processes of one router: workers started together open a new database at once, and switching
    it to WAL takes a lock that SQLite's busy timeout does not wait for ("database is locked"), so
    that step is retried for a while."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    deadline = time.monotonic() + 10.0
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: commits are durable at checkpoints, not fsynced
            db.executescript(schema)
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.05)


def is_router_key(key: str) -> bool:
    return key.startswith(KEY_PREFIX)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    created: float
    revoked: float | None
    max_sessions: int | None

    @property
    def active(self) -> bool:
        return self.revoked is None


class KeyStore:
    """SQLite-backed key store. Each call opens nothing new: one connection, autocommit."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = open_database(self.path, _SCHEMA)
        # The database holds digests only, but its owner alone should read it.
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def close(self) -> None:
        self._db.close()

    def create(self, name: str = "", max_sessions: int | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns its record and the full key (shown once, never stored)."""
        while True:
            key_id = secrets.token_hex(_ID_HEX // 2)
            full = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            try:
                self._db.execute(
                    "INSERT INTO api_keys (id, digest, name, created, max_sessions) VALUES (?,?,?,?,?)",
                    (key_id, _digest(full), name, time.time(), max_sessions))
            except sqlite3.IntegrityError:
                continue  # id collision: draw again
            return self.get(key_id), full

    def get(self, key_id: str) -> ApiKey | None:
        row = self._db.execute(
            "SELECT id, name, created, revoked, max_sessions FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return ApiKey(*row) if row else None

    def list(self) -> list[ApiKey]:
        rows = self._db.execute(
            "SELECT id, name, created, revoked, max_sessions FROM api_keys ORDER BY created").fetchall()
        return [ApiKey(*r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        cur = self._db.execute(
            "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id))
        return cur.rowcount == 1

    def verify(self, key: str) -> ApiKey | None:
        """The active key record for a full router key, or None. Constant-time digest comparison."""
        if not is_router_key(key) or len(key) > 200:
            return None
        key_id = key[len(KEY_PREFIX):len(KEY_PREFIX) + _ID_HEX]
        row = self._db.execute(
            "SELECT digest, revoked FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        # Compare against a dummy digest when the id is unknown, so timing does not tell ids apart.
        stored = row[0] if row else b"\0" * 32
        if not hmac.compare_digest(stored, _digest(key)) or row is None or row[1] is not None:
            return None
        return self.get(key_id)
