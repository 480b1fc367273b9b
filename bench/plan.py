"""`wv shard build`'s planning at WebVision 2.0 scale: file lists of N lines -> the plan. No image is read.

    python bench/plan.py                              # 1M, 4M and 16M lines (16M: about 1 min and 0.6 GB of lists)
    python bench/plan.py --lines 1000000 --repeat 3

Writes train_filelist_google.txt and train_filelist_flickr.txt (half the lines each; Google ids of 14
characters, Flickr ids of 10 digits, 10,000 query folders, 5,000 classes) and one placeholder image per
source for the layout probe, then runs, each in its own process for an exact peak RSS (ru_maxrss):

  wv       wv.shards.build.make_plan: parse, check, find duplicates, shuffle (what `wv shard build`
           holds while it writes shards)
  polars   pl.read_csv of both lists into a (path, label) table, nothing else: the least any tool
           that reads the lists whole holds

and prints time, peak RSS above the interpreter with its imports (RSS after them) and bytes per line,
with the ratios wv / polars; the growth between sizes is the per-line cost without start-up's.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measuring import peak_mb, resident_mb  # noqa: E402

CLASSES, QUERIES = 5000, 10000
ID_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)


def write_lists(root: Path, lines: int, seed: int = 0) -> None:
    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "synsets.txt").write_text("".join(f"n{c:08d} class {c}\n" for c in range(CLASSES)))
    rng = np.random.default_rng(seed)
    for source, count in (("google", lines - lines // 2), ("flickr", lines // 2)):
        with open(info / f"train_filelist_{source}.txt", "w") as f:
            for start in range(0, count, 1_000_000):
                f.write(list_text(source, start, min(1_000_000, count - start), count, rng))
        first = (info / f"train_filelist_{source}.txt").open().readline().split()[0]
        (root / first).parent.mkdir(parents=True, exist_ok=True)
        (root / first).write_bytes(b"")


def list_text(source: str, start: int, size: int, total: int, rng) -> str:
    queries = np.arange(start, start + size) * QUERIES // total + 1
    if source == "google":
        ids = [i.decode() for i in ID_ALPHABET[rng.integers(0, 64, size=(size, 14))].view("S14").ravel()]
    else:
        ids = [str(i) for i in rng.integers(10**9, 10**10, size=size)]
    return "".join(f"{source}/q{q:05d}/{i}.jpg {(q - 1) // 2}\n" for q, i in zip(queries, ids))


def run_wv(root: str) -> dict:
    from wv.shards.build import BuildOptions, make_plan
    from wv.shards.layout import open_webvision

    started = time.perf_counter()
    plan, _ = make_plan(open_webvision(root), BuildOptions(sources=("google", "flickr")))
    return {"seconds": time.perf_counter() - started, "rows": plan.height}


def run_polars(root: str) -> dict:
    import polars as pl

    started = time.perf_counter()
    tables = [
        pl.read_csv(path, has_header=False, separator=" ", new_columns=["path", "label"], schema_overrides={"label": pl.Int32}) for path in sorted(Path(root, "info").glob("train_filelist_*.txt"))
    ]
    return {"seconds": time.perf_counter() - started, "rows": sum(t.height for t in tables)}


def child(which: str, root: str) -> None:
    import polars  # noqa: F401  the imports are not the method's memory

    import wv.shards.build  # noqa: F401

    before = resident_mb()
    result = {"wv": run_wv, "polars": run_polars}[which](root)
    result["peak_mb"] = peak_mb() - before
    print(json.dumps(result))


def measure(which: str, root: Path, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--child", which, str(root)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"seconds": min(r["seconds"] for r in runs), "peak_mb": min(r["peak_mb"] for r in runs), "rows": runs[0]["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="1000000,4000000,16000000")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method; the best time and the lowest peak")
    parser.add_argument("--work", type=Path, default=Path("bench-out/plan"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    print(f"{'lines':>11} {'method':>7} {'seconds':>8} {'peak MB':>8} {'B/line':>7}")
    for lines in map(int, args.lines.split(",")):
        root = args.work / f"lists-{lines}"
        if not (root / "info" / "train_filelist_flickr.txt").is_file():
            write_lists(root, lines)
        result = {which: measure(which, root, args.repeat) for which in ("wv", "polars")}
        for which, r in result.items():
            print(f"{lines:>11,} {which:>7} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} {r['peak_mb'] * 2**20 / lines:>7.0f}")
        wv, base = result["wv"], result["polars"]
        print(f"{'':>11} {'wv/pl':>7} {wv['seconds'] / base['seconds']:>8.2f} {wv['peak_mb'] / base['peak_mb']:>8.2f}   ({wv['rows']:,} planned)")


if __name__ == "__main__":
    main()
