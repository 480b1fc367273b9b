"""Web metadata: reading meta/<source>/<query>.json, normalising records, the text scorers read.

A shard mixes samples from many queries, so the build first copies every query's records into an
on-disk index (SQLite, keyed by sample key) and each shard task looks up only its own keys. Memory
stays bounded by one query file, whatever the size of the dataset.
"""

import html
import json
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from wv.shards.keys import sample_key

# How a sample's metadata was found; kept in the manifest (column `meta`) for every sample.
META_OK = "ok"
META_NO_FILE = "missing meta file"
META_BAD_FILE = "malformed meta file"
META_NO_RECORD = "missing meta record"
META_BAD_RECORD = "malformed meta record"
META_NONE = "none"  # val images have no web metadata


def read_meta_file(path: Path):
    """-> (status, [(image_id, record dict)]). Never raises for bad content."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return META_NO_FILE, []
    try:
        records = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return META_BAD_FILE, []
    if isinstance(records, dict):  # tolerate {"images": [...]}-style wrappers
        lists = [v for v in records.values() if isinstance(v, list)]
        records = lists[0] if len(lists) == 1 else None
    if not isinstance(records, list):
        return META_BAD_FILE, []
    return META_OK, [(str(r["id"]), r) for r in records if isinstance(r, dict) and r.get("id") not in (None, "")]


def as_text(value) -> tuple[str, bool]:
    """A field as clean text; the flag says the field had an unusable type."""
    if value is None:
        return "", True
    if isinstance(value, str):
        return " ".join((html.unescape(value) if "&" in value else value).split()), True
    if isinstance(value, (int, float)):
        return str(value), True
    return "", False


def as_tags(value) -> tuple[list[str], bool]:
    """Flickr tags: a list in WebVision 1.0, a space- or comma-separated string in 2.0."""
    if value is None:
        return [], True
    if isinstance(value, str):
        return [t for t in re.split(r"[,\s]+", html.unescape(value)) if t], True
    if isinstance(value, list):
        return [as_text(t)[0] for t in value if as_text(t)[0]], all(isinstance(t, (str, int, float)) for t in value)
    return [], False


def normalise(record: dict | None, status: str) -> dict:
    """-> title, description, tags, url, text, status (the status drops to 'malformed record' on bad fields)."""
    record = record or {}
    title, ok_title = as_text(record.get("title"))
    description, ok_description = as_text(record.get("description"))
    tags, ok_tags = as_tags(record.get("tags"))
    url, _ = as_text(record.get("url") or record.get("page_url"))
    if status == META_OK and not (ok_title and ok_description and ok_tags):
        status = META_BAD_RECORD
    text = "\n".join(part for part in (title, description, " ".join(tags)) if part)
    return {"title": title, "description": description, "tags": tags, "url": url, "text": text, "meta": status}


class MetaIndex:
    """sample key -> raw meta record, plus each query file's status; one SQLite file on disk."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
            return
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is not fsynced (a killed process still loses nothing committed; only a
        # power cut can lose the last queries, which the next run then indexes again). FULL cost an
        # fsync per query file: ~10 ms each, 0.8 s of a 1.5 s build at 12,000 images.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, record TEXT) WITHOUT ROWID")
        self.db.execute("CREATE TABLE IF NOT EXISTS queries (source TEXT, query TEXT, status TEXT, PRIMARY KEY (source, query))")
        self.db.commit()

    def done_queries(self) -> set[tuple[str, str]]:
        return set(self.db.execute("SELECT source, query FROM queries"))

    def add_queries(self, results: Iterable[tuple[str, str, str, list[tuple[str, str]]]]) -> None:
        """Store query files' rows (index_query's results) and mark them done, in one transaction, so a
        kill loses nothing it committed and the next run indexes the rest again."""
        with self.db:
            for source, query, status, rows in results:
                self.db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?)", rows)
                self.db.execute("INSERT OR REPLACE INTO queries VALUES (?, ?, ?)", (source, query, status))

    def lookup(self, keys_with_queries: Iterable[tuple[str, str]]) -> dict[str, tuple[dict | None, str]]:
        """[(key, source, query)] -> {key: (record or None, status)}."""
        keys = [k for k, _, _ in keys_with_queries]
        found = {}
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT key, record FROM records WHERE key IN ({marks})", chunk))
        statuses = dict(((s, q), st) for s, q, st in self.db.execute("SELECT source, query, status FROM queries"))
        result = {}
        for key, source, query in keys_with_queries:
            status = statuses.get((source, query), META_NO_FILE)
            if key in found:
                result[key] = (json.loads(found[key]), META_OK)
            else:
                result[key] = (None, status if status != META_OK else META_NO_RECORD)
        return result

    def close(self) -> None:
        self.db.close()


def index_query(job: tuple) -> tuple[str, str, str, list[tuple[str, str]]]:
    """Pool task: read one query's meta file -> (source, query, status, [(sample key, record JSON)]).

    The keys and JSON are made here, in the worker: the driver that writes the index only inserts.
    """
    source, query, path = job
    status, records = read_meta_file(Path(path))
    return source, query, status, [(sample_key(source, query, i), json.dumps(r, ensure_ascii=False)) for i, r in records]
