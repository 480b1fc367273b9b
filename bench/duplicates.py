"""Duplicates: `wv score duplicates` beside imagededup's PHash on the same planted copies, in one run.

A `wv synth --duplicates` set (copies: identical, recompressed, resized, cropped, colour-jittered;
in the same query, another query or source, and into val) is built into a root. Both sides find
duplicate pairs among the train images; the ground truth is the planted (copy, original) pairs.
  wv          exact groups (bytes / pixel DCT hash) and near groups (cosine of the features >= t), for
              several t; features: a 16 x 12 colour thumbnail per image, mean-centred (576-d),
              written as ROOT/features/pix (no pretrained weights can be had offline; with `wv embed`
              CLIP features take their place)
  imagededup  PHash().encode_images + find_duplicates(max_distance_threshold=k), for several k
Prints precision and recall of the pairs per setting, the leaks found (planted into val), the
recall of the approximate search (faiss cells) against the exact one, and seconds per image of
each side (wv: hashing + features + search; imagededup: encoding + search).

    python bench/duplicates.py --classes 20 --per-class 200 --fraction 0.1
"""

import argparse
import io
import itertools
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wv.curate import duplicates as duplicates_module  # noqa: E402
from wv.curate.duplicates import score_duplicates  # noqa: E402
from wv.curate.duplicates_options import DuplicateOptions  # noqa: E402
from wv.shards import sidecars  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.read import shard_samples  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.synth import EXACT_KINDS, SynthOptions, write_synth  # noqa: E402

THRESHOLDS = (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99)
DISTANCES = (0, 2, 4, 6, 8, 10, 12)


def thumbnail_features(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        x = np.asarray(image.convert("RGB").resize((16, 12), Image.Resampling.BOX), np.float32)
    return (x - x.mean(axis=(0, 1))).reshape(-1)


def write_features(root: Root) -> None:
    for shard in root.shard_names():
        rows = [thumbnail_features(s["jpg"]) for s in shard_samples(root.shard_path(shard))]
        sidecars.write_features(root, "pix", shard, np.stack(rows).astype(np.float16))


def score(found: set, truth: set, planted: set) -> tuple[float, float]:
    """(precision against every planted pair, recall of `truth`)."""
    precision = len(found & planted) / len(found) if found else 1.0
    return precision, len(found & truth) / max(1, len(truth))


def group_pairs(frame: pl.DataFrame, column: str) -> set:
    groups = frame.filter(pl.col(column).is_not_null()).group_by(column).agg("__key__")["__key__"]
    return {tuple(sorted(p)) for keys in groups for p in itertools.combinations(keys, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from imagededup.methods import PHash

    logging.disable(logging.INFO)
    warnings.simplefilter("ignore", RuntimeWarning)

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        synth, root = Path(tmp) / "synth", Path(tmp) / "root"
        write_synth(synth, SynthOptions(classes=args.classes, per_class=args.per_class, val_per_class=10, duplicates=args.fraction, seed=1), workers=args.workers)
        for split in ("train", "val"):
            build(synth, root, BuildOptions(split=split, shard_size=500), workers=args.workers, progress=False)
        truth_table = pl.read_parquet(synth / "ground_truth.parquet")
        train = set(truth_table.filter(pl.col("split") == "train")["__key__"])
        copies = truth_table.filter(pl.col("duplicate_of").is_not_null())
        planted = {tuple(sorted(p)) for p in copies.select("__key__", "duplicate_of").iter_rows()}
        same_split = {p for p in planted if p[0] in train and p[1] in train}
        exact_truth = {tuple(sorted((a, b))) for a, b, kind in copies.select("__key__", "duplicate_of", "copy_kind").iter_rows() if a in train and b in train and kind in EXACT_KINDS}
        leak_truth = set(copies.filter(pl.col("copy_place") == "val")["duplicate_of"])
        images = len(truth_table)
        print(
            f"{images} images ({len(train)} train), {len(planted)} planted copies, {len(same_split)} pairs within train "
            f"({len(exact_truth)} identical/recompressed/resized), {len(leak_truth)} planted into val"
        )

        began = time.perf_counter()
        write_features(Root(root))
        feature_seconds = time.perf_counter() - began
        rows, wv_seconds = [], None
        for t in THRESHOLDS:
            began = time.perf_counter()
            figures = score_duplicates(root, DuplicateOptions(features="pix", threshold=t), name=f"d{int(t * 100)}", workers=args.workers, progress=False)
            seconds = time.perf_counter() - began
            wv_seconds = seconds if wv_seconds is None else min(wv_seconds, seconds)
            frame = sidecars.read_scores(Root(root), f"d{int(t * 100)}", split="train").collect()
            if t == THRESHOLDS[0]:
                rows.append(("wv exact (bytes or pixel hash)", *score(group_pairs(frame, "exact_group"), exact_truth, planted), None, None))
            leaks = set(frame.filter(pl.col("leaks"))["__key__"])
            rows.append((f"wv near, cosine >= {t}", *score(group_pairs(frame, "near_group"), same_split, planted), len(leaks & leak_truth) / max(1, len(leak_truth)), len(leaks - leak_truth)))
            del figures

        images_dir = Path(tmp) / "images"  # the same JPEG files, without the lists and meta beside them
        for path in synth.rglob("*.jpg"):
            (images_dir / path.relative_to(synth)).parent.mkdir(parents=True, exist_ok=True)
            os.link(path, images_dir / path.relative_to(synth))
        began = time.perf_counter()
        phash = PHash(verbose=False)
        encodings = phash.encode_images(image_dir=str(images_dir), recursive=True, num_enc_workers=args.workers)
        encode_seconds = time.perf_counter() - began
        key_of = {}
        for r in truth_table.iter_rows(named=True):
            folder = "val_images_resized" if r["split"] == "val" else f"{r['source']}/{r['query']}"
            key_of[f"{folder}/{r['image_id']}.jpg"] = r["__key__"]
        search_seconds = None
        for k in DISTANCES:
            began = time.perf_counter()
            found = phash.find_duplicates(encoding_map=encodings, max_distance_threshold=k, num_dist_workers=args.workers)
            seconds = time.perf_counter() - began
            search_seconds = seconds if search_seconds is None else min(search_seconds, seconds)
            pairs = {tuple(sorted((key_of[a], key_of[b]))) for a, dups in found.items() for b in dups if a in key_of and b in key_of}
            train_pairs = {p for p in pairs if p[0] in train and p[1] in train}
            leaks = {a for p in pairs for a, b in (p, p[::-1]) if a in train and b not in train}
            rows.append((f"imagededup PHash, distance <= {k}", *score(train_pairs, same_split, planted), len(leaks & leak_truth) / max(1, len(leak_truth)), len(leaks - leak_truth)))
        table = pl.DataFrame(rows, schema=["method", "precision", "recall", "leak recall", "false leaks"], orient="row")
        with pl.Config(tbl_rows=40, tbl_width_chars=140, float_precision=3):
            print(table)

        # the approximate search against the exact one, on the same features: tiny cells force many of them
        duplicates_module.CELL_SAMPLES = 100
        exact_frame = sidecars.read_scores(Root(root), "d90").collect()
        figures = score_duplicates(root, DuplicateOptions(features="pix", threshold=0.9, mode="approximate"), name="approx", workers=args.workers, progress=False)
        approx_frame = sidecars.read_scores(Root(root), "approx").collect()
        exact_pairs, approx_pairs = group_pairs(exact_frame, "near_group"), group_pairs(approx_frame, "near_group")
        nearest_same = (exact_frame["other_key"] == approx_frame["other_key"]).mean()
        print(
            f"approximate search, {figures['cells']} cells, --probes 3: recall of the exact near pairs "
            f"{len(exact_pairs & approx_pairs) / max(1, len(exact_pairs)):.4f}, extra pairs {len(approx_pairs - exact_pairs)}, "
            f"same nearest other-split sample {nearest_same:.4f}"
        )
        wv_total = wv_seconds + feature_seconds
        baseline = encode_seconds + search_seconds
        print(
            f"seconds per 1,000 images: wv {1000 * wv_total / images:.3f} (hash + search {1000 * wv_seconds / images:.3f}, "
            f"features {1000 * feature_seconds / images:.3f}); imagededup {1000 * baseline / images:.3f} "
            f"(encode {1000 * encode_seconds / images:.3f}, search {1000 * search_seconds / images:.3f}); "
            f"imagededup / wv = {baseline / wv_total:.2f}"
        )


if __name__ == "__main__":
    main()
