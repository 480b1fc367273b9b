"""The WebVision on-disk layout (1.0 and 2.0), read as tables.

1.0: info/ lists, images under google/q0001/, flickr/q0001/, val images under val_images_256/ (or
     val_images_resized/), meta/google/q0001.json; queries_synsets_map.txt maps query -> class, 1-based.
2.0: the same info/ file names, 5-digit query folders (q00001) under
     train_images_256/google_images_resized/, 0-based query map, Flickr tags sometimes a string.

File lists are read with polars (never one Python object per line), a chunk at a time, into compact
rows (categorical source, query and extension), so a 16M-line list needs well under 1 GB.
numpy is imported where the plan needs it: the shard workers import this module, and only their full
check (simplejpeg) needs numpy.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from wv.errors import WvError
from wv.shards.keys import with_keys
from wv.shards.options import SOURCES

if TYPE_CHECKING:
    import numpy as np

TRAIN_DIR_CANDIDATES = ("", "train_images_256", "train_images_resized", "train_images", "train")
VAL_DIR_CANDIDATES = ("val_images_256", "val_images_resized", "val_images", "val", "")
SOURCE_DIR_SUFFIXES = ("", "_images_resized", "_resized_256", "_resized", "_images")
LIST_LINE = r"^\s*(\S(?:.*\S)?)\s+(-?\d+)\s*$"
LIST_CHUNK_BYTES = 4 << 20  # about 110,000 lines parsed at a time: bounds the transient memory


@dataclass(frozen=True)
class ClassInfo:
    label: int
    synset: str
    names: str


def read_synsets(path: Path) -> list[ClassInfo]:
    """synsets.txt: one `<wnid> <names>` per line; the line number (0-based) is the label."""
    if not path.is_file():
        raise WvError(f"{path} is missing; a WebVision root has info/synsets.txt")
    classes = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines()):
        if not line.strip():
            continue
        synset, _, names = line.strip().partition(" ")
        classes.append(ClassInfo(len(classes), synset, names.strip() or synset))
        if len(classes) != number + 1:
            raise WvError(f"{path} has a blank line before line {number + 1}; labels are line numbers, so it is ambiguous")
    if not classes:
        raise WvError(f"{path} lists no classes")
    return classes


def read_query_map(path: Path) -> dict[int, int]:
    """queries_synsets_map.txt: `<query id> <class>` -> {query id: 0-based label}.

    WebVision 1.0 numbers classes from 1, 2.0 from 0; the base is the smallest class number seen.
    """
    if not path.is_file():
        return {}
    pairs = []
    for line in path.read_text(encoding="utf-8-sig", errors="replace").split("\n"):
        fields = line.split()
        if len(fields) < 2:
            continue
        try:
            pairs.append((int(fields[0]), int(fields[1])))
        except ValueError:
            raise WvError(f"{path} has a line that is not two integers: {line.strip()!r}") from None
    if not pairs:
        return {}
    base = min(label for _, label in pairs)
    if base not in (0, 1):
        raise WvError(f"{path} numbers classes from {base}; expected 0 (WebVision 2.0) or 1 (WebVision 1.0)")
    return {query: label - base for query, label in pairs}


def read_queries(path: Path) -> dict[int, str]:
    """queries_<source>.txt: `<query id> <query text>` per line (or the text alone; line number = id)."""
    if not path.is_file():
        return {}
    queries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        head, _, rest = line.strip().partition(" ")
        if head.isdigit() and rest:
            queries[int(head)] = rest.strip()
        elif line.strip():
            queries[number] = line.strip()
    return queries


def query_folder(query_id: int, version: str) -> str:
    return f"q{query_id:05d}" if version == "2.0" else f"q{query_id:04d}"


def query_id(folder: str) -> int:
    return int(folder.lstrip("q"))


def read_file_list(path: Path, chunk_bytes: int = LIST_CHUNK_BYTES) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A `<relative path> <label>` list -> (entries[line, rel_path, label], bad lines[line, text])."""
    parts = [parse_list_lines(data, first) for first, data in list_chunks(path, chunk_bytes)]
    return pl.concat([good for good, _ in parts]), pl.concat([bad for _, bad in parts])


def list_chunks(path: Path, chunk_bytes: int = LIST_CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """A file in pieces of about chunk_bytes that end at a line end, each with its first line's number."""
    line, rest = 1, b""
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
            if data:
                yield line, data
                line += data.count(b"\n")
    if rest or line == 1:  # the unterminated last line; an empty file is one empty chunk
        yield line, rest


def parse_list_lines(data: bytes, first_line: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lines of a file list -> (entries[line, rel_path, label], bad lines[line, text]); blank lines are skipped."""
    lines = (
        pl.read_csv(
            io.BytesIO(data),
            has_header=False,
            separator="\x1f",
            quote_char=None,
            new_columns=["text"],
            schema_overrides={"text": pl.String},
            truncate_ragged_lines=True,
            encoding="utf8-lossy",
        )
        if data.strip()
        else pl.DataFrame({"text": []}, schema={"text": pl.String})
    )
    lines = lines.with_row_index("line", offset=first_line).filter(pl.col("text").str.strip_chars() != "")
    parsed = lines.with_columns(pl.col("text").str.extract_groups(LIST_LINE).struct.rename_fields(["rel_path", "label"]).alias("parts"))
    parsed = parsed.unnest("parts")
    bad = parsed.filter(pl.col("rel_path").is_null()).select("line", "text")
    good = parsed.filter(pl.col("rel_path").is_not_null()).select("line", "rel_path", pl.col("label").cast(pl.Int64))
    return good, bad


def source_name(folder: str) -> str:
    """google_images_resized -> google (2.0 folder names), google -> google."""
    for suffix in SOURCE_DIR_SUFFIXES[1:]:
        if folder.endswith(suffix):
            return folder[: -len(suffix)]
    return folder


def split_rel_paths(entries: pl.DataFrame, split: str) -> pl.DataFrame:
    """rel_path -> source, query, file, image_id: `[...]/google/q0001/ID.jpg` (train) or `valNNN.jpg` (val).

    A train path without a source folder and a query folder before its file name gets nulls.
    """
    if split == "val":
        file = pl.col("rel_path").str.split("/").list.last()
        entries = entries.with_columns(pl.lit("val").alias("source"), pl.lit("").alias("query"), file.alias("file"))
    else:
        parts = entries["rel_path"].str.split("/")
        last = {name: parts.list.get(i, null_on_oob=True) for name, i in (("folder", -3), ("query", -2), ("file", -1))}
        whole = pl.all_horizontal([pl.col(name).is_not_null() & (pl.col(name) != "") for name in ("folder", "query")])
        entries = entries.with_columns(**last).with_columns([pl.when(whole).then(pl.col(name)).alias(name) for name in last])
        names = {folder: source_name(folder) for folder in entries["folder"].unique().drop_nulls().to_list()}
        entries = entries.with_columns(pl.col("folder").replace_strict(names, default=None, return_dtype=pl.String).alias("source")).drop("folder")
    return entries.with_columns(pl.col("file").str.replace(r"\.[^.]*$", "").alias("image_id"))


@dataclass
class WebVision:
    """A WebVision download on disk."""

    root: Path
    classes: list[ClassInfo]
    query_map: dict[int, int]
    version: str

    @property
    def info(self) -> Path:
        return self.root / "info"

    def list_path(self, split: str, source: str) -> Path:
        return self.info / ("val_filelist.txt" if split == "val" else f"train_filelist_{source}.txt")

    def available_sources(self) -> list[str]:
        return [s for s in SOURCES if self.list_path("train", s).is_file()]

    def meta_path(self, source: str, query: str) -> Path:
        return self.root / "meta" / source / f"{query}.json"

    def query_texts(self) -> dict[str, dict[str, str]]:
        return {source: {query_folder(q, self.version): text for q, text in read_queries(self.info / f"queries_{source}.txt").items()} for source in SOURCES}


def open_webvision(root: str | Path) -> WebVision:
    root = Path(root)
    if not root.is_dir():
        raise WvError(f"{root} is not a folder")
    if not (root / "info").is_dir():
        raise WvError(f"{root} has no info/ folder; point wv at the WebVision root (the folder that holds info/, meta/ and the images)")
    classes = read_synsets(root / "info" / "synsets.txt")
    query_map = read_query_map(root / "info" / "queries_synsets_map.txt")
    return WebVision(root, classes, query_map, detect_version(root, classes))


def detect_version(root: Path, classes: list[ClassInfo]) -> str:
    """2.0 has 5-digit query folders and 5,000 classes; 1.0 4-digit folders and 1,000."""
    for source in SOURCES:
        path = root / "info" / f"train_filelist_{source}.txt"
        if path.is_file():
            with path.open(encoding="utf-8-sig", errors="replace") as f:
                first = f.readline()
            match = re.search(r"/q(\d+)/", first)
            if match:
                return "2.0" if len(match.group(1)) == 5 else "1.0"
    return "2.0" if len(classes) > 1000 else "1.0"


def list_entries(wv: WebVision, split: str, sources: Sequence[str] | None, chunk_bytes: int = LIST_CHUNK_BYTES) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All entries of a split's file lists -> (entries, rejects).

    entries: one compact row per usable list line, in list order (COMPACT; entry_rows expands them),
    one polars chunk per chunk of a list: whole-frame operations would copy 16M rows;
    rejects: list, line, rel_path, reason for each line that cannot be used. The lists are parsed
    chunk_bytes at a time and only a 64-bit hash of each key is kept to find duplicates, so the
    transient memory is one chunk's, not the whole list's.
    """
    paths = [wv.list_path(split, source) for source in (["val"] if split == "val" else list(sources))]
    if not paths:
        raise WvError(f"{wv.info} has no train file list (train_filelist_google.txt or train_filelist_flickr.txt)")
    for path in paths:
        if not path.is_file():
            raise WvError(f"{path} is missing; use --sources to build only the sources you have")
    chunks, hashes, rejects = [], [], []
    for number, path in enumerate(paths):
        for first_line, data in list_chunks(path, chunk_bytes):
            entries, chunk_rejects = parse_chunk(data, first_line, split, len(wv.classes), path.name)
            rejects.extend(chunk_rejects)
            hashes.append(key_hashes(with_keys(entries)))
            chunks.append(ListChunk(number, first_line, entries.select(*COMPACT)))
    import numpy as np

    masks = later_duplicates(chunks, np.concatenate(hashes))
    if masks:
        rejects.append(duplicate_rejects(chunks, masks, paths, split, len(wv.classes), chunk_bytes))
        chunks = [ListChunk(c.list, c.first_line, c.entries.filter(pl.Series(~m))) for c, m in zip(chunks, masks)]
    return concat_chunks(chunks), pl.concat(rejects)


def parse_chunk(data: bytes, first_line: int, split: str, n_classes: int, list_name: str) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """A chunk of a list -> (its usable entries with line and rel_path, its rejects)."""
    good, bad = parse_list_lines(data, first_line)
    entries = split_rel_paths(good, split).with_columns(pl.col("source").fill_null(""), pl.col("query").fill_null(""))
    entries, rejects = check_entries(entries, n_classes, list_name, split)
    return entries, [reject_rows(bad.rename({"text": "rel_path"}), list_name, "unparseable list line"), *rejects]


@dataclass
class ListChunk:
    list: int  # which of the split's lists
    first_line: int
    entries: pl.DataFrame  # COMPACT rows


COMPACT = (  # a plan row: source, query, image_id, ext, label
    pl.col("source").cast(pl.Categorical),
    pl.col("query").cast(pl.Categorical),
    "image_id",
    pl.col("file").str.extract(r"(\.[^.]*)$", 1).fill_null("").cast(pl.Categorical).alias("ext"),
    pl.col("label").cast(pl.Int32),
)


def concat_chunks(chunks: list[ListChunk]) -> pl.DataFrame:
    return pl.concat([c.entries for c in chunks], rechunk=False)


def entry_rows(entries: pl.DataFrame) -> pl.DataFrame:
    """Compact entries -> __key__, source, query, image_id, file, label (as strings where they are text)."""
    rows = entries.select(
        pl.col("source").cast(pl.String),
        pl.col("query").cast(pl.String),
        "image_id",
        pl.concat_str("image_id", pl.col("ext").cast(pl.String)).alias("file"),
        "label",
    )
    return with_keys(rows).select("__key__", "source", "query", "image_id", "file", "label")


def check_entries(entries: pl.DataFrame, n_classes: int, list_name: str, split: str) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Drop the entries that no shard can hold -> (the rest, their rejects).

    A path that is absolute or goes up (`..`) is never read, whatever its last parts say.
    """
    goes_up = pl.col("rel_path").str.starts_with("/") | pl.col("rel_path").str.contains(r"(?:^|/)\.\.(?:/|$)")
    checks = [
        (goes_up, "list path is absolute or goes up (..)"),
        (pl.col("source") == "", "list path has no source/query folders"),
        (pl.lit(split == "train") & ~pl.col("source").is_in(SOURCES), f"list path is not under a {' or '.join(SOURCES)} folder"),
        (pl.col("file").fill_null("") == "", "list path has no file name"),
        ((pl.col("label") < 0) | (pl.col("label") >= n_classes), f"label outside 0..{n_classes - 1}"),
    ]
    rejects = []
    for condition, reason in checks:
        bad = entries.filter(condition)
        if bad.height:
            rejects.append(reject_rows(bad, list_name, reason))
            entries = entries.filter(condition.not_())
    return entries, rejects


def reject_rows(bad: pl.DataFrame, list_name: str, reason: str) -> pl.DataFrame:
    return bad.select(pl.lit(list_name).alias("list"), pl.col("line").cast(pl.Int64), "rel_path", pl.lit(reason).alias("reason"))


def key_hashes(rows: pl.DataFrame) -> np.ndarray:
    return rows["__key__"].hash(seed=0).to_numpy()


def later_duplicates(chunks: list[ListChunk], hashes: np.ndarray) -> list[np.ndarray] | None:
    """Per chunk, a mask of the entries whose key an earlier entry already has; None if no key repeats.

    hashes (of every entry's key) is sorted in place. Equal hashes only make entries candidates:
    their keys, made again chunk by chunk, are compared in full.
    """
    import numpy as np

    hashes.sort()
    repeated = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    if not repeated.size:
        return None
    where, keys = [], []
    for chunk in chunks:
        rows = entry_rows(chunk.entries)
        where.append(np.flatnonzero(np.isin(key_hashes(rows), repeated)))
        keys.append(rows["__key__"].gather(where[-1]))
    later = ~pl.concat(keys).is_first_distinct().to_numpy()
    masks, start = [], 0
    for chunk, hit in zip(chunks, where):
        masks.append(np.zeros(chunk.entries.height, dtype=bool))
        masks[-1][hit] = later[start : start + hit.size]
        start += hit.size
    return masks


def duplicate_rejects(chunks: list[ListChunk], masks: list[np.ndarray], paths: list[Path], split: str, n_classes: int, chunk_bytes: int) -> pl.DataFrame:
    """Rejects for duplicate entries: their chunks parsed again give their lines and paths."""
    wanted = {(c.list, c.first_line): m for c, m in zip(chunks, masks) if m.any()}
    frames = []
    for number, path in enumerate(paths):
        for first_line, data in list_chunks(path, chunk_bytes):
            mask = wanted.get((number, first_line))
            if mask is not None:
                entries = parse_chunk(data, first_line, split, n_classes, path.name)[0]
                frames.append(reject_rows(entries.filter(pl.Series(mask)), path.name, "duplicate entry"))
    return pl.concat(frames)


def resolve_image_dirs(wv: WebVision, entries: pl.DataFrame, split: str, images_dir: str | None = None) -> dict[str, str]:
    """Find, per source, the folder (relative to the WebVision root) that its list paths are under.

    The lists say `google/q0001/x.jpg`; on disk that may be google/q0001 (1.0),
    train_images_256/google_images_resized/q00001 (2.0) or a folder the user names with --images-dir.
    Returns {source: prefix} where the image of an entry is root / prefix / query / file.
    """
    bases = [images_dir] if images_dir else (VAL_DIR_CANDIDATES if split == "val" else TRAIN_DIR_CANDIDATES)
    found = {}
    for source in sorted(entries["source"].unique().cast(pl.String).to_list()):
        probe = entry_rows(entries.lazy().filter(pl.col("source") == source).head(50).collect())
        found[source] = find_prefix(wv.root, probe, source, bases, split)
        if found[source] is None:
            looked = ", ".join(str(Path(b) / (source if split != "val" else "")) for b in bases)
            hint = "--images-dir" if split == "val" else "--sources or --images-dir"
            raise WvError(f"no {source} images of the {split} list were found under {wv.root} (looked in: {looked}); pass {hint}")
    return found


def find_prefix(root: Path, probe: pl.DataFrame, source: str, bases, split: str):
    folders = [""] if split == "val" else [f"{source}{suffix}" for suffix in SOURCE_DIR_SUFFIXES]
    for base in bases:
        for folder in folders:
            prefix = "/".join(p for p in (str(base).strip("/"), folder) if p)
            for row in probe.iter_rows(named=True):
                if (root / prefix / row["query"] / row["file"]).is_file():
                    return prefix
    return None


def sample_rows(entries: pl.DataFrame, prefixes: dict[str, str]) -> list[dict]:
    """Compact plan rows -> one dict per sample: __key__, source, query, image_id, label, path."""
    return entry_rows(entries).with_columns(image_path(prefixes)).drop("file").to_dicts()


def image_path(prefixes: dict[str, str]) -> pl.Expr:
    """`path`: an image's path relative to the WebVision root, from source, query and file."""
    prefix = pl.col("source").replace_strict(prefixes, return_dtype=pl.String)
    path = pl.concat_str([prefix, pl.lit("/"), pl.col("query"), pl.lit("/"), pl.col("file")])
    return path.str.replace_all("//", "/").str.strip_chars_start("/").alias("path")
