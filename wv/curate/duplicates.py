"""`wv score duplicates`: exact and near-duplicate images in each split, and leaks between train and val
(and an outside set, --against). The rules are in wv.curate.duplicates_core; this module is its driver.

Three stages, each resumable:
  1. hashes: every image's bytes and decoded pixels hashed, shard by shard on the pool (local
     processes or Ray), kept in scores/{name}/_hashes/{shard}.parquet;
  2. near: the features of train + val (+ --against) searched for pairs at or above --threshold.
     Exact mode: one cell holding everything, tile by tile. Approximate mode: faiss k-means cells
     on a sample of the features; each sample lives in its nearest cell and is searched against the
     samples living in its --probes nearest cells (exact cosine inside, so only pairs split across
     cells it does not probe are missed: the recall is measured in BENCHMARKS.md). Cells are
     gathered in groups that fit --memory-gb, one pass over the feature files per group; each
     finished group is kept in scores/{name}/_near/ so a killed run resumes;
  3. groups: connected components of the exact and near pairs per split, the representative of each
     group (the largest image, then the lowest key), written per shard.
Memory: per sample about 200 bytes at the peak (hashes and sizes 24, cells 13, the nearest other-split
and --against samples 96 while a group is searched, group labels and representatives ~70), plus one cell
group of features (half of --memory-gb): about 3.2 GB of arrays at 16M samples (BENCHMARKS.md, "Scale").
"""

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from wv.atomic import write_parquet
from wv.curate.density import check_features, feature_groups, pick_features
from wv.curate.duplicates_core import (
    Best,
    bytes_hash,
    equal_value_edges,
    group_sizes,
    merge_groups,
    pixel_hash,
    representatives,
    search_block,
    unit_rows,
)
from wv.curate.duplicates_options import DuplicateOptions
from wv.errors import WvError, first_line
from wv.parallel import Workers
from wv.progress import bar_options
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.read import shard_samples
from wv.shards.root import Root, check_name

COMMAND = "score duplicates"
FORMAT = "wv-duplicates/1"
TRAIN, VAL, AGAINST = 0, 1, 2
CELL_SAMPLES = 20_000  # approximate mode: about this many samples per k-means cell
KMEANS_SAMPLE = 256  # training points per centroid
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


# -- stage 1: hashes -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HashJob:
    root: str
    shard: str
    out: str


def hash_shard(job: HashJob) -> int:
    """Pool task: bytes hash, pixel hash, width, height of every image of a shard, in shard order."""
    root = Root(job.root)
    keys = sidecars.shard_keys(root, job.shard).to_list()
    rows = []
    for index, sample in enumerate(shard_samples(root.shard_path(job.shard))):
        if index >= len(keys) or sample["__key__"] != keys[index]:
            raise WvError(f"{job.shard} does not match its meta sidecar at sample {index}; run `wv shard verify`")
        data = sample["jpg"]
        try:
            rows.append((bytes_hash(data), *pixel_hash(data)))
        except Exception as error:  # PIL raises many types for damaged bytes
            raise WvError(f"{job.shard}: image {sample['__key__']} cannot be decoded ({first_line(error)}); run `wv shard verify`") from None
    if len(rows) != len(keys):
        raise WvError(f"{job.shard} holds {len(rows)} samples, its meta sidecar {len(keys)}; run `wv shard verify`")
    frame = pl.DataFrame(rows, schema={"bytes_hash": pl.Int64, "pixel_hash": pl.Int64, "width": pl.Int32, "height": pl.Int32}, orient="row")
    write_parquet(Path(job.out), frame)
    return len(rows)


def hash_all(root: Root, name: str, shards: list[str], pool: Workers, progress: bool) -> int:
    folder = sidecars.sidecar_dir(root, "scores", name) / "_hashes"
    todo = [s for s in shards if not (folder / f"{s}.parquet").is_file()]
    jobs = (HashJob(str(root.path.absolute()), s, str((folder / f"{s}.parquet").absolute())) for s in todo)
    for _ in tqdm(pool.map(hash_shard, jobs), total=len(todo), desc="duplicates: hash", unit="shard", **bar_options(progress)):
        pass
    return len(todo)


def read_hashes(root: Root, name: str, shards: list[str]) -> pl.DataFrame:
    folder = sidecars.sidecar_dir(root, "scores", name) / "_hashes"
    if not shards:
        return pl.DataFrame(schema={"bytes_hash": pl.Int64, "pixel_hash": pl.Int64, "width": pl.Int32, "height": pl.Int32})
    return pl.concat([pl.read_parquet(folder / f"{s}.parquet") for s in shards])


# -- the searched sets: train, val and --against, in one index space ----------------------------------------------
@dataclass
class Sets:
    """Global ids: train rows, then val rows, then --against rows."""

    root: Root
    names: list  # the feature set of each shard
    shards: list  # train shards then val shards
    starts: np.ndarray  # first id of each shard, and the end of the last
    sizes: tuple  # (train, val, against)
    against: np.ndarray  # --against features (unit rows)
    dim: int

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def kinds(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.cumsum(self.sizes), ids, side="right").astype(np.int8)

    def fetch(self, ids: np.ndarray) -> np.ndarray:
        """Unit feature rows of sorted global ids, read from the per-shard files (and --against)."""
        out = np.empty((ids.size, self.dim), dtype=np.float32)
        bounds = np.searchsorted(ids, self.starts)
        for position in np.flatnonzero(np.diff(bounds)):
            first, last = bounds[position], bounds[position + 1]
            stored = sidecars.read_features(self.root, self.names[position], self.shards[position])
            out[first:last] = unit_rows(stored[ids[first:last] - self.starts[position]])
        outside = bounds[-1]
        out[outside:] = self.against[ids[outside:] - self.starts[-1]]
        return out

    def chunks(self, rows: int = 65_536):
        """(ids, unit rows) of every train, val and against sample, shard by shard."""
        for position, shard in enumerate(self.shards):
            stored = sidecars.read_features(self.root, self.names[position], shard)
            for start in range(0, len(stored), rows):
                yield self.starts[position] + start + np.arange(min(rows, len(stored) - start)), unit_rows(stored[start : start + rows])
        for start in range(0, len(self.against), rows):
            yield self.starts[-1] + start + np.arange(min(rows, len(self.against) - start)), self.against[start : start + rows]


# -- stage 2: near pairs ------------------------------------------------------------------------------------------
@dataclass
class Near:
    edges_i: np.ndarray
    edges_j: np.ndarray
    best: dict  # (query kind, base kind) -> Best over global ids
    cells: int
    groups_resumed: int


def search(sets: Sets, opts: DuplicateOptions, name: str, memory_gb: float, progress: bool) -> Near:
    folder = sidecars.sidecar_dir(sets.root, "scores", name) / "_near"
    exact = opts.mode == "exact" or (opts.mode == "auto" and sets.total <= opts.exact_max)
    probes = cells_of(sets, opts, folder) if not exact else np.zeros((sets.total, 1), dtype=np.int32)
    cells = int(probes.max()) + 1 if probes.size else 1
    best = {pair: Best(sets.total) for pair in ((TRAIN, VAL), (VAL, TRAIN), (TRAIN, AGAINST), (VAL, AGAINST))}
    kinds = sets.kinds(np.arange(sets.total))
    home = probes[:, 0]
    is_query = kinds != AGAINST
    need = np.bincount(home, minlength=cells) + np.bincount(probes[is_query].reshape(-1), minlength=cells)
    groups = cell_groups(need, sets.dim, memory_gb * 2**30 / 2)
    edges_i, edges_j, resumed = [], [], 0
    with tqdm(total=len(groups), desc="duplicates: near", unit="cell group", **bar_options(progress)) as bar:
        for number, group in enumerate(groups):
            path = folder / f"group-{number:06d}.npz"
            if not path.is_file():
                save_group(path, search_group(sets, group, home, probes, kinds, opts.threshold))
            else:
                resumed += 1
            found = np.load(path)
            edges_i.append(found["i"])
            edges_j.append(found["j"])
            for q, b in best:
                best[(q, b)].update(found[f"rows{q}{b}"], found[f"sim{q}{b}"], found[f"index{q}{b}"])
            bar.update(1)
    return Near(np.concatenate(edges_i) if edges_i else np.zeros(0, np.int64), np.concatenate(edges_j) if edges_j else np.zeros(0, np.int64), best, cells, resumed)


def cell_groups(need: np.ndarray, dim: int, group_bytes: float) -> list[list[int]]:
    """Cells in order, grouped so that each group's gathered features fit `group_bytes` (a larger cell is a group of its own)."""
    return feature_groups(enumerate(need.tolist()), dim, group_bytes)


def search_group(sets: Sets, group: list[int], home: np.ndarray, probes: np.ndarray, kinds: np.ndarray, threshold: float) -> dict:
    """Every cell of the group: its queries (samples probing it) against its members (samples living in it)."""
    in_group = np.zeros(int(max(group)) + 1, dtype=bool)
    in_group[group] = True
    lookup = lambda cells: np.isin(cells, group)  # noqa: E731
    needed = np.flatnonzero(lookup(home) | (lookup(probes).any(axis=1) & (kinds != AGAINST)))
    rows = sets.fetch(needed)
    local_home, local_probes, local_kinds = home[needed], probes[needed], kinds[needed]
    partial = {pair: Best(sets.total) for pair in ((TRAIN, VAL), (VAL, TRAIN), (TRAIN, AGAINST), (VAL, AGAINST))}
    edges_i, edges_j = [], []
    for cell in group:
        base = np.flatnonzero(local_home == cell)
        queries = np.flatnonzero((local_probes == cell).any(axis=1) & (local_kinds != AGAINST))
        i, j = search_block(rows[queries], needed[queries], local_kinds[queries], rows[base], needed[base], local_kinds[base], threshold, partial)
        edges_i.append(i)
        edges_j.append(j)
    found = {"i": np.concatenate(edges_i), "j": np.concatenate(edges_j)}
    for (q, b), best in partial.items():
        seen = np.flatnonzero(best.index >= 0)
        found.update({f"rows{q}{b}": seen, f"sim{q}{b}": best.similarity[seen], f"index{q}{b}": best.index[seen]})
    return found


def save_group(path: Path, found: dict) -> None:
    from wv.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **found)


def cells_of(sets: Sets, opts: DuplicateOptions, folder: Path) -> np.ndarray:
    """Approximate mode: every sample's --probes nearest k-means cells (the first is its own), int32."""
    import faiss

    path = folder / "centroids.npy"
    cells = max(2, -(-sets.total // CELL_SAMPLES))
    if path.is_file():
        centroids = np.load(path)
    else:
        take = np.unique(np.linspace(0, sets.total - 1, min(sets.total, cells * KMEANS_SAMPLE)).astype(np.int64))
        kmeans = faiss.Kmeans(sets.dim, cells, niter=20, seed=opts.seed % 2**31, spherical=True, verbose=False)
        kmeans.train(sets.fetch(take))
        centroids = kmeans.centroids
        folder.mkdir(parents=True, exist_ok=True)
        save_array(path, centroids)
    index = faiss.IndexFlatIP(sets.dim)
    index.add(centroids)
    probes = np.empty((sets.total, min(opts.probes, len(centroids))), dtype=np.int32)
    for ids, rows in sets.chunks():
        probes[ids] = index.search(rows, probes.shape[1])[1]
    return probes


def save_array(path: Path, array: np.ndarray) -> None:
    from wv.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


# -- --against ------------------------------------------------------------------------------------------------
@dataclass
class Against:
    features: np.ndarray  # unit rows
    keys: list
    pixel_hashes: np.ndarray | None  # an image folder's pixel hashes (exact leaks); None for features


def load_against(path: str, root: Root, features: str, dim: int) -> Against:
    """--against as features (.npy, .parquet) or a folder of images embedded with the model of `features`."""
    if not path:
        return Against(np.zeros((0, dim), np.float32), [], None)
    source = Path(path)
    if source.is_dir():
        return embed_folder(source, root, features, dim)
    if not source.is_file():
        raise WvError(f"--against {path} does not exist; give a .npy or .parquet of features, or a folder of images")
    try:
        if source.suffix == ".npy":
            rows = np.load(source, allow_pickle=False)
            keys = [f"{source.name}#{i}" for i in range(len(rows))]
        elif source.suffix == ".parquet":
            frame = pl.read_parquet(source)
            if "features" not in frame.columns:
                raise WvError(f"--against {path} has no 'features' column; it has {', '.join(frame.columns)}")
            rows = np.asarray(frame["features"].to_list(), dtype=np.float32)
            keys = frame["__key__"].cast(pl.String).to_list() if "__key__" in frame.columns else [f"{source.name}#{i}" for i in range(len(rows))]
        else:
            raise WvError(f"--against {path} is neither a .npy nor a .parquet file nor a folder of images")
    except (ValueError, OSError, pl.exceptions.PolarsError) as error:
        raise WvError(f"--against {path} cannot be read as features ({first_line(error)})") from None
    if rows.ndim != 2 or rows.shape[1] != dim or not np.issubdtype(rows.dtype, np.number):
        raise WvError(f"--against {path} holds features of shape {rows.shape}; the features {features!r} are {dim}-d")
    if not np.isfinite(rows).all():
        raise WvError(f"--against {path} holds NaN or infinite features")
    return Against(unit_rows(rows), keys, None)


def embed_folder(folder: Path, root: Root, features: str, dim: int) -> Against:
    """The images of a folder (recursively) through the model that made `features` (its _run.json)."""
    from PIL import Image

    from wv.models import ModelSpec, file_sha256, load_image_model

    record = sidecars.run_record(root, "features", features, "embed").options() or {}
    made = record.get("model")
    if not isinstance(made, dict):
        raise WvError(f"features {features!r} do not record their model; give --against as features (.npy or .parquet) instead")
    spec = ModelSpec(**{k: made.get(k) for k in ("model", "weights", "pretrained", "config")})
    for field, digest in (made.get("sha256") or {}).items():
        used = getattr(spec, field)
        if not Path(used).is_file() or file_sha256(used) != digest:
            raise WvError(f"the {field} file {used} that made features {features!r} is gone or changed; embed --against yourself and give a .npy")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise WvError(f"--against {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    model = load_image_model(spec, torch.device("cpu"))
    rows, hashes = [], []
    for start in range(0, len(paths), 64):
        batch = []
        for path in paths[start : start + 64]:
            data = path.read_bytes()
            try:
                hashes.append(pixel_hash(data)[0])
                with Image.open(path) as image:
                    batch.append(model.preprocess(image))
            except Exception as error:  # PIL raises many types for damaged files
                raise WvError(f"--against image {path} cannot be decoded ({first_line(error)})") from None
        with torch.no_grad():
            rows.append(model.features(torch.stack(batch)).float().numpy())
    found = np.concatenate(rows)
    if found.shape[1] != dim:
        raise WvError(f"the model of features {features!r} gives {found.shape[1]}-d features, the stored ones are {dim}-d")
    return Against(unit_rows(found), [p.relative_to(folder).as_posix() for p in paths], np.asarray(hashes, dtype=np.int64))


# -- the whole run --------------------------------------------------------------------------------------------
def score_duplicates(
    root,
    opts: DuplicateOptions,
    name: str = "duplicates",
    memory_gb: float = 4.0,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
) -> dict:
    """Write ROOT/scores/{name}/{shard}.parquet for every train and val shard; returns the figures."""
    opts.validate()
    if memory_gb <= 0:
        raise WvError("--memory-gb must be positive")
    root = Root(root)
    root.info()
    check_name(name)
    opts = DuplicateOptions(**{**asdict(opts), "features": pick_features(root, opts.features)})
    train, val = root.shards("train"), root.shards("val")
    if train.height == 0:
        raise WvError(f"{root.path} has no train shards")
    opts = DuplicateOptions(**{**asdict(opts), "val_features": pick_features(root, opts.val_features or opts.features)})
    dim = check_features(root, opts.features, train)
    if val.height:
        check_val_features(root, opts, val, dim)
    against = load_against(opts.against, root, opts.features, dim)
    options = {**asdict(opts), "against": str(Path(opts.against).absolute()) if opts.against else "", "format": FORMAT}
    with writing(root, COMMAND):
        todo = sidecars.begin_run(root, "scores", name, options, overwrite, None, command=COMMAND)
        return duplicates_run(root, opts, name, train, val, dim, against, todo, memory_gb, progress, workers, executor, ray_address)


def check_val_features(root: Root, opts: DuplicateOptions, val: pl.DataFrame, dim: int) -> None:
    """The val shards' features: complete, as wide as train's, and from the same model."""
    name = opts.val_features
    first = val["name"][0]
    if not sidecars.complete(root, "features", name, first, int(val["samples"][0])):
        raise WvError(
            f"features {name!r} have no val shards (e.g. {first}); embed them with `wv embed {root.path} --split val --name {opts.features}-val ...` and give --val-features {opts.features}-val"
        )
    if check_features(root, name, val) != dim:
        raise WvError(f"features {name!r} (val) and {opts.features!r} (train) have different widths; embed both with the same model")
    if name != opts.features:
        models = [(sidecars.run_record(root, "features", n, "embed").options() or {}).get("model") for n in (opts.features, name)]
        if models[0] != models[1]:
            raise WvError(f"features {opts.features!r} and {name!r} were made by different models; embed val with the model of train")


def duplicates_run(
    root: Root,
    opts: DuplicateOptions,
    name: str,
    train: pl.DataFrame,
    val: pl.DataFrame,
    dim: int,
    against: Against,
    todo: list,
    memory_gb: float,
    progress: bool,
    workers: int,
    executor: str,
    ray_address: str | None,
) -> dict:
    started = time.time()
    shards = train["name"].to_list() + val["name"].to_list()
    sizes = (int(train["samples"].sum()), int(val["samples"].sum()), len(against.keys))
    folder = sidecars.sidecar_dir(root, "scores", name)
    figures = {
        "name": name,
        "features": opts.features,
        "dim": dim,
        "threshold": opts.threshold,
        "samples": {"train": sizes[0], "val": sizes[1], "against": sizes[2]},
        "shards_written": len(todo),
        "shards_skipped": len(shards) - len(todo),
        "paths": {"scores": str(folder)},
    }
    if not todo:
        figures["seconds"] = round(time.time() - started, 2)
        return figures
    with Workers(workers, executor, ray_address) as pool:
        figures["shards_hashed"] = hash_all(root, name, shards, pool, progress)
    starts = np.concatenate([[0], np.cumsum(pl.concat([train, val])["samples"].to_numpy())]).astype(np.int64)
    names = [opts.features] * train.height + [opts.val_features] * val.height
    sets = Sets(root, names, shards, starts, sizes, against.features, dim)
    near = search(sets, opts, name, memory_gb, progress)
    figures.update(cells=near.cells, mode="exact" if near.cells == 1 else "approximate", cell_groups_resumed=near.groups_resumed)
    hashes = read_hashes(root, name, shards)
    columns = decide(root, shards, starts, sizes, hashes, near, against, opts.threshold)
    write_shards(root, name, shards, starts, todo, columns)
    figures.update(summary(columns, sizes))
    for partial in ("_hashes", "_near"):
        shutil.rmtree(folder / partial, ignore_errors=True)
    figures["seconds"] = round(time.time() - started, 2)
    return figures


def split_keys(root: Root, shards: list[str], wanted: np.ndarray, starts: np.ndarray) -> dict[int, str]:
    """Global id -> key for the (sorted, unique) ids wanted: only those keys are held."""
    found = {}
    bounds = np.searchsorted(wanted, starts)
    for position in np.flatnonzero(np.diff(bounds)):
        keys = sidecars.shard_keys(root, shards[position])
        rows = wanted[bounds[position] : bounds[position + 1]] - starts[position]
        found.update(zip(wanted[bounds[position] : bounds[position + 1]].tolist(), keys.gather(rows).to_list()))
    return found


def decide(root: Root, shards: list, starts: np.ndarray, sizes: tuple, hashes: pl.DataFrame, near: Near, against: Against, threshold: float) -> dict:
    """Per-sample columns over train + val (global ids), as numpy arrays and id arrays for the keys."""
    n = sizes[0] + sizes[1]
    split = np.repeat([TRAIN, VAL], sizes[:2])
    byte_hash, pix_hash = hashes["bytes_hash"].to_numpy(), hashes["pixel_hash"].to_numpy()
    area = hashes["width"].to_numpy().astype(np.int64) * hashes["height"].to_numpy()
    # exact groups never cross splits: the split is part of the value compared
    exact = np.arange(n)
    for value in (byte_hash, pix_hash):
        keyed = pl.DataFrame({"s": split, "v": value}).select(pl.struct("s", "v").hash(seed=3)).to_series().to_numpy()
        exact = merge_groups(exact, *equal_value_edges(keyed))
    same_split = split[near.edges_i] == split[near.edges_j] if near.edges_i.size else np.zeros(0, bool)
    near_groups = merge_groups(exact, near.edges_i[same_split], near.edges_j[same_split])
    grouped = np.flatnonzero(group_sizes(near_groups) > 1)
    keys = split_keys(root, shards, grouped, starts)
    key_rank = np.zeros(n, dtype=np.int64)
    if grouped.size:
        ordered = np.argsort(np.array([keys[i] for i in grouped.tolist()]), kind="stable")
        key_rank[grouped[ordered]] = np.arange(1, grouped.size + 1)
    exact_rep = representatives(exact, area, key_rank)
    near_rep = representatives(near_groups, area, key_rank)
    head_of = lambda labels, rep: np.bincount(labels[rep], weights=np.flatnonzero(rep), minlength=n).astype(np.int64)[labels]  # noqa: E731
    other_exact = other_exact_ids(split, byte_hash, pix_hash)
    other = np.where(split == TRAIN, near.best[(TRAIN, VAL)].index[:n], near.best[(VAL, TRAIN)].index[:n])
    other_sim = np.where(split == TRAIN, near.best[(TRAIN, VAL)].similarity[:n], near.best[(VAL, TRAIN)].similarity[:n])
    against_index = np.where(split == TRAIN, near.best[(TRAIN, AGAINST)].index[:n], near.best[(VAL, AGAINST)].index[:n])
    against_index = np.where(against_index >= 0, against_index - n, -1)  # global id -> row of the --against set
    against_sim = np.where(split == TRAIN, near.best[(TRAIN, AGAINST)].similarity[:n], near.best[(VAL, AGAINST)].similarity[:n])
    against_exact = np.isin(pix_hash, against.pixel_hashes) if against.pixel_hashes is not None and against.pixel_hashes.size else np.zeros(n, bool)
    leaks = (other_exact >= 0) | (other_sim >= threshold) | (against_sim >= threshold) | against_exact
    return {
        "split": split,
        "exact": exact,
        "exact_head": head_of(exact, exact_rep),
        "exact_size": group_sizes(exact),
        "near_head": head_of(near_groups, near_rep),
        "group_size": group_sizes(near_groups),
        "representative": near_rep,
        "other": other,
        "other_similarity": other_sim,
        "other_exact": other_exact,
        "against": against_index,
        "against_similarity": against_sim,
        "against_exact": against_exact,
        "against_keys": against.keys,
        "leaks": leaks,
    }


def other_exact_ids(split: np.ndarray, byte_hash: np.ndarray, pix_hash: np.ndarray) -> np.ndarray:
    """For each sample, the id of a sample of the other split with the same bytes or pixel hash (-1: none)."""
    found = np.full(split.size, -1, dtype=np.int64)
    ids = np.arange(split.size)
    for value in (byte_hash, pix_hash):
        frame = pl.DataFrame({"id": ids, "split": split, "v": value})
        first = frame.group_by("split", "v").agg(pl.col("id").min())
        joined = frame.join(first.with_columns((1 - pl.col("split")).alias("split")), on=["split", "v"], how="left", suffix="_other")
        match = joined.sort("id")["id_other"].fill_null(-1).to_numpy()
        found = np.where(found >= 0, found, match)
    return found


def write_shards(root: Root, name: str, shards: list, starts: np.ndarray, todo: list, c: dict) -> None:
    wanted = np.unique(np.concatenate([c["exact_head"][c["exact_size"] > 1], c["near_head"][c["group_size"] > 1], c["other"][c["other"] >= 0], c["other_exact"][c["other_exact"] >= 0]]))
    keys = split_keys(root, shards, wanted, starts)
    positions = {shard: i for i, shard in enumerate(shards)}
    for shard in todo:
        first, last = starts[positions[shard]], starts[positions[shard] + 1]
        part = slice(first, last)
        exact_size, group_size = c["exact_size"][part], c["group_size"][part]
        key_of = lambda ids: [keys.get(int(i)) if i >= 0 else None for i in ids]  # noqa: E731
        other_sim = c["other_similarity"][part]
        against_sim = c["against_similarity"][part]
        frame = pl.DataFrame(
            {
                "__key__": sidecars.shard_keys(root, shard),
                "exact_group": pl.Series([k if s > 1 else None for k, s in zip(key_of(c["exact_head"][part]), exact_size)], dtype=pl.String),
                "exact_size": pl.Series(exact_size, dtype=pl.Int32),
                "near_group": pl.Series([k if s > 1 else None for k, s in zip(key_of(c["near_head"][part]), group_size)], dtype=pl.String),
                "group_size": pl.Series(group_size, dtype=pl.Int32),
                "representative": pl.Series(c["representative"][part], dtype=pl.Boolean),
                "redundant": pl.Series(~c["representative"][part], dtype=pl.Boolean),
                "other_key": pl.Series(key_of(c["other"][part]), dtype=pl.String),
                "other_similarity": pl.Series(np.where(np.isfinite(other_sim), other_sim, np.nan), dtype=pl.Float32).fill_nan(None),
                "other_exact_key": pl.Series(key_of(c["other_exact"][part]), dtype=pl.String),
                "against_key": pl.Series([c["against_keys"][i] if i >= 0 else None for i in c["against"][part]], dtype=pl.String),
                "against_similarity": pl.Series(np.where(np.isfinite(against_sim), against_sim, np.nan), dtype=pl.Float32).fill_nan(None),
                "leaks": pl.Series(c["leaks"][part], dtype=pl.Boolean),
            }
        )
        sidecars.write_scores(root, name, shard, frame)


def summary(c: dict, sizes: tuple) -> dict:
    figures = {}
    for split, kind in (("train", TRAIN), ("val", VAL)):
        mine = c["split"] == kind
        figures[split] = {
            "exact_groups": int(np.unique(c["exact"][mine & (c["exact_size"] > 1)]).size),
            "in_exact_groups": int((mine & (c["exact_size"] > 1)).sum()),
            "near_groups": int(np.unique(c["near_head"][mine & (c["group_size"] > 1)]).size),
            "in_near_groups": int((mine & (c["group_size"] > 1)).sum()),
            "redundant": int((mine & ~c["representative"]).sum()),
            "largest_group": int(c["group_size"][mine].max()) if mine.any() else 0,
            "leaks": int((mine & c["leaks"]).sum()),
        }
    return figures
