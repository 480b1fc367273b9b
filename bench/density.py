"""CurriculumNet density per class: `wv score density`'s per-class computation vs the direct numpy
transcription of the reference (tests/curate/reference_curriculumnet.py), on the same features, in one run.

For each class size N: the same synthetic class features (clusters plus outliers, --dim wide, stored
as float16 like `wv embed` writes them) go through
  baseline  reference_curriculum: PCA, the full N x N float64 matrix, np.sort of all N^2 distances,
            per-row counts, deltas, k-means subsets;
  wv        wv.curate.density.class_density + wv.curate.curriculum.kmeans_subsets (the same PCA and
            k-means calls; distances in tiles).
Every run is a fresh process (so one side's memory does not weigh on the other; the baseline's can be
capped with --baseline-memory-gb to play a smaller machine), after a warm-up on 300 samples; the sides
alternate and the best of --repeat runs counts (1 run above N = 5,000). Densities and
subsets must be identical. Prints seconds per class, the ratio and the peak memory of each side.

    python bench/density.py                                  # N = 1,000 / 5,000 / 20,000, 512-d
    python bench/density.py --sizes 5000 --repeat 9
    python bench/density.py --sizes 20000,40000 --baseline-memory-gb 8
"""

import argparse
import math
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "curate"))


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
        limit = int(memory_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        from reference_curriculumnet import reference_curriculum

        features = np.load(features_path).astype(np.float32)
        reference_curriculum(features[:300])  # warm-up: imports, BLAS threads
        began, cpu = time.perf_counter(), time.process_time()
        subsets, densities, _, _ = reference_curriculum(features)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        np.savez(out_path, subsets=subsets, densities=densities)
        queue.put({"seconds": seconds, "cpu": cpu, "peak_gb": peak_gb()})
    except MemoryError:
        queue.put({"error": "out of memory"})


def run_wv(features_path: str, out_path: str, queue) -> None:
    from wv.curate.curriculum import kmeans_subsets
    from wv.curate.density import DensityOptions, class_density, distance_budget

    def once(features):
        result = class_density(features, DensityOptions(), device="cpu", budget=distance_budget(4.0))  # --memory-gb 4
        return result, kmeans_subsets(result.density)

    features = np.load(features_path).astype(np.float32)
    once(features[:300])  # warm-up: imports, BLAS and OpenMP threads
    began, cpu = time.perf_counter(), time.process_time()
    result, subsets = once(features)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    np.savez(out_path, subsets=subsets, densities=result.density)
    queue.put({"seconds": seconds, "cpu": cpu, "peak_gb": peak_gb(), "path": result.path})


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # kB -> GB


def in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    child.join()
    return queue.get() if not queue.empty() else {"error": f"failed ({child.exitcode})"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000", help="Samples per class, comma-separated.")
    parser.add_argument("--dim", type=int, default=512, help="Feature width (CLIP ViT-B: 512; PCA to 256 when wider).")
    parser.add_argument("--repeat", type=int, default=5, help="Runs per side for sizes up to 5,000 (best is kept); 1 above.")
    parser.add_argument("--baseline-memory-gb", type=float, default=0, help="Cap the baseline's address space (0: no cap).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"density per class, {args.dim}-d float16 features, PCA to 256; best of {args.repeat} up to N=5,000; "
          f"baseline memory cap: {args.baseline_memory_gb or 'none'} GB")
    print(f"{'N':>7} {'baseline s':>11} {'wv s':>7} {'ratio':>6} {'CPU ratio':>9} {'baseline GB':>12} {'wv GB':>6}  identical  wv path")
    with tempfile.TemporaryDirectory() as folder:
        for n in (int(s) for s in args.sizes.split(",")):
            features = Path(folder) / f"features-{n}.npy"
            np.save(features, class_features(n, args.dim, args.seed))
            mine, theirs = {"seconds": math.inf}, {"seconds": math.inf}
            for _ in range(args.repeat if n <= 5000 else 1):  # alternate the sides: a busy moment hits both
                run = in_child(run_wv, str(features), f"{folder}/wv-{n}.npz")
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
            print(f"{n:>7} {theirs['seconds']:>11.2f} {mine['seconds']:>7.2f} {theirs['seconds'] / mine['seconds']:>5.1f}x "
                  f"{theirs['cpu'] / mine['cpu']:>8.1f}x {theirs['peak_gb']:>12.2f} {mine['peak_gb']:>6.2f}  {'yes' if same else 'NO':9}  "
                  f"{mine['path']}", flush=True)
            if not same:
                raise SystemExit(f"N={n}: the subsets differ from the reference's")


if __name__ == "__main__":
    main()
