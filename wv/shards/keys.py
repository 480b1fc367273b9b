"""Stable sample keys: derived from source, query and image id; never contain a dot.

webdataset splits a tar member name at its first dot into key and extension (`base_plus_ext`), so
any character of an image id outside [A-Za-z0-9_-] is written as ~XX (its UTF-8 bytes in hex), which
keeps keys unique and reversible.
"""

import re

import polars as pl

UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# webdataset.tariterators.base_plus_ext's pattern: the path up to the first dot of the file name, the rest
KEY_AND_EXTENSION = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def base_plus_ext(name: str) -> tuple[str, str] | tuple[None, None]:
    """A tar member name -> (key, extension) by webdataset's rule, restated here so that reading one
    sample does not import webdataset (which imports torch, seconds per worker process). The key is
    the path up to the first dot of the file name ("a.b/c.d.jpg" -> "a.b/c", "d.jpg"); a file name
    without a dot, or starting with one, gives (None, None). tests/shards/test_keys.py checks it
    against webdataset's own function on tricky names."""
    match = KEY_AND_EXTENSION.match(name)
    return (match.group(1), match.group(2)) if match else (None, None)


def escape_id(image_id: str) -> str:
    return UNSAFE.sub(lambda m: "".join(f"~{b:02x}" for b in m.group().encode()), image_id)


def sample_key(source: str, query: str, image_id: str) -> str:
    prefix = f"{source}-{query}" if query else source
    return f"{prefix}-{escape_id(image_id)}"


def with_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `__key__` (as sample_key) to a frame with source, query and image_id columns.

    Vectorised for 16M-row file lists: only the rare ids with unsafe characters go through Python.
    """
    ids = frame["image_id"]
    unsafe = ids.str.contains(UNSAFE.pattern)
    if unsafe.any():
        where = unsafe.arg_true()
        ids = ids.scatter(where, [escape_id(i) for i in ids.gather(where).to_list()])
    prefix = pl.when(pl.col("query") == "").then(pl.col("source")).otherwise(pl.concat_str(pl.col("source"), pl.lit("-"), pl.col("query")))
    return frame.with_columns(pl.concat_str(prefix, pl.lit("-"), ids.alias("_id")).alias("__key__"))
