"""`wv shard verify`: every shard's sha256 and size, manifest <-> tar agreement, every sample readable,
every sidecar (meta, scores, features) holding the shard's samples, and the class list covering the labels."""

import hashlib
import json
import tarfile
from pathlib import Path

import polars as pl
from tqdm import tqdm

from wv.parallel import map_jobs
from wv.progress import bar_options
from wv.shards import sidecars
from wv.shards.images import BadImage, prepare_image
from wv.shards.read import read_sample_bytes
from wv.shards.root import Root

SAMPLE_PARTS = ("cls", "jpg", "json", "txt")


def verify(root: str | Path, workers: int = 1, decode: bool = True, progress: bool = True, executor: str = "local", ray_address: str | None = None) -> dict:
    root = Root(root)
    info = root.info()
    shards = root.shards()
    problems = stray_files(root, set(shards["name"]))
    parts = tuple(info.get("sample_parts", SAMPLE_PARTS))  # a baked root's samples also carry scores.json
    jobs = [(str(root.path), row, decode, parts) for row in shards.iter_rows(named=True)]
    samples = 0
    for result in tqdm(map_jobs(verify_shard, jobs, workers, executor, ray_address=ray_address), total=len(jobs), desc="verify", unit="shard", **bar_options(progress)):
        problems += result["problems"]
        samples += result["samples"]
    problems += count_problems(root, info, shards)
    return {"ok": not problems, "shards": shards.height, "samples": samples, "problems": sorted(problems)}


def stray_files(root: Root, known: set) -> list[str]:
    on_disk = {p.stem for p in root.shards_dir.glob("*.tar")}
    return [f"shards/{name}.tar is not listed in shards.parquet" for name in sorted(on_disk - known)]


def count_problems(root: Root, info: dict, shards: pl.DataFrame) -> list[str]:
    problems = []
    per_shard = root.manifest().group_by("shard").len().collect()
    merged = shards.join(per_shard, left_on="name", right_on="shard", how="full", coalesce=True)
    for row in merged.iter_rows(named=True):
        if row["samples"] != row["len"]:
            problems.append(f"{row['name']}: shards.parquet says {row['samples']} samples, manifest.parquet has {row['len']}")
    problems += check_classes(root, info)
    for split, summary in info.get("splits", {}).items():
        in_table = int(shards.filter(pl.col("split") == split)["samples"].sum())
        if summary.get("complete") and summary.get("samples") != in_table:
            problems.append(f"wv.json says {summary.get('samples')} {split} samples, shards.parquet has {in_table}")
    return problems


def verify_shard(job) -> dict:
    root, row, decode, parts = job
    root = Root(root)
    name = row["name"]
    path = root.shard_path(name)
    if not path.is_file():
        return {"samples": 0, "problems": [f"{name}: shards/{name}.tar is missing"]}
    data = path.read_bytes()
    problems = []
    if len(data) != row["bytes"]:
        problems.append(f"{name}: size {len(data)} differs from shards.parquet ({row['bytes']})")
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        problems.append(f"{name}: sha256 differs from shards.parquet (the file changed or is damaged)")
    expected = root.manifest().filter(pl.col("shard") == name).sort("index").collect()
    problems += check_samples(name, data, expected, decode, parts)
    problems += check_meta_sidecar(root, name, expected)
    problems += check_score_sidecars(root, name, expected["__key__"])
    return {"samples": expected.height, "problems": problems}


def check_samples(name: str, data: bytes, expected: pl.DataFrame, decode: bool, parts=SAMPLE_PARTS) -> list[str]:
    """Read every sample at its manifest offset, as a reader that seeks would."""
    problems = []
    for row in expected.iter_rows(named=True):
        where = f"{name}/{row['__key__']}"
        try:
            sample = read_sample_bytes(data[row["offset"] : row["offset"] + row["length"]])
        except (tarfile.TarError, ValueError) as error:
            problems.append(f"{where}: not readable at offset {row['offset']}: {error}")
            continue
        if sample.get("__key__") != row["__key__"] or sorted(k for k in sample if k != "__key__") != list(parts):
            problems.append(f"{where}: the bytes at its offset hold {sample.get('__key__')!r} with {sorted(sample)}")
            continue
        problems += check_sample(where, sample, row, decode)
    return problems


def check_sample(where: str, sample: dict, row: dict, decode: bool) -> list[str]:
    problems = []
    if sample["cls"].decode(errors="replace").strip() != str(row["label"]):
        problems.append(f"{where}: .cls is {sample['cls'][:20]!r}, manifest label is {row['label']}")
    for part in (p for p in sample if p.endswith("json")):
        try:
            json.loads(sample[part])
        except ValueError:
            problems.append(f"{where}: .{part} does not parse")
    try:
        image = prepare_image(sample["jpg"], "full" if decode else "cheap")
        if (image.width, image.height) != (row["width"], row["height"]):
            problems.append(f"{where}: image is {image.width}x{image.height}, manifest says {row['width']}x{row['height']}")
    except BadImage as error:
        problems.append(f"{where}: image unreadable ({error})")
    return problems


def check_meta_sidecar(root: Root, name: str, expected: pl.DataFrame) -> list[str]:
    path = root.meta_path(name)
    if not path.is_file():
        return [f"{name}: meta/{name}.parquet is missing"]
    keys = pl.read_parquet(path, columns=["__key__"])["__key__"]
    if keys.to_list() != expected["__key__"].to_list():
        return [f"{name}: meta/{name}.parquet rows differ from the shard's samples"]
    return []


def check_score_sidecars(root: Root, name: str, keys: pl.Series) -> list[str]:
    """Each score sidecar of the shard holds its keys in order; each features file one row per sample."""
    problems = []
    for score in sidecars.score_names(root):
        path = root.score_path(score, name)
        if not path.is_file():
            continue  # scored on another split, or not yet
        try:
            found = pl.read_parquet(path, columns=["__key__"])["__key__"]
        except (pl.exceptions.PolarsError, OSError):
            problems.append(f"{name}: scores/{score}/{name}.parquet is not a readable table with __key__")
            continue
        how = sidecars.misaligned(found, keys)
        if how:
            problems.append(f"{name}: {sidecars.misaligned_error(path.relative_to(root.path), name, how)}")
    for feature in sidecars.sidecar_names(root, "features"):
        if root.features_path(feature, name).is_file() and not sidecars.complete(root, "features", feature, name, keys.len()):
            problems.append(f"{name}: features/{feature}/{name}.npy does not hold one row per sample ({keys.len()})")
    return problems


def check_classes(root: Root, info: dict) -> list[str]:
    """wv.json's class list names every label the manifest holds."""
    known = {c.get("label") for c in info.get("classes", []) if isinstance(c, dict)}
    labels = root.manifest().select(pl.col("label").unique()).collect()["label"].to_list()
    missing = sorted(label for label in labels if label not in known)
    if missing:
        return [f"manifest.parquet has label(s) {', '.join(map(str, missing[:5]))} that wv.json's class list ({len(known)} classes) lacks"]
    return []
