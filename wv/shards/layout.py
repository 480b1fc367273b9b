"""The WebVision on-disk layout (1.0 and 2.0), read as tables.

1.0: info/ lists, images under google/q0001/, flickr/q0001/, val images under val_images_256/ (or
     val_images_resized/), meta/google/q0001.json; queries_synsets_map.txt maps query -> class, 1-based.
2.0: the same info/ file names, 5-digit query folders (q00001) under
     train_images_256/google_images_resized/, 0-based query map, Flickr tags sometimes a string.

File lists are read with polars (never one Python object per line), so 16M-line lists fit easily.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from wv.errors import WvError
from wv.shards.keys import with_keys

SOURCES = ("google", "flickr")
TRAIN_DIR_CANDIDATES = ("", "train_images_256", "train_images_resized", "train_images", "train")
VAL_DIR_CANDIDATES = ("val_images_256", "val_images_resized", "val_images", "val", "")
SOURCE_DIR_SUFFIXES = ("", "_images_resized", "_resized_256", "_resized", "_images")
LIST_LINE = r"^\s*(\S(?:.*\S)?)\s+(-?\d+)\s*$"


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
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
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
    for line in path.read_text().split("\n"):
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
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
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


def read_file_list(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A `<relative path> <label>` list -> (entries[line, rel_path, label], bad lines[line, text])."""
    lines = pl.read_csv(
        path, has_header=False, separator="\x1f", quote_char=None, new_columns=["text"],
        schema_overrides={"text": pl.String}, truncate_ragged_lines=True,
    ) if path.stat().st_size else pl.DataFrame({"text": []}, schema={"text": pl.String})
    lines = lines.with_row_index("line", offset=1).filter(pl.col("text").str.strip_chars() != "")
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


TRAIN_PATH = r"^(?:.*/)?([^/]+)/([^/]+)/([^/]+)$"  # [...]/source folder/query/file


def split_rel_paths(entries: pl.DataFrame, split: str) -> pl.DataFrame:
    """rel_path -> source, query, file, image_id: `google/q0001/ID.jpg` (train) or `valNNN.jpg` (val)."""
    if split == "val":
        file = pl.col("rel_path").str.extract(r"([^/]+)$", 1)
        entries = entries.with_columns(pl.lit("val").alias("source"), pl.lit("").alias("query"), file.alias("file"))
    else:
        parts = pl.col("rel_path").str.extract_groups(TRAIN_PATH).struct.rename_fields(["folder", "query", "file"])
        entries = entries.with_columns(parts.alias("parts")).unnest("parts")
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
        return {
            source: {query_folder(q, self.version): text for q, text in read_queries(self.info / f"queries_{source}.txt").items()}
            for source in SOURCES
        }


def open_webvision(root) -> WebVision:
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
            with path.open(errors="replace") as f:
                first = f.readline()
            match = re.search(r"/q(\d+)/", first)
            if match:
                return "2.0" if len(match.group(1)) == 5 else "1.0"
    return "2.0" if len(classes) > 1000 else "1.0"


def list_entries(wv: WebVision, split: str, sources) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All entries of a split's file lists -> (entries, rejects).

    entries: __key__, source, query, image_id, rel_path, label (one row per list line that parses);
    rejects: lines that cannot be used, with a reason.
    """
    names = ["val"] if split == "val" else list(sources)
    frames, rejects = [], []
    for source in names:
        path = wv.list_path(split, source)
        if not path.is_file():
            raise WvError(f"{path} is missing; use --sources to build only the sources you have")
        good, bad = read_file_list(path)
        list_name = path.name
        frames.append(split_rel_paths(good, split).with_columns(pl.lit(list_name).alias("list")))
        rejects.append(bad.select(
            pl.lit(list_name).alias("list"), "line", pl.col("text").alias("rel_path"),
            pl.lit("unparseable list line").alias("reason"),
        ))
    entries = with_keys(pl.concat(frames).with_columns(pl.col("source").fill_null(""), pl.col("query").fill_null("")))
    n_classes = len(wv.classes)
    checks = [
        (pl.col("source") == "", "list path has no source/query folders"),
        ((pl.col("label") < 0) | (pl.col("label") >= n_classes), f"label outside 0..{n_classes - 1}"),
        (pl.col("__key__").is_first_distinct().not_(), "duplicate entry"),
    ]
    for condition, reason in checks:
        bad = entries.filter(condition)
        if bad.height:
            rejects.append(bad.select("list", "line", "rel_path", pl.lit(reason).alias("reason")))
            entries = entries.filter(condition.not_())
    rejects = pl.concat(rejects) if rejects else pl.DataFrame()
    return entries.drop("list", "line", "rel_path"), rejects


def resolve_image_dirs(wv: WebVision, entries: pl.DataFrame, split: str, images_dir=None) -> dict[str, str]:
    """Find, per source, the folder (relative to the WebVision root) that its list paths are under.

    The lists say `google/q0001/x.jpg`; on disk that may be google/q0001 (1.0),
    train_images_256/google_images_resized/q00001 (2.0) or a folder the user names with --images-dir.
    Returns {source: prefix} where the image of an entry is root / prefix / query / file.
    """
    bases = [images_dir] if images_dir else (VAL_DIR_CANDIDATES if split == "val" else TRAIN_DIR_CANDIDATES)
    found = {}
    for source in entries["source"].unique().sort().to_list():
        probe = entries.filter(pl.col("source") == source).head(50)
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


def image_path(prefixes: dict[str, str]) -> pl.Expr:
    """`path`: an image's path relative to the WebVision root, from source, query and file."""
    prefix = pl.col("source").replace_strict(prefixes, return_dtype=pl.String)
    path = pl.concat_str([prefix, pl.lit("/"), pl.col("query"), pl.lit("/"), pl.col("file")])
    return path.str.replace_all("//", "/").str.strip_chars_start("/").alias("path")
