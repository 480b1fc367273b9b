"""The dataset root: one folder holding everything wv makes for one dataset (see DESIGN.md).

ROOT/wv.json  shards/{split}-{NNNNNN}.tar  manifest.parquet  shards.parquet  rejects.parquet
ROOT/meta/{shard}.parquet  scores/{name}/{shard}.parquet  features/{name}/{shard}.npy
ROOT/models/{name}/  reports/  .build/ (the build's per-shard ledger, and the writers' lock)
"""

import json
import re
from pathlib import Path

import polars as pl

from wv.errors import WvError, damaged_root

FORMAT = "wv-root/1"
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def check_name(name: str, option: str = "--name") -> str:
    """A name that becomes one folder under the root: letters, digits, `_`, `-` and `.`, not starting with a dot."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise WvError(f"{option} {name!r} is not a plain folder name; use letters, digits, '_', '-' and '.' (not first), with no slash")
    return name


class Root:
    def __init__(self, path):
        self.path = Path(path)

    # -- paths -------------------------------------------------------------------------------
    @property
    def info_path(self) -> Path:
        return self.path / "wv.json"

    @property
    def shards_dir(self) -> Path:
        return self.path / "shards"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.parquet"

    @property
    def shards_table_path(self) -> Path:
        return self.path / "shards.parquet"

    @property
    def rejects_path(self) -> Path:
        return self.path / "rejects.parquet"

    def shard_path(self, shard: str) -> Path:
        return self.shards_dir / f"{shard}.tar"

    def meta_path(self, shard: str) -> Path:
        return self.path / "meta" / f"{shard}.parquet"

    def score_path(self, name: str, shard: str) -> Path:
        return self.path / "scores" / check_name(name) / f"{shard}.parquet"

    def features_path(self, name: str, shard: str) -> Path:
        return self.path / "features" / check_name(name) / f"{shard}.npy"

    def model_dir(self, name: str) -> Path:
        return self.path / "models" / check_name(name)

    @property
    def reports_dir(self) -> Path:
        return self.path / "reports"

    def build_dir(self, split: str) -> Path:
        return self.path / ".build" / split

    @property
    def lock_path(self) -> Path:
        """The writers' lock (wv.shards.lock): one command at a time writes under the root."""
        return self.path / ".build" / "lock"

    # -- contents ----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.info_path.is_file()

    def info(self) -> dict:
        if not self.info_path.is_file():
            raise WvError(f"{self.path} is not a wv dataset root (no wv.json); create one with `wv shard build`")
        try:
            info = json.loads(self.info_path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise WvError(f"{self.info_path} is not valid JSON; the root is damaged") from None
        except OSError as error:
            raise WvError(f"cannot read {self.info_path} ({error.strerror}); the root is damaged") from None
        problem = info_problem(info)
        if problem:
            raise WvError(f"{self.info_path} is not a wv.json of a dataset root ({problem}); the root is damaged")
        return info

    def classes(self) -> list[dict]:
        return self.info()["classes"]

    def shards(self, split: str | None = None) -> pl.DataFrame:
        """One row per shard: name, split, samples, bytes, sha256 (in shard order)."""
        self.info()
        if not self.shards_table_path.is_file():
            raise WvError(f"{self.path} has no shards.parquet; its build has not finished (re-run `wv shard build` to finish it)")
        try:
            table = pl.read_parquet(self.shards_table_path)
        except (pl.exceptions.PolarsError, OSError) as error:
            raise damaged_root(self.shards_table_path, error) from None
        if split is not None:
            table = table.filter(pl.col("split") == split)
        return table.sort("name")

    def shard_names(self, split: str | None = None) -> list[str]:
        return self.shards(split)["name"].to_list()

    def manifest(self, split: str | None = None) -> pl.LazyFrame:
        self.info()
        if not self.manifest_path.is_file():
            raise WvError(f"{self.path} has no manifest.parquet; its build has not finished")
        try:
            pl.read_parquet_schema(self.manifest_path)  # the footer: a garbage or cut file fails here, in one sentence
        except (pl.exceptions.PolarsError, OSError) as error:
            raise damaged_root(self.manifest_path, error) from None
        scan = pl.scan_parquet(self.manifest_path)
        return scan if split is None else scan.filter(pl.col("split") == split)

    def rejects(self) -> pl.DataFrame:
        if not self.rejects_path.is_file():
            return pl.DataFrame()
        try:
            return pl.read_parquet(self.rejects_path)
        except (pl.exceptions.PolarsError, OSError) as error:
            raise damaged_root(self.rejects_path, error) from None


def info_problem(info) -> str | None:
    """What is wrong with the shape of a parsed wv.json (None: nothing): an object holding a list of
    classes {label, synset, names} with distinct labels, and splits as an object of objects."""
    if not isinstance(info, dict):
        return f"it holds a JSON {type(info).__name__}, not an object"
    classes = info.get("classes")
    if not isinstance(classes, list):
        return "no list of classes"
    for c in classes:
        if not (isinstance(c, dict) and type(c.get("label")) is int and c["label"] >= 0 and isinstance(c.get("synset"), str) and isinstance(c.get("names"), str)):
            return f"class {str(c)[:60]} is not {{label, synset, names}}"
    if len({c["label"] for c in classes}) != len(classes):
        return "two classes share a label"
    splits = info.get("splits", {})
    if not isinstance(splits, dict) or not all(isinstance(v, dict) and isinstance(v.get("options"), dict) for v in splits.values()):
        return "its splits are not an object of {options, ...} objects"
    return None
