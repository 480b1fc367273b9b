"""Streaming loader speed: wv's Stream beside MosaicML Streaming, litData, a plain webdataset pipeline
and torchvision ImageFolder, same images, same crop, same worker count, one interleaved run; plus the
single-core decode + augment limit and the bytes a curriculum's first stage reads.

    python bench/loader.py --classes 20 --per-class 300 --workers 2 --batch-size 64
    python bench/loader.py --classes 10 --per-class 100 --size 1024x768 --rounds 3   # large originals
    python bench/loader.py --plan-samples 16000000 --world-size 8     # planning alone, WebVision 2.0 scale

MosaicML Streaming pins numpy<2.2, below the project's, so the peers live in their own virtualenv
with the project's torch and the bench runs from there (without them it measures the other loaders):
    python -m venv /work/venv-bench && /work/venv-bench/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        mosaicml-streaming litdata click tqdm pillow simplejpeg polars pyarrow webdataset
    PYTHONPATH=. /work/venv-bench/bin/python bench/loader.py ...

    wv stream     as `wv train` uses it: Stream over the dataset root with class-balanced draws,
                  curriculum subsets (the final stage, all subsets, so it sees as many images as the
                  others) and subset loss weights switched on; wv.train.crops.train_transform (the
                  crop box drawn on the header's geometry, the JPEG decoded by simplejpeg at the 1/2,
                  1/4 or 1/8 DCT scale the crop allows and the crop resized by torch's uint8 kernel;
                  uint8 out: normalised on the device by the trainer)
    wv full-size  the same stream, torchvision's RandomResizedCrop + flip + PILToTensor on a full decode
    MosaicML      MDSWriter once ('jpeg' column: the file's bytes as they are), StreamingDataset
                  subclass applying the transform, shuffle on, StreamingDataLoader
    litData       litdata.optimize once (the PIL JpegImageFile: the file's bytes as they are),
                  StreamingDataset subclass, shuffle on, StreamingDataLoader; litData decodes
                  to a uint8 tensor with torchvision.io.decode_jpeg, so the crop runs on tensors
    webdataset    WebDataset(urls).shuffle(1000).decode("pil").to_tuple("jpg", "cls") -> transform
                  -> batched, in a WebLoader (shards split by worker)
    ImageFolder   the same JPEG bytes extracted once to ROOT-tree/{label}/{key}.jpg, shuffled DataLoader
    decode limit  one core: JPEG decode alone, decode + the peers' transform, decode + wv's; x workers
                  (the transforms' rates measured again before each round: the machine's speed drifts);
                  and 'at once': the same loops in `workers` processes together, as the loader's workers
                  run, sharing the cores' caches and memory bandwidth
The peers' transform is RandomResizedCrop(--crop) + horizontal flip + ToTensor (float32 batches), as
their documentation shows. The page cache is warmed first. Each loader runs --rounds times,
interleaved, built anew each round with persistent workers (as `wv train` runs the stream) and
iterated twice: the first pass starts its workers (50-170 ms here, a large share of an epoch this
small, none of a real one of millions of images), the second is the steady epoch that counts. Prints
samples/s and CPU ms per sample of the second pass (the first's samples/s beside it), the best round
of each and the ratios (of the best rounds, and the median of the per-round ratios).
"""

import argparse
import io
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measuring import cpu_seconds  # noqa: E402

from wv.shards import sidecars  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.read import read_range, shard_urls  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402

SUBSET_OF = {"clean": 0, "flip": 1, "outlier": 2}


def prepare(out: Path, classes: int, per_class: int, size: str, workers: int) -> tuple[Path, Path]:
    """The synthetic set, its root with curriculum subsets (from the ground truth), the ImageFolder tree."""
    name = f"{classes}x{per_class}-{size}"
    source, root, tree = out / f"synth-{name}", out / f"root-{name}", out / f"tree-{name}"
    width, height = (int(v) for v in size.split("x"))
    if not (source / "ground_truth.parquet").is_file():
        shutil.rmtree(source, ignore_errors=True)
        write_synth(source, SynthOptions(classes=classes, per_class=per_class, val_per_class=0, noise=0.3, imbalance=3.0, width=width, height=height, seed=0), workers=workers)
    if not Root(root).exists() or not Root(root).shards_table_path.is_file():
        build(source, root, BuildOptions(split="train", shard_size=250, check="cheap"), workers=workers, progress=False)
    r = Root(root)
    truth = pl.read_parquet(source / "ground_truth.parquet").select("__key__", "noise")
    for shard in r.shard_names("train"):
        if not r.score_path("curriculum", shard).is_file():
            frame = sidecars.shard_keys(r, shard).to_frame().join(truth, on="__key__", how="left", maintain_order="left")
            subset = frame["noise"].replace_strict(SUBSET_OF, return_dtype=pl.Int8).alias("subset")
            sidecars.write_scores(r, "curriculum", shard, frame.select("__key__").with_columns(subset))
    if not (tree / ".complete").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        manifest = r.manifest("train").select("__key__", "shard", "offset", "length", "label").collect()
        for key, shard, offset, length, label in manifest.iter_rows():
            folder = tree / f"{label:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{key}.jpg").write_bytes(read_range(r.shard_path(shard), offset, length)["jpg"])
        (tree / ".complete").write_text("")
    return root, tree


def warm(root: Path, tree: Path) -> int:
    total = sum(len(p.read_bytes()) for p in (root / "shards").glob("*.tar"))
    return total + sum(len(p.read_bytes()) for p in tree.rglob("*.jpg"))


CROP = [224]


def train_transform():
    from torchvision import transforms

    return transforms.Compose([transforms.RandomResizedCrop(CROP[0], antialias=True), transforms.RandomHorizontalFlip(), transforms.ToTensor()])


def tensor_transform():
    """The same augmentation on a decoded uint8 tensor (litData hands those over), float32 out like ToTensor."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(CROP[0], antialias=True), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])


def wv_transform():
    from wv.train.crops import train_transform as trainer_transform

    return trainer_transform(CROP[0])


def full_size_transform():
    from torchvision import transforms

    return transforms.Compose([transforms.RandomResizedCrop(CROP[0], antialias=True), transforms.RandomHorizontalFlip(), transforms.PILToTensor()])


def decode_limit(tree: Path, images: int, decode: bool = True, processes: int = 1) -> dict:
    """Images/s of one core: JPEG decode alone (`decode`), decode + the peers' transform, wv's transform
    (which decodes for itself). processes > 1: that many processes run the loops at the same moments (as
    the loader workers do, sharing caches and memory bandwidth) and the rate is their mean."""
    data = [p.read_bytes() for p in sorted(tree.rglob("*.jpg"))[:images]]
    names = ["decode", "decode + transform", "wv transform"][0 if decode else 1 :]
    if processes == 1:
        return transform_rates(data, names)
    context = multiprocessing.get_context("fork")
    together, results = context.Barrier(processes), context.Queue()
    children = [context.Process(target=lambda: results.put(transform_rates(data, names, together))) for _ in range(processes)]
    for child in children:
        child.start()
    rates = [results.get() for _ in children]
    for child in children:
        child.join()
    return {name: float(np.mean([r[name] for r in rates])) for name in names}


def transform_rates(data: list, names: list, together=None) -> dict:
    peers, ours = train_transform(), wv_transform()
    runs = {
        "decode": lambda d: Image.open(io.BytesIO(d)).convert("RGB"),
        "decode + transform": lambda d: peers(Image.open(io.BytesIO(d)).convert("RGB")),
        "wv transform": lambda d: ours(d),  # as the stream calls it: on the sample's bytes
    }
    rates = {}
    for name in names:
        if together is not None:
            together.wait()
        start = time.perf_counter()
        for d in data:
            runs[name](d)
        rates[name] = len(data) / (time.perf_counter() - start)
    return rates


def count(loader, image_of, before_pass=lambda: None) -> tuple[tuple[int, float, float], tuple[int, float, float]]:
    """Two passes over the loader (persistent workers): the first starts the workers and warms up, the
    second is a steady epoch. Each: samples, samples/s, CPU milliseconds per sample (main process and
    workers together)."""
    passes = []
    for _ in range(2):
        before_pass()
        cpu, start, n = cpu_seconds(), time.perf_counter(), 0
        for batch in loader:
            n += image_of(batch).shape[0]
        passes.append((n, n / (time.perf_counter() - start), (cpu_seconds() - cpu) * 1000 / n))
    shut_down(loader)
    return passes[0], passes[1]


def shut_down(loader) -> None:
    """Stop a loader's persistent workers now (left to the garbage collector, a forked worker of the next
    loader may inherit and try to stop them: litData's loader then raises in its __del__)."""
    loader = loader._persistent[1] if hasattr(loader, "_persistent") else loader  # wv's Stream: its DataLoader
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None:
        iterator._shutdown_workers()
        loader._iterator = None


def run_wv(root: Path, args, transform=None) -> tuple[int, float]:
    from wv.stream import SamplerConfig, Stream

    config = SamplerConfig(batch_size=args.batch_size, class_balance="draw", curriculum="0:0;1:0,1;2:0,1,2", subset_weights="1,0.5,0.5", rounding="trim", seed=0)
    stream = Stream(root, config, transform=transform or wv_transform(), workers=args.workers, persistent_workers=True)
    return count(stream, lambda b: b["image"], lambda: stream.set_epoch(2))  # the last stage: every subset


def write_peers(tree: Path, out: Path, name: str, workers: int) -> dict:
    """Each peer's own format, written once from the tree's JPEG files (their bytes as they are)."""
    from torchvision.datasets import ImageFolder

    samples = ImageFolder(str(tree)).samples
    written = {}
    mds = out / f"mds-{name}"
    if peer_available("streaming"):
        if not (mds / ".complete").is_file():
            from streaming import MDSWriter

            shutil.rmtree(mds, ignore_errors=True)
            with MDSWriter(out=str(mds), columns={"image": "jpeg", "label": "int"}) as writer:
                for path, label in samples:
                    writer.write({"image": Image.open(path), "label": label})
            (mds / ".complete").write_text("")
        written["MosaicML"] = mds
    lit = out / f"litdata-{name}"
    if peer_available("litdata"):
        if not (lit / ".complete").is_file():
            import litdata

            shutil.rmtree(lit, ignore_errors=True)
            litdata.optimize(fn=litdata_item, inputs=samples, output_dir=str(lit), chunk_bytes="64MB", num_workers=workers, verbose=False)
            (lit / ".complete").write_text("")
        written["litData"] = lit
    return written


def litdata_item(sample):
    path, label = sample
    return {"image": Image.open(path), "label": label}


def peer_available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError as error:
        print(f"  {module} cannot be imported here ({error}); see the docstring for its virtualenv")
        return False
    return True


def run_mosaic(mds: Path, args) -> tuple[int, float]:
    from streaming import StreamingDataLoader, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    class Images(StreamingDataset):
        def __init__(self, transform, **kwargs):
            super().__init__(**kwargs)
            self.transform = transform

        def __getitem__(self, index):
            sample = super().__getitem__(index)
            return self.transform(sample["image"].convert("RGB")), sample["label"]

    clean_stale_shared_memory()
    dataset = Images(train_transform(), local=str(mds), shuffle=True, batch_size=args.batch_size, shuffle_seed=0)
    loader = StreamingDataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, drop_last=True, persistent_workers=True)
    return count(loader, lambda b: b[0])


def run_litdata(lit: Path, args) -> tuple[int, float]:
    from litdata import StreamingDataLoader, StreamingDataset

    class Images(StreamingDataset):
        def __init__(self, input_dir, transform):
            super().__init__(input_dir, shuffle=True, drop_last=True)
            self.augment = transform

        def __getitem__(self, index):
            sample = super().__getitem__(index)
            return self.augment(sample["image"]), sample["label"]

    dataset = Images(str(lit), tensor_transform())
    loader = StreamingDataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, drop_last=True, persistent_workers=True)
    return count(loader, lambda b: b[0])


def identity(x):
    return x


def run_webdataset(root: Path, args) -> tuple[int, float]:
    import webdataset as wds

    urls = shard_urls(root)
    dataset = (
        wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False, seed=0)
        .shuffle(1000)
        .decode("pil")
        .to_tuple("jpg", "cls")
        .map_tuple(train_transform(), identity)
        .batched(args.batch_size, partial=False)
    )
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=args.workers, persistent_workers=True)
    return count(loader, lambda b: b[0])


def run_imagefolder(tree: Path, args) -> tuple[int, float]:
    from torchvision.datasets import ImageFolder

    loader = torch.utils.data.DataLoader(ImageFolder(str(tree), train_transform()), batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True, persistent_workers=True)
    return count(loader, lambda b: b[0])


def first_stage_bytes(root: Path, args) -> dict:
    """A curriculum's first stage (clean subset only): planned and measured bytes vs whole shards."""
    from wv.stream import SamplerConfig, Stream
    from wv.stream.plan_summary import summarise_plan

    config = SamplerConfig(batch_size=args.batch_size, curriculum="0:0;1:0,1;2:0,1,2", rounding="trim", seed=0)
    stream = Stream(root, config, workers=args.workers)
    plan = summarise_plan(stream.planner, 0)
    start = time.perf_counter()
    read = samples = 0
    for batch in stream:
        read += batch["read_bytes"]
        samples += len(batch["key"])
    seconds = time.perf_counter() - start
    return {
        "shard_bytes": plan["shards"]["bytes_total"],
        "planned": plan["shards"]["bytes_read"],
        "read": read,
        "pool": plan["funnel"]["pool"],
        "samples": plan["funnel"]["samples"],
        "seconds": seconds,
        "rate": samples / seconds,
    }


def plan_at_scale(samples: int, world_size: int) -> None:
    """Planning alone at WebVision 2.0 scale: a synthetic table (5,000 classes, 1,000 samples a shard)."""
    import tracemalloc

    from wv.stream.config import SamplerConfig
    from wv.stream.sampling import Planner
    from wv.stream.table import SampleTable

    rng = np.random.default_rng(0)
    shards, per_shard = samples // 1000, 1000
    sizes = rng.gamma(1.0, 1.0, 5000)
    table = SampleTable(
        root="synthetic",
        split="train",
        shard_names=[f"train-{i:06d}" for i in range(shards)],
        shard_paths=[f"train-{i:06d}.tar" for i in range(shards)],
        shard_start=np.arange(shards + 1, dtype=np.int64) * per_shard,
        shard_bytes=np.full(shards, 30_000_000, dtype=np.int64),
        shard_id=np.repeat(np.arange(shards, dtype=np.int32), per_shard),
        offset=np.tile(np.arange(per_shard, dtype=np.int64) * 30_000, shards),
        length=np.full(shards * per_shard, 30_000, dtype=np.int32),
        label=rng.choice(5000, shards * per_shard, p=sizes / sizes.sum()).astype(np.int32),
        class_names={},
        keep=rng.random(shards * per_shard) < 0.8,
        subset=rng.integers(0, 3, shards * per_shard).astype(np.int16),
        scores={"confidence.p_label": rng.random(shards * per_shard).astype(np.float32)},
    )
    config = SamplerConfig(batch_size=256, class_balance="draw", curriculum="0:0;3:0,1;6:0,1,2", subset_weights="1,0.5,0.5", gates=("confidence.p_label >= 0.5@0,0@10",), max_repeat=50)
    planner = Planner(table, config, world_size)
    tracemalloc.start()
    print(f"plan at scale: {table.size:,} samples, {shards:,} shards, 5,000 classes, world size {world_size}; table {table.nbytes() / table.size:.0f} bytes/sample")
    for epoch in (0, 7):
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        plan = planner.plan(epoch)
        planned = time.perf_counter() - start
        start = time.perf_counter()
        rank = planner.rank_plan(plan, 0)
        ranked = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] - base
        print(
            f"  epoch {epoch}: pool {plan.funnel['pool']:,}, {plan.steps:,} steps per rank; epoch plan {planned:.2f} s, "
            f"rank plan {ranked:.2f} s ({rank.rows.size:,} draws); planning peak {peak / 1e6:,.0f} MB above the "
            f"{table.nbytes() / 1e6:,.0f} MB table, the rank plan keeps {sum(a.nbytes for a in (rank.rows, rank.shard, rank.offset, rank.length, rank.label, rank.subset, rank.weight)) / 1e6:,.0f} MB"
        )
        del plan, rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--size", default="340x256")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--crop", type=int, default=224, help="RandomResizedCrop size")
    parser.add_argument("--out", default="bench-out/loader")
    parser.add_argument("--loaders", default="", help="Only these of the others (comma-separated names), beside wv's two.")
    parser.add_argument("--plan-samples", type=int, default=0, help="Only time the planning of an epoch of this many samples (no images).")
    parser.add_argument("--world-size", type=int, default=8, help="World size of --plan-samples.")
    args = parser.parse_args()
    CROP[0] = args.crop
    sys.stdout.reconfigure(line_buffering=True)  # a run cut short by a timeout keeps what it printed
    if args.plan_samples:
        return plan_at_scale(args.plan_samples, args.world_size)
    torch.set_num_threads(1)

    root, tree = prepare(Path(args.out), args.classes, args.per_class, args.size, args.workers)
    peers = write_peers(tree, Path(args.out), f"{args.classes}x{args.per_class}-{args.size}", args.workers)
    torch.multiprocessing.set_start_method("fork", force=True)  # litData's writer switches the process to spawn
    warmed = warm(root, tree) + sum(len(p.read_bytes()) for folder in peers.values() for p in folder.rglob("*") if p.is_file())
    images = Root(root).shards("train")["samples"].sum()
    print(f"{images} images ({args.size}), {warmed / 1e6:.0f} MB warmed; {args.workers} workers, batch {args.batch_size}, crop {args.crop}; load average before {os.getloadavg()[0]:.2f}")
    limit = decode_limit(tree, 1000)
    print(
        f"decode limit (1 core): decode {limit['decode']:,.0f} img/s; decode + transform {limit['decode + transform']:,.0f} "
        f"img/s; wv's transform (scaled decode, uint8) {limit['wv transform']:,.0f} img/s"
    )

    rates, cpu, cold, limits, together = {}, {}, {}, [], []
    runners = {
        "wv stream": lambda: run_wv(root, args),
        "wv full-size": lambda: run_wv(root, args, full_size_transform()),
        "webdataset": lambda: run_webdataset(root, args),
        "ImageFolder": lambda: run_imagefolder(tree, args),
    }
    if "MosaicML" in peers:
        runners["MosaicML"] = lambda: run_mosaic(peers["MosaicML"], args)
    if "litData" in peers:
        runners["litData"] = lambda: run_litdata(peers["litData"], args)
    if args.loaders:
        runners = {name: run for name, run in runners.items() if name in {*args.loaders.split(","), "wv stream", "wv full-size"}}
    for round_ in range(args.rounds):
        limits.append(decode_limit(tree, 300, decode=False))  # each round's own limits: the machine's speed drifts
        together.append(decode_limit(tree, 300, decode=False, processes=args.workers))
        print(
            f"  round {round_ + 1} limits, img/s a process, alone | {args.workers} at once: wv {limits[-1]['wv transform']:,.0f} | "
            f"{together[-1]['wv transform']:,.0f}; peers {limits[-1]['decode + transform']:,.0f} | {together[-1]['decode + transform']:,.0f}"
        )
        for name, runner in runners.items():
            first, (n, rate, ms) = runner()
            print(f"  round {round_ + 1} {name:<12} {n:>6} samples  {rate:>8,.0f} samples/s  {ms:.3f} CPU ms/sample  (first pass {first[1]:>6,.0f} samples/s)", flush=True)
            rates.setdefault(name, []).append(rate)
            cpu.setdefault(name, []).append(ms)
            cold.setdefault(name, []).append(first[1])
    print("second passes, best of rounds. Limit: the rate of each loader's own decode + transform in one process, measured")
    print(f"  in each round, x workers; 'at once': with {args.workers} processes running it together. Ratios: median of the rounds':")
    for name, values in rates.items():
        key = "wv transform" if name == "wv stream" else "decode + transform"
        alone, at_once = (np.array([r[key] for r in measured]) * args.workers for measured in (limits, together))
        print(
            f"  {name:<12} {max(values):>8,.0f} samples/s (median {np.median(values):,.0f}) = {np.median(np.array(values) / alone):.2f} of the "
            f"limit, {np.median(np.array(values) / at_once):.2f} at once; median {np.median(cpu[name]):.3f} CPU ms/sample "
            f"(decode + augment alone: {1000 * args.workers / np.median(alone):.3f}); first pass {np.median(cold[name]):,.0f} = {np.median(np.array(cold[name]) / alone):.2f}"
        )
    others = [name for name in rates if name not in ("wv stream", "wv full-size")]
    for other in [*others, "wv full-size"]:
        paired = np.array(rates["wv stream"]) / np.array(rates[other])
        print(
            f"ratio wv / {other:<12} best {max(rates['wv stream']) / max(rates[other]):.3f}, median of rounds {np.median(paired):.3f} "
            f"(rounds: {', '.join(f'{r:.2f}' for r in paired)}); CPU per sample {np.median(cpu['wv stream']) / np.median(cpu[other]):.3f}"
        )
    if others:  # none when --loaders names only wv's own
        best_peer = max(others, key=lambda name: np.median(rates[name]))
        paired = np.array(rates["wv stream"]) / np.array(rates[best_peer])
        cold_paired = np.array(cold["wv stream"]) / np.array(cold[best_peer])
        print(f"best peer (median samples/s): {best_peer}; wv / {best_peer}: median of rounds {np.median(paired):.3f}, first passes {np.median(cold_paired):.3f}")

    stage = first_stage_bytes(root, args)
    print(
        f"curriculum stage 0 (clean subset: {stage['pool']:,} of {stage['samples']:,} samples): bytes read "
        f"{stage['read'] / 1e6:.1f} MB (planned {stage['planned'] / 1e6:.1f} MB) of {stage['shard_bytes'] / 1e6:.1f} MB of shards "
        f"= {stage['read'] / stage['shard_bytes']:.3f}; whole-shard streaming reads 1.000 ({stage['rate']:,.0f} samples/s)"
    )


if __name__ == "__main__":
    main()
