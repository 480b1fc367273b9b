"""Scale model: build and score synthetic datasets of growing size, fit how each stage grows, extrapolate.

    python bench/scale.py                                   # 10k, 40k, 160k samples at 64x48, 2 workers
    python bench/scale.py --sizes 5000,20000 --topics 50    # quicker
    python bench/scale.py --sizes 10000,40000 --stages build,verify,density

For each size N a synthetic WebVision 2.0-layout set (`wv synth`, N / --per-class classes of --per-class
images; reported apart, not a stage) is built into a fresh root and every stage runs as its own `wv`
command in a subprocess, as a user would run it:

  build      wv shard build SYNTH ROOT --workers W --shard-size S
  verify     wv shard verify ROOT --workers W                    (sha256, every sample, full decode)
  lda        wv score lda ROOT --workers W --topics T            (fit on every document: no --fit-docs)
  keywords   wv score keywords ROOT --workers W
  select     wv select ROOT --drop "lda.similarity < 0.5" --drop "keywords.count == 0" --workers W
  stream     wv stream ROOT --class-balance draw --world-size 8  (epoch planning; no image is read)
  density    wv score density ROOT --features synthetic --device cpu
             (on random clustered float16 features written by this script, 128-d: not a model's)
  curriculum wv curriculum split ROOT --by density
  audit      wv audit ROOT --workers W

Per stage and size: wall seconds; CPU seconds of the whole process tree (exact: wait4) and of the
driver process alone (sampled); peak RSS of the driver, of the largest worker (sampled every 50 ms
from /proc) and of the largest single process (exact: wait4's ru_maxrss); the bytes the stage added
under ROOT (memory in MB of 2^20 bytes, disk in decimal units). Then per stage the log-log slope over
the sizes (the growth exponent) of wall time, driver peak memory and disk, the driver's marginal
memory per sample (a linear fit), and an extrapolation to --target samples:
  time on K workers  = driver CPU(target) + worker CPU(target) / K, each extrapolated as the larger of
                       a straight line a + b N fitted over the sizes and a power law from the largest
                       size with the log-log slope over the sizes (I/O waits, scheduling and a
                       cluster's network are not modelled; a stage without a pool is all driver: its
                       wall time);
  memory             = the straight-line fit a + b N at N = target (never below the largest peak
                       measured), for the driver and for one worker;
  disk               = the bytes written, extrapolated as the time is; the build's image bytes at the
                       real ~31 KB per image of WebVision 2.0 at 256 px (0.5 TB / 16M) instead of the
                       synthetic images'.
Classes grow with N here (fixed samples per class), so per-class tables count as per-sample growth:
for WebVision 2.0 (3,200 samples per class, not --per-class) that part is over-estimated; `--classes`
keeps the classes fixed instead, so that only per-sample growth is left.

    python bench/scale.py --probe 1000000,4000000

Memory at millions of samples, measured rather than extrapolated, for the stages that read no image
bytes: a root of sidecars only (meta, manifest, shards table, lda / keywords scores, 16-d features;
no tar, so audit cards have no thumbnails), --probe-per-class samples per class, shards of
--probe-shard-size; then select, audit, stream, density and curriculum as above, each its own command.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("build", "verify", "lda", "keywords", "select", "stream", "density", "curriculum", "audit")
POOL_STAGES = {"build", "verify", "lda", "keywords", "select", "audit"}  # stages whose per-shard work runs on --workers
WEBVISION2_IMAGE_BYTES = 0.5e12 / 16e6  # DESIGN.md: WebVision 2.0 at 256 px is about 0.5 TB for 16M samples
FEATURE_DIM = 128
OUTPUTS = {  # what each stage writes under ROOT, removed before a repeated run ("" = the whole root)
    "build": [""],
    "verify": [],
    "lda": ["scores/lda", "scores/label_weights", "features/lda", "models/lda"],
    "keywords": ["scores/keywords", "models/keywords"],
    "select": ["scores/selection"],
    "stream": [],
    "density": ["scores/density"],
    "curriculum": ["scores/curriculum"],
    "audit": ["reports/audit"],
}


def command(stage: str, synth: Path, root: Path, args) -> list[str]:
    w = ["--workers", str(args.workers)]
    return {
        "build": ["shard", "build", synth, root, "--shard-size", args.shard_size, *w],
        "verify": ["shard", "verify", root, *w],
        "lda": ["score", "lda", root, "--topics", args.topics, *w],
        "keywords": ["score", "keywords", root, *w],
        "select": ["select", root, "--drop", "lda.similarity < 0.5", "--drop", "keywords.count == 0", *w],
        "stream": ["stream", root, "--class-balance", "draw", "--world-size", "8", "--batch-size", "256"],
        "density": ["score", "density", root, "--features", "synthetic", "--device", "cpu"],
        "curriculum": ["curriculum", "split", root, "--by", "density"],
        "audit": ["audit", root, *w],
    }[stage]


# -- measuring one command ---------------------------------------------------------------------------
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def process_table() -> dict:
    """pid -> (ppid, rss bytes, user + system CPU seconds), from /proc (Linux; no psutil needed)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "; fields[0] is the state
        table[int(entry.name)] = (int(fields[1]), int(fields[21]) * PAGE, (int(fields[11]) + int(fields[12])) / TICK)
    return table


def descendants(table: dict, top: int) -> list[int]:
    children: dict = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [top]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def measure(args_list: list, log: Path, interval: float = 0.05) -> dict:
    """Run `python -m wv ARGS --json`; wall, CPU and peak RSS of its process tree; its --json figures."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    argv = [sys.executable, "-m", "wv", *map(str, args_list), "--json"]
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        peak_rss, last_cpu, tree_peak = {}, {}, 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            table = process_table()
            tree = 0
            for member in descendants(table, proc.pid):
                _, rss, cpu = table[member]
                if rss == 0:  # a zombie, already gone
                    continue
                peak_rss[member] = max(peak_rss.get(member, 0), rss)
                last_cpu[member] = cpu
                tree += rss
            tree_peak = max(tree_peak, tree)
            time.sleep(interval)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{log.with_suffix('.err').read_text()[-3000:]}")
    lines = log.with_suffix(".out").read_text().strip().splitlines()
    workers = [rss for pid, rss in peak_rss.items() if pid != proc.pid]
    cpu_total = usage.ru_utime + usage.ru_stime
    return {
        "wall": wall,
        "cpu": cpu_total,
        "driver_cpu": min(last_cpu.get(proc.pid, 0.0), cpu_total),
        "driver_rss": peak_rss.get(proc.pid, 0),
        "worker_rss": max(workers, default=0),
        "tree_rss": tree_peak,
        "max_rss": usage.ru_maxrss * 1024,
        "processes": len(peak_rss),
        "figures": json.loads(lines[-1]) if lines else {},
    }


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


# -- data ----------------------------------------------------------------------------------------------
def synth_once(out: Path, samples: int, args) -> tuple[Path, float | None]:
    classes = args.classes or max(1, samples // args.per_class)
    per_class = samples // classes
    source = out / f"synth-{classes}x{per_class}-{args.image_size}"
    if (source / "ground_truth.parquet").is_file():
        return source, None
    shutil.rmtree(source, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "wv",
            "synth",
            str(source),
            "--classes",
            str(classes),
            "--per-class",
            str(per_class),
            "--val-per-class",
            "0",
            "--image-size",
            args.image_size,
            "--version",
            "2",
            "--noise",
            "0.2",
            "--workers",
            str(args.workers),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    return source, time.perf_counter() - started


def write_features(root: Path, seed: int = 0) -> None:
    """Random clustered features (four modes per class plus scattered noise), L2-normalised, float16, per shard."""
    from wv.shards import sidecars
    from wv.shards.root import Root

    r = Root(root)
    rng = np.random.default_rng(seed)
    centres: dict = {}
    for shard in r.shard_names("train"):
        import polars as pl

        labels = pl.read_parquet(r.meta_path(shard), columns=["label"])["label"].to_numpy()
        rows = np.empty((labels.size, FEATURE_DIM), np.float32)
        for i, label in enumerate(labels):
            if label not in centres:
                centres[label] = np.random.default_rng((seed, int(label))).normal(size=(4, FEATURE_DIM))
            rows[i] = rng.normal(size=FEATURE_DIM) if rng.random() < 0.25 else centres[label][rng.integers(4)] + 0.5 * rng.normal(size=FEATURE_DIM)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        sidecars.write_features(r, "synthetic", shard, rows.astype(np.float16))


PROBE_STAGES = ("select", "audit", "stream", "density", "curriculum")


def write_sidecar_root(root: Path, samples: int, per_class: int, shard_size: int, seed: int = 0) -> None:
    """A dataset root without images: what select, audit, stream, density and curriculum read."""
    import polars as pl

    from wv.shards.root import FORMAT

    if (root / "wv.json").is_file():
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    classes = max(1, samples // per_class)
    for folder in ("meta", "scores/lda", "scores/keywords", "features/synthetic"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    words = np.array(["dog", "cat", "tree", "car", "house", "river", "photo", "bird", "flower", "beach"])
    shards, manifests = [], []
    for number in range(-(-samples // shard_size)):
        name = f"train-{number:06d}"
        n = min(shard_size, samples - number * shard_size)
        labels = rng.integers(0, classes, n).astype(np.int32)
        keys = [f"google-q{number:05d}-{i:08d}" for i in range(n)]
        text = [" ".join(words[rng.integers(0, len(words), 5)]) for _ in range(n)]
        pl.DataFrame(
            {"__key__": keys, "label": labels, "source": "google", "query": f"q{number:05d}", "title": text, "description": text, "tags": [t.split() for t in text], "text": text}
        ).write_parquet(root / "meta" / f"{name}.parquet")
        pl.DataFrame({"__key__": keys, "similarity": rng.random(n, dtype=np.float32)}).write_parquet(root / "scores/lda" / f"{name}.parquet")
        pl.DataFrame({"__key__": keys, "keywords": [t.split()[:3] for t in text], "count": rng.integers(0, 6, n).astype(np.int32)}).write_parquet(root / "scores/keywords" / f"{name}.parquet")
        features = rng.normal(size=(n, 16)).astype(np.float32) + labels[:, None] % 7
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        np.save(root / "features/synthetic" / f"{name}.npy", features.astype(np.float16))
        shards.append({"name": name, "split": "train", "samples": n, "bytes": n * 7000, "sha256": "", "path": f"shards/{name}.tar"})
        manifests.append(
            pl.DataFrame(
                {
                    "__key__": keys,
                    "split": "train",
                    "shard": name,
                    "index": np.arange(n),
                    "offset": np.arange(n) * 7000,
                    "length": np.full(n, 7000),
                    "label": labels,
                    "source": "google",
                    "query": f"q{number:05d}",
                    "image_id": [k[-8:] for k in keys],
                    "path": "",
                    "bytes": np.full(n, 6000),
                    "width": 64,
                    "height": 48,
                    "format": "JPEG",
                    "meta": "ok",
                }
            )
        )
    pl.concat(manifests).write_parquet(root / "manifest.parquet", row_group_size=100_000)
    pl.DataFrame(shards).write_parquet(root / "shards.parquet")
    info = {
        "format": FORMAT,
        "classes": [{"label": i, "synset": f"n{i:08d}", "names": f"class {i}"} for i in range(classes)],
        "splits": {"train": {"options": {}, "complete": True, "samples": samples}},
    }
    (root / "wv.json").write_text(json.dumps(info))


def probe(args) -> None:
    sizes = sorted(int(s) for s in args.probe.split(","))
    out = Path(args.out)
    print(f"probe without images: sizes {sizes}, {args.probe_per_class} per class, shards of {args.probe_shard_size}")
    rows = {stage: [] for stage in PROBE_STAGES}
    for size in sizes:
        root = out / f"probe-{size}-{args.probe_per_class}"
        started = time.perf_counter()
        write_sidecar_root(root, size, args.probe_per_class, args.probe_shard_size)
        print(f"  N={size:>10,} sidecar root ready ({time.perf_counter() - started:.0f} s, {human_bytes(tree_bytes(root))})", flush=True)
        for folder in ("scores/selection", "scores/density", "scores/curriculum", "reports/audit"):
            shutil.rmtree(root / folder, ignore_errors=True)
        for stage in PROBE_STAGES:
            args_list = command(stage, root, root, args)
            if stage == "select":
                args_list = ["select", root, "--drop", "lda.similarity < 0.2", "--drop", "keywords.count == 0", "--workers", args.workers]
            m = measure(args_list, out / f"probe-{size}-{stage}")
            rows[stage].append(m)
            print(f"  N={size:>10,} {stage:<10} wall {m['wall']:7.2f} s  cpu {m['cpu']:7.2f} s  rss driver {m['driver_rss'] / 2**20:6.0f} MB, worker {m['worker_rss'] / 2**20:5.0f} MB", flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'stage':<12}" + "".join(f"{'N=' + format(n, ','):>22}" for n in sizes) + "   driver B/sample  at " + f"{args.target:,}")
    for stage in PROBE_STAGES:
        peaks = [r["driver_rss"] for r in rows[stage]]
        _, per_sample = linear(sizes, peaks)
        at = memory_at(sizes, peaks, args.target)[0]
        print(f"{stage:<12}" + "".join(f"{r['wall']:>10.1f} s {r['driver_rss'] / 2**20:>6.0f} MB" for r in rows[stage]) + f"   {per_sample:14.1f}  {human_bytes(at, True):>10}")


def image_bytes(root: Path) -> int:
    import polars as pl

    return int(pl.scan_parquet(root / "manifest.parquet").select(pl.col("bytes").sum()).collect().item())


# -- fitting -------------------------------------------------------------------------------------------
def slope(xs, ys) -> float | None:
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    return float(np.polyfit([p[0] for p in points], [p[1] for p in points], 1)[0])


def linear(xs, ys) -> tuple[float, float]:
    """(intercept, per-unit slope) of a least-squares line; (y, 0) for one point."""
    if len(xs) < 2:
        return float(ys[0]), 0.0
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def extrapolate(sizes, values, target) -> float:
    """The larger of a straight line a + b N (fixed start-up costs, then per-sample work) and a power law
    from the largest size with the log-log slope over all sizes (catches super-linear growth)."""
    a, b = linear(sizes, values)
    k = slope(sizes, values)
    power = values[-1] * (target / sizes[-1]) ** (k if k is not None else 1.0)
    return max(a + b * target, power, values[-1])


GROWTH = 0.10  # a peak that rises by less than this share from the smallest to the largest size is flat


def grows(values) -> bool:
    """Whether a series of peaks rises at every step and by more than GROWTH in all (else noise: flat)."""
    return all(b > a for a, b in zip(values, values[1:])) and values[-1] > values[0] * (1 + GROWTH)


def memory_at(sizes, values, target) -> tuple[float, bool]:
    """(peak memory at the target, whether it grows): the straight line a + b N when the peaks grow,
    else the largest peak measured."""
    if grows(values):
        a, b = linear(sizes, values)
        return max(a + b * target, max(values)), True
    return max(values), False


def human_bytes(n: float, binary: bool = False) -> str:
    """Disk in decimal units (as DESIGN.md's 0.5 TB); memory (binary=True) in units of 2^10, like every RSS here."""
    base = 1024 if binary else 1000
    for unit, power in (("TB", 4), ("GB", 3), ("MB", 2), ("KB", 1)):
        if abs(n) >= base**power:
            return f"{n / base**power:.1f} {unit}"
    return f"{n:.0f} B"


def human_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def fmt(k) -> str:
    return "   -" if k is None else f"{k:4.2f}"


# -- the run -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,40000,160000", help="Sample counts, comma-separated.")
    parser.add_argument("--per-class", type=int, default=200, help="Samples per class (classes = size / per-class).")
    parser.add_argument("--classes", type=int, default=None, help="Fixed number of classes instead (per class = size / classes): separates per-class from per-sample growth.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each stage (on a fresh copy of its input); the fastest counts.")
    parser.add_argument("--image-size", default="64x48")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--topics", type=int, default=100, help="LDA topics (the reference: 500).")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--target", type=int, default=16_000_000, help="Extrapolate to this many samples.")
    parser.add_argument("--target-workers", default="64,512", help="Worker counts of the extrapolated times.")
    parser.add_argument("--out", default="bench-out/scale")
    parser.add_argument("--keep", action="store_true", help="Keep each size's root (default: removed after its stages).")
    parser.add_argument("--json", dest="json_out", default=None, help="Also write every measurement to this JSON file.")
    parser.add_argument("--probe", default=None, metavar="SIZES", help="Only the sidecar-only memory probe at these sample counts (see the docstring).")
    parser.add_argument("--probe-per-class", type=int, default=1000)
    parser.add_argument("--probe-shard-size", type=int, default=10_000)
    parser.add_argument("--report", default=None, metavar="JSON", help="Measure nothing: print the tables again from a --json file (with this run's --target, --target-workers).")
    args = parser.parse_args()
    if args.probe:
        probe(args)
        return
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        for key in ("per_class", "classes", "workers", "topics", "image_size", "shard_size"):
            setattr(args, key, saved["args"].get(key))
        results, sizes = saved["results"], saved["sizes"]
        report(results, list(results), sizes, {int(k): v for k, v in saved["synth_seconds"].items()}, {int(k): v for k, v in saved["image_bytes"].items()}, args)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if "build" not in stages:
        raise SystemExit("--stages must include build (every other stage reads the root it makes)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {s: [] for s in stages}
    synth_seconds, real_sizes, image_share = {}, [], {}

    shape = f"{args.classes} classes" if args.classes else f"{args.per_class} per class"
    print(
        f"scale model: sizes {sizes}, {shape}, {args.image_size} images, shards of {args.shard_size}, "
        f"{args.workers} workers, LDA {args.topics} topics; machine: {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GB",
        flush=True,
    )
    for size in sizes:
        synth, seconds = synth_once(out, size, args)
        synth_seconds[size] = seconds
        root = out / f"root-{size}"
        shutil.rmtree(root, ignore_errors=True)
        for stage in stages:
            if stage == "density":
                write_features(root)  # not timed: stands in for `wv embed`
            runs = []
            for attempt in range(args.repeat):
                if attempt:
                    for folder in OUTPUTS[stage]:
                        shutil.rmtree(root / folder, ignore_errors=True)
                before = tree_bytes(root)
                runs.append(measure(command(stage, synth, root, args), out / f"{size}-{stage}"))
                runs[-1]["disk"] = tree_bytes(root) - before
            m = min(runs, key=lambda r: r["wall"])
            m["walls"] = [round(r["wall"], 2) for r in runs]
            if stage == "build":
                real = m["figures"]["written"]
                image_share[real] = image_bytes(root)
            results[stage].append(m)
            print(
                f"  N={size:>8,} {stage:<10} wall {m['wall']:7.2f} s  cpu {m['cpu']:7.2f} s (driver {m['driver_cpu']:6.2f})  "
                f"rss driver {m['driver_rss'] / 2**20:6.0f} MB, worker {m['worker_rss'] / 2**20:5.0f} MB, "
                f"tree {m['tree_rss'] / 2**20:6.0f} MB  disk +{human_bytes(m['disk'])}" + (f"  (runs {m['walls']})" if len(runs) > 1 else ""),
                flush=True,
            )
        real_sizes.append(real)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    report(results, stages, real_sizes, synth_seconds, image_share, args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "sizes": real_sizes, "synth_seconds": synth_seconds, "image_bytes": image_share, "results": results}, indent=1, default=str))


def report(results: dict, stages: list, sizes: list, synth_seconds: dict, image_share: dict, args) -> None:
    target = args.target
    ks = [int(k) for k in args.target_workers.split(",")]
    print()
    made = ", ".join(f"{n:,}: {human_seconds(s)}" for n, s in synth_seconds.items() if s is not None)
    print(f"synth (not a stage; {args.workers} workers): {made or 'reused from an earlier run'}")
    print()
    header = "stage       " + "".join(f"{'N=' + format(n, ','):>24}" for n in sizes) + "   k_time (last 2) k_mem k_disk  B/sample"
    print(header)
    print(" " * 12 + "".join(f"{'wall s / driver MB':>24}" for _ in sizes))
    for stage in stages:
        rows = results[stage]
        cells = "".join(f"{r['wall']:>13.2f} / {r['driver_rss'] / 2**20:>6.0f}" for r in rows)
        k_time = slope(sizes, [r["wall"] for r in rows])
        k_last = slope(sizes[-2:], [r["wall"] for r in rows[-2:]])
        k_mem = slope(sizes, [r["driver_rss"] for r in rows])
        k_disk = slope(sizes, [r["disk"] for r in rows])
        _, per_sample = linear(sizes, [r["driver_rss"] for r in rows])
        print(f"{stage:<12}{cells}   {fmt(k_time)}  ({fmt(k_last)})  {fmt(k_mem)}  {fmt(k_disk)}  {per_sample:8.1f}")
    print()
    print("per stage at the largest size: CPU s (driver), worker peak MB, largest process MB, tree peak MB, disk")
    for stage in stages:
        r = results[stage][-1]
        print(
            f"  {stage:<11} cpu {r['cpu']:7.2f} ({r['driver_cpu']:6.2f})  worker {r['worker_rss'] / 2**20:5.0f} MB  "
            f"largest {r['max_rss'] / 2**20:5.0f} MB  tree {r['tree_rss'] / 2**20:6.0f} MB  disk {human_bytes(r['disk'])}"
        )
    print()
    print(f"extrapolated to {target:,} samples (from {sizes[0]:,}..{sizes[-1]:,}; see the docstring for the model):")
    print(f"  {'stage':<11}" + "".join(f"{'time on ' + str(k):>14}" for k in ks) + f"{'driver mem':>13}{'worker mem':>13}{'disk':>10}")
    totals = {k: 0.0 for k in ks}
    disk_total = 0.0
    for stage in stages:
        rows = results[stage]
        driver = extrapolate(sizes, [max(r["driver_cpu"], 1e-3) for r in rows], target)
        work = extrapolate(sizes, [max(r["cpu"] - r["driver_cpu"], 1e-3) for r in rows], target) if stage in POOL_STAGES else 0.0
        if stage not in POOL_STAGES:
            driver = extrapolate(sizes, [r["wall"] for r in rows], target)  # one process: its wall time
        driver_mem, driver_grows = memory_at(sizes, [r["driver_rss"] for r in rows], target)
        worker_mem, worker_grows = memory_at(sizes, [r["worker_rss"] for r in rows], target)
        if stage == "build":  # images at WebVision 2.0's size, the rest as measured (it grows with N)
            images = image_share[max(image_share)]
            disk = ((rows[-1]["disk"] - images) / sizes[-1] + WEBVISION2_IMAGE_BYTES) * target
        else:  # a power law: per-sample outputs grow with N, per-class ones (audit pages) with the classes
            disk = extrapolate(sizes, [max(r["disk"], 1) for r in rows], target) if rows[-1]["disk"] else 0.0
        disk_total += disk
        times = {k: driver + work / k for k in ks}
        for k in ks:
            totals[k] += times[k]
        worker = human_bytes(worker_mem, True) + ("+" if worker_grows else " ") if stage in POOL_STAGES else "- "
        print(f"  {stage:<11}" + "".join(f"{human_seconds(times[k]):>14}" for k in ks) + f"{human_bytes(driver_mem, True) + ('+' if driver_grows else ' '):>13}{worker:>13}{human_bytes(disk):>10}")
    print(f"  {'all':<11}" + "".join(f"{human_seconds(totals[k]):>14}" for k in ks) + f"{'':>26}{human_bytes(disk_total):>10}")
    print(f"  (+: the peak grew at every size, by more than {GROWTH:.0%} in all: a straight-line fit; otherwise the largest peak measured)")
    if "lda" in results:
        print()
        parts = [(n, r["figures"].get("seconds", {})) for n, r in zip(sizes, results["lda"])]
        for n, seconds in parts:
            if isinstance(seconds, dict):
                print(f"lda at N={n:,}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if isinstance(v, (int, float))))


if __name__ == "__main__":
    main()
