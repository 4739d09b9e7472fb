"""Two-level evaluation cache (generations, judgements; embeddings too) in one SQLite file, syncable to S3.

Keys are SHA-256 digests of canonical JSON of everything that decides the cached value, so changing any
of it (model, an inference parameter, the prompt text, the judge prompt version...) is a miss, and an
unchanged input is a hit that costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalgate.core.errors import InputError
from evalgate.core.inputs import output_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (kind, key)
)
"""


def digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def pack_vector(vector: Sequence[float]) -> dict[str, str]:
    """A vector as the cache stores it: its float64s, little-endian, in base64 — exact, and about 5 times cheaper
    to write and read back than a JSON list of numbers (an embedding entry is written once per call)."""
    a = array("d", vector)
    if sys.byteorder != "little":
        a.byteswap()
    return {"f64": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack_vector(value: dict[str, Any]) -> list[float] | None:
    """The vector of a cache entry (``pack_vector``'s, or the JSON list older versions wrote), or None when the
    entry holds none (a miss: the text is embedded again)."""
    packed = value.get("f64")
    if isinstance(packed, str):
        try:
            raw = base64.b64decode(packed, validate=True)
        except (binascii.Error, ValueError):
            return None
        if not raw or len(raw) % 8:
            return None
        a = array("d")
        a.frombytes(raw)
        if sys.byteorder != "little":
            a.byteswap()
        return a.tolist()
    listed = value.get("v")
    if isinstance(listed, list) and listed and all(isinstance(x, (int, float)) for x in listed):
        return [float(x) for x in listed]
    return None


class Cache:
    """Thread-safe SQLite cache. ``Cache(None)`` is an in-memory cache (nothing persisted)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        if self.path:
            output_file(self.path, "--cache")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
            with self._lock:
                if self.path:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    # A write-ahead log synced at checkpoints, not at every commit: a crash can lose the last
                    # entries (a miss on the next run), never corrupt the file; a run writes one entry per call.
                    self._conn.execute("PRAGMA synchronous=NORMAL")
                    check = self._conn.execute("PRAGMA quick_check(1)").fetchone()
                    if check and check[0] != "ok":
                        raise sqlite3.DatabaseError(str(check[0]))
                self._conn.execute(SCHEMA)
                self._conn.execute("SELECT kind, key, value, created FROM entries LIMIT 0")
                self._conn.commit()
        except sqlite3.Error as exc:
            raise InputError.single(
                f"--cache {self.path}",
                None,
                f"not a usable evalgate cache (SQLite: {exc}); delete the file or point --cache elsewhere",
            ) from None
        self.hits = 0
        self.misses = 0

    def get(self, kind: str, key: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM entries WHERE kind=? AND key=?", (kind, digest(key))).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        value: dict[str, Any] = json.loads(row[0])
        return value

    def put(self, kind: str, key: dict[str, Any], value: dict[str, Any]) -> None:
        data = json.dumps(value, sort_keys=True, default=str)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO entries (kind, key, value, created) VALUES (?, ?, ?, ?)",
                (kind, digest(key), data, time.time()),
            )
            self._conn.commit()

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind:
                return int(self._conn.execute("SELECT COUNT(*) FROM entries WHERE kind=?", (kind,)).fetchone()[0])
            return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self.path:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"not an s3://bucket/key URL: {url}")
    bucket, key = url[5:].split("/", 1)
    if not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URL: {url}")
    return bucket, key


def pull_from_s3(s3: Any, url: str, path: Path) -> bool:
    """Download the shared cache file if it exists. Returns False when there is none yet."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_url(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cache-dl-")
    os.close(fd)
    try:
        s3.download_file(bucket, key, tmp)
    except ClientError as exc:
        os.unlink(tmp)
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    os.replace(tmp, path)
    return True


def push_to_s3(s3: Any, url: str, path: Path) -> None:
    """Upload the cache file (after ``Cache.close()`` checkpointed it)."""
    bucket, key = parse_s3_url(url)
    s3.upload_file(str(path), bucket, key)
