"""CurriculumNet density per class: `wv score density`'s per-class computation vs the direct numpy
transcription of the reference (tests/curate/reference_curriculumnet.py), on the same features, in one run.

For each class size N: the same synthetic class features (clusters plus outliers, --dim wide, stored
as float16 like `wv embed` writes them) go through
  baseline  reference_curriculum: PCA, the full N x N float64 matrix, np.sort of all N^2 distances,
            per-row counts, deltas, k-means subsets;
  wv        wv.curate.density_core.class_density + wv.curate.curriculum.kmeans_subsets (the same PCA and
            k-means calls; distances in tiles).
Every run is a fresh process (so one side's memory does not weigh on the other; the baseline's can be
capped with --baseline-memory-gb to play a smaller machine), after a warm-up on 300 samples; the sides
alternate and the best of --repeat runs counts (1 run above N = 5,000). Densities and
subsets must be identical. Prints seconds per class, the ratio and the peak memory of each side.

    python bench/density.py                                  # N = 1,000 / 5,000 / 20,000, 512-d
    python bench/density.py --sizes 5000 --repeat 9
    python bench/density.py --sizes 20000,40000 --baseline-memory-gb 8
    python bench/density.py --sizes 20000 --anchors 2000                # the approximate mode
    python bench/density.py --quality --classes 10 --per-class 300     # where the planted noise lands
"""

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "curate"))

from measuring import in_child, peak_mb  # noqa: E402


def class_features(n: int, dim: int, seed: int) -> np.ndarray:
    """A web-image class: a few visual modes (the clean images) plus 25% scattered noise."""
    rng = np.random.default_rng(seed)
    modes = rng.normal(0, 1, size=(4, dim))
    x = modes[rng.integers(0, 4, n)] + rng.normal(0, 0.7, size=(n, dim))
    noisy = rng.random(n) < 0.25
    x[noisy] = rng.normal(0, 1.6, size=(noisy.sum(), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def run_baseline(features_path: str, out_path: str, memory_gb: float, queue) -> None:
    if memory_gb:
        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        from reference_curriculumnet import reference_curriculum

        features = np.load(features_path).astype(np.float32)
        reference_curriculum(features[:300])  # warm-up: imports, BLAS threads
        began, cpu = time.perf_counter(), time.process_time()
        subsets, densities, _, _ = reference_curriculum(features)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        np.savez(out_path, subsets=subsets, densities=densities)
        queue.put({"seconds": seconds, "cpu": cpu, "peak_gb": peak_mb() / 1024})
    except MemoryError:
        queue.put({"error": "out of memory"})


def run_wv(features_path: str, out_path: str, anchors: int, queue) -> None:
    from wv.curate.curriculum import kmeans_subsets
    from wv.curate.density import DensityOptions, distance_budget
    from wv.curate.density_core import class_density

    def once(features):
        options = DensityOptions(mode="approximate", anchors=anchors) if anchors else DensityOptions()
        result = class_density(features, options, device="cpu", budget=distance_budget(4.0))  # --memory-gb 4
        return result, kmeans_subsets(result.density)

    features = np.load(features_path).astype(np.float32)
    once(features[:300])  # warm-up: imports, BLAS and OpenMP threads
    began, cpu = time.perf_counter(), time.process_time()
    result, subsets = once(features)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    np.savez(out_path, subsets=subsets, densities=result.density)
    queue.put({"seconds": seconds, "cpu": cpu, "peak_gb": peak_mb() / 1024, "path": result.path})


class Folders:
    """Stands in for pytest's tmp_path_factory, so the tests' data builders serve here too."""

    def __init__(self, base: Path):
        self.base, self.count = base, 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        path = self.base / f"{name}{self.count}"
        path.mkdir(parents=True)
        return path


def quality(classes: int, per_class: int, noise: float, epochs: int) -> None:
    """The whole pipeline on a synthetic set with planted noise: where the noisy samples land."""
    import polars as pl
    from image_data import auroc, noisy_root, trained_checkpoint, truth_by_shard_order

    from wv.curate.confidence import score_confidence
    from wv.curate.curriculum import curriculum_split
    from wv.curate.density import DensityOptions, score_density
    from wv.curate.embed import embed
    from wv.models import ModelSpec
    from wv.shards import sidecars
    from wv.shards.root import Root

    with tempfile.TemporaryDirectory() as folder:
        folders = Folders(Path(folder))
        root, synth = noisy_root(folders, classes=classes, per_class=per_class, noise=noise, shard_size=200)
        spec = ModelSpec(model=str(trained_checkpoint(folders, epochs=epochs, root=root)))
        embed(root, spec, loader_workers=0)
        score_density(root, DensityOptions(), progress=False)
        curriculum_split(root, progress=False)
        score_confidence(root, spec, loader_workers=0)
        truth = truth_by_shard_order(root, synth)
        scores = {name: sidecars.read_scores(Root(root), name, split="train").collect() for name in ("curriculum", "density", "confidence")}
        table = truth.with_columns(subset=scores["curriculum"]["subset"], density=scores["density"]["density"], p_label=scores["confidence"]["p_label"])
    noisy, subset = table["is_noisy"].to_numpy(), table["subset"].to_numpy()
    print(f"{classes} classes x {per_class}, planted noise {noisy.mean():.3f} (flips and outliers); TinyCNN trained {epochs} epochs on the noisy labels, its penultimate features")
    print(
        table.group_by("subset")
        .agg(pl.len().alias("samples"), pl.col("is_noisy").mean().alias("noisy share"), (pl.col("noise") == "flip").sum().alias("flips"), (pl.col("noise") == "outlier").sum().alias("outliers"))
        .sort("subset")
    )
    last = subset == subset.max()
    print(f"'noisy' = last subset: precision {noisy[last].mean():.3f}, recall {last[noisy].mean():.3f}; subsets 1-2: precision {noisy[subset > 0].mean():.3f}, recall {(subset > 0)[noisy].mean():.3f}")
    print(f"AUROC for noisy: confidence p_label {auroc(-table['p_label'].to_numpy(), noisy):.4f}, density {auroc(-table['density'].to_numpy().astype(float), noisy):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000", help="Samples per class, comma-separated.")
    parser.add_argument("--dim", type=int, default=512, help="Feature width (CLIP ViT-B: 512; PCA to 256 when wider).")
    parser.add_argument("--repeat", type=int, default=5, help="Runs per side for sizes up to 5,000 (best is kept); 1 above.")
    parser.add_argument("--baseline-memory-gb", type=float, default=0, help="Cap the baseline's address space (0: no cap).")
    parser.add_argument("--anchors", type=int, default=0, help="Run wv's approximate mode with this many anchors (then: the share of subsets it gets right).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", action="store_true", help="Instead: the pipeline's quality on a synthetic set with planted noise.")
    parser.add_argument("--classes", type=int, default=10, help="--quality: classes of the synthetic set.")
    parser.add_argument("--per-class", type=int, default=300, help="--quality: images per class.")
    parser.add_argument("--noise", type=float, default=0.3, help="--quality: planted noise.")
    parser.add_argument("--epochs", type=int, default=6, help="--quality: TinyCNN training epochs.")
    args = parser.parse_args()
    if args.quality:
        quality(args.classes, args.per_class, args.noise, args.epochs)
        return
    print(f"density per class, {args.dim}-d float16 features, PCA to 256; best of {args.repeat} up to N=5,000; baseline memory cap: {args.baseline_memory_gb or 'none'} GB")
    print(f"{'N':>7} {'baseline s':>11} {'wv s':>7} {'ratio':>6} {'CPU ratio':>9} {'baseline GB':>12} {'wv GB':>6}  identical  wv path")
    with tempfile.TemporaryDirectory() as folder:
        for n in (int(s) for s in args.sizes.split(",")):
            features = Path(folder) / f"features-{n}.npy"
            np.save(features, class_features(n, args.dim, args.seed))
            mine, theirs = {"seconds": math.inf}, {"seconds": math.inf}
            for _ in range(args.repeat if n <= 5000 else 1):  # alternate the sides: a busy moment hits both
                run = in_child(run_wv, str(features), f"{folder}/wv-{n}.npz", args.anchors)
                mine = run if run["seconds"] < mine["seconds"] else mine
                run = in_child(run_baseline, str(features), f"{folder}/baseline-{n}.npz", args.baseline_memory_gb)
                theirs = run if "error" in run or run["seconds"] < theirs["seconds"] else theirs
                if "error" in theirs:
                    break
            if "error" in theirs:
                print(f"{n:>7} {theirs['error']:>11} {mine['seconds']:>7.2f} {'-':>6} {'-':>9} {'-':>12} {mine['peak_gb']:>6.2f}  -          {mine['path']}")
                continue
            a, b = np.load(f"{folder}/wv-{n}.npz"), np.load(f"{folder}/baseline-{n}.npz")
            same = np.array_equal(a["subsets"], b["subsets"]) and np.array_equal(a["densities"], b["densities"].astype(np.int64))
            verdict = f"{(a['subsets'] == b['subsets']).mean():.1%} same" if args.anchors else ("yes" if same else "NO")
            print(
                f"{n:>7} {theirs['seconds']:>11.2f} {mine['seconds']:>7.2f} {theirs['seconds'] / mine['seconds']:>5.1f}x "
                f"{theirs['cpu'] / mine['cpu']:>8.1f}x {theirs['peak_gb']:>12.2f} {mine['peak_gb']:>6.2f}  {verdict:9}  "
                f"{mine['path']}",
                flush=True,
            )
            if not same and not args.anchors:
                raise SystemExit(f"N={n}: the subsets differ from the reference's")


if __name__ == "__main__":
    main()
