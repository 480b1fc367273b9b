"""`wv select` and `wv audit` beside the straightforward way of doing the same, in one run.

    python bench/select_audit.py --classes 60 --per-class 100 --image-size 340x256

On a synthetic root (real WebVision image size by default) with a score derived from the planted noise:
  select      `wv select` (three streaming passes, per-class counts in memory) beside one in-memory polars
              query: every score row and label joined, first matching rule, per-class protection.
  thumbnails  the audit's image pass (byte ranges of the shown samples, only those decoded) beside
              streaming every shard with webdataset and decoding every image to thumbnail the same ones.
Also prints the whole `wv audit` time and the share of noisy images among the dropped thumbnails.

    python bench/select_audit.py --select-samples 2000000

  select at scale: a root of meta and score sidecars only (no images; select reads no image), 1,000
  classes; `wv select` beside the in-memory query, each in its own process: seconds and peak memory.
"""

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measuring import peak_mb  # noqa: E402

from wv.curate.audit import write_report  # noqa: E402
from wv.curate.select import select  # noqa: E402
from wv.shards import sidecars  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402

RULES = ["synthetic.clean < 0.35", "synthetic.subset == 2 and synthetic.clean < 0.45"]


def make_root(out: Path, classes: int, per_class: int, size: str, workers: int) -> tuple[Path, Path]:
    tag = f"{classes}x{per_class}-{size}"
    source, root = out / f"synth-{tag}", out / f"root-{tag}"
    if not (source / "ground_truth.parquet").is_file():
        shutil.rmtree(source, ignore_errors=True)
        width, height = (int(v) for v in size.split("x"))
        write_synth(source, SynthOptions(classes=classes, per_class=per_class, noise=0.3, imbalance=3.0, val_per_class=0, width=width, height=height, version="2.0", seed=0), workers=workers)
    if not Root(root).exists() or not (root / "shards.parquet").is_file():
        build(source, root, BuildOptions(split="train", shard_size=500, check="cheap"), workers=workers, progress=False)
    truth = pl.read_parquet(source / "ground_truth.parquet").select("__key__", "is_noisy")
    rng = np.random.default_rng(0)
    for shard in Root(root).shard_names("train"):
        frame = sidecars.shard_keys(Root(root), shard).to_frame().join(truth, on="__key__", how="left", maintain_order="left")
        noisy = frame["is_noisy"].cast(pl.Float64).to_numpy()
        sidecars.write_scores(
            Root(root),
            "synthetic",
            shard,
            frame.select("__key__").with_columns(
                pl.Series("clean", 0.7 - 0.5 * noisy + rng.normal(0, 0.15, frame.height), dtype=pl.Float32), pl.Series("subset", rng.integers(0, 3, frame.height), dtype=pl.Int8)
            ),
        )
    return source, root


def select_in_memory(root: Path, min_per_class: int, fraction: float) -> int:
    """The baseline: all rows in one frame; returns how many are dropped."""
    scores = sidecars.read_scores(Root(root), "synthetic", split="train").collect()
    labels = Root(root).manifest("train").select("__key__", "label").collect()
    frame = scores.join(labels, on="__key__")
    first = pl.when(pl.col("clean") < 0.35).then(0).when((pl.col("subset") == 2) & (pl.col("clean") < 0.45)).then(1)
    frame = frame.with_columns(first.alias("first"), pl.len().over("label").cast(pl.Int64).alias("n"))
    allowed = pl.min_horizontal(pl.col("n") - min_per_class, (pl.col("n") * fraction).floor()).clip(lower_bound=0)
    badness = pl.when(pl.col("first") == 0).then(-pl.col("clean")).otherwise(0.0)
    ranked = frame.filter(pl.col("first").is_not_null()).with_columns((badness.rank("ordinal", descending=True).over("label")).alias("worst"), allowed.alias("allowed"))
    return ranked.filter(pl.col("worst") <= pl.col("allowed")).height


def make_scores_only_root(out: Path, samples: int, per_shard: int = 10_000, classes: int = 1000) -> Path:
    root = out / f"scores-only-{samples}"
    if (root / "wv.json").is_file():
        return root
    rng = np.random.default_rng(0)
    shards, manifests = [], []
    for index in range(max(1, samples // per_shard)):
        name = f"train-{index:06d}"
        keys = [f"google-q{index:05d}-{i:07d}" for i in range(per_shard)]
        labels = rng.integers(0, classes, per_shard).astype(np.int32)
        meta = pl.DataFrame({"__key__": keys, "label": labels, "source": "google", "query": "q"})
        (root / "meta").mkdir(parents=True, exist_ok=True)
        meta.write_parquet(root / "meta" / f"{name}.parquet")
        score = pl.DataFrame({"__key__": keys, "clean": rng.normal(0.6, 0.25, per_shard).astype(np.float32), "subset": rng.integers(0, 3, per_shard).astype(np.int8)})
        (root / "scores" / "synthetic").mkdir(parents=True, exist_ok=True)
        score.write_parquet(root / "scores" / "synthetic" / f"{name}.parquet")
        shards.append({"name": name, "split": "train", "samples": per_shard, "bytes": 0, "sha256": ""})
        manifests.append(meta.select("__key__", pl.lit("train").alias("split"), pl.lit(name).alias("shard"), "label"))
    pl.DataFrame(shards).write_parquet(root / "shards.parquet")
    pl.concat(manifests).write_parquet(root / "manifest.parquet")
    classes_list = [{"label": i, "synset": f"n{i:08d}", "names": f"class {i}"} for i in range(classes)]
    (root / "wv.json").write_text(json.dumps({"format": "wv-root/1", "classes": classes_list, "splits": {}}))
    return root


def child(kind: str, root: str) -> None:
    """Runs one side in this process and prints seconds, peak memory and the number dropped."""
    if kind == "wv":
        figures, seconds = timed(select, root, RULES, min_per_class=10, max_drop_fraction=0.5, overwrite=True, workers=1, progress=False)
        dropped = figures["dropped"]
    else:
        dropped, seconds = timed(select_in_memory, root, 10, 0.5)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "dropped": dropped}))


def select_at_scale(out: Path, samples: int) -> None:
    root = make_scores_only_root(out, samples)
    runs = {}
    for kind in ("wv", "in-memory"):
        done = subprocess.run([sys.executable, __file__, "--child", kind, str(root)], check=True, capture_output=True, text=True)
        runs[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    wv, base = runs["wv"], runs["in-memory"]
    print(
        f"select at {samples:,} samples (1,000 classes): wv {wv['seconds']:.2f} s, peak {wv['peak_mb']:.0f} MB; "
        f"in-memory polars {base['seconds']:.2f} s, peak {base['peak_mb']:.0f} MB; time ratio wv/baseline "
        f"{wv['seconds'] / base['seconds']:.2f}, memory ratio {wv['peak_mb'] / base['peak_mb']:.2f}; dropped {wv['dropped']} vs {base['dropped']}"
    )
    assert wv["dropped"] == base["dropped"]


def thumbnails_by_full_decode(root: Path, keys: set, size: int) -> int:
    import webdataset as wds

    made = 0
    urls = [str(Root(root).shard_path(s)) for s in Root(root).shard_names("train")]
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"):
        image = sample["jpg"]
        if sample["__key__"] in keys:
            image = image.copy()
            image.thumbnail((size, size))
            image.save(io.BytesIO(), format="JPEG", quality=82)
            made += 1
    return made


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--image-size", default="340x256")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--select-samples", type=int, default=0, help="Only the select-at-scale comparison, at this many samples.")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    out = Path(args.out)
    if args.select_samples:
        return select_at_scale(out, args.select_samples)
    source, root = make_root(out, args.classes, args.per_class, args.image_size, args.workers)
    samples = Root(root).manifest("train").select(pl.len()).collect().item()
    print(f"root: {root} ({samples} samples, {len(Root(root).shard_names('train'))} shards, images {args.image_size})")

    figures, wv_select = timed(select, root, RULES, min_per_class=10, max_drop_fraction=0.5, overwrite=True, workers=1, progress=False)
    baseline_dropped, in_memory = timed(select_in_memory, root, 10, 0.5)
    print(
        f"select      wv {wv_select:.2f} s ({samples / wv_select:,.0f} samples/s), in-memory polars {in_memory:.2f} s; "
        f"ratio wv/baseline {wv_select / in_memory:.2f}; dropped {figures['dropped']} vs {baseline_dropped}"
    )
    assert figures["dropped"] == baseline_dropped

    report = out / "audit-report"
    shutil.rmtree(report, ignore_errors=True)
    _, first_run = timed(write_report, root, report, workers=1, progress=False)
    thumbs = list((report / "thumbs").glob("*/*.jpg"))
    shutil.rmtree(report / "thumbs")
    _, thumbs_only = timed(write_report, root, report, workers=1, progress=False)  # pages again, thumbnails anew
    _, pages_only = timed(write_report, root, report, workers=1, progress=False)  # thumbnails reused
    keys = {p.stem for p in thumbs}
    made, full = timed(thumbnails_by_full_decode, root, keys, 160)
    image_pass = thumbs_only - pages_only
    print(f"audit       wv {first_run:.2f} s in all ({len(thumbs)} thumbnails of {samples} samples; re-run with thumbnails reused {pages_only:.2f} s)")
    print(f"thumbnails  wv byte ranges {image_pass:.2f} s, webdataset decode-everything {full:.2f} s ({made} made); ratio baseline/wv {full / max(image_pass, 1e-6):.1f}x")
    truth = pl.read_parquet(source / "ground_truth.parquet")
    noisy = set(truth.filter(pl.col("is_noisy"))["__key__"].to_list())
    dropped = [k for page in (report / "classes").glob("*.html") for k in re.findall(r"card dropped' data-key='([^']+)'", page.read_text())]
    print(f"quality     noisy share of dropped thumbnails {np.mean([k in noisy for k in dropped]):.3f} (base rate {truth['is_noisy'].mean():.3f}, {len(dropped)} thumbnails)")


if __name__ == "__main__":
    main()
