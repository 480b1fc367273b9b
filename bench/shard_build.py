"""Shard build speed: `wv shard build` beside three references on the same files, in one run.

    python bench/shard_build.py --images 12000 --workers 2

References:
  tar cf            copying the same image files into one tar: the I/O limit (no checks, no metadata)
  decode limit      single-core full JPEG decode rate (PIL) x workers: the limit of a full check
  ShardWriter loop  a plain webdataset ShardWriter loop, one process, doing the same checks and
                    joining the same meta JSON (all meta loaded into a dict first)
The page cache is warmed first so every method reads from memory. Each method runs --repeat times,
interleaved (the machine may be shared: interference only adds time), and its best run counts.
Prints images/s, ratios, and the CPU time per image of all processes (less disturbed by other jobs).
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measuring import cpu_seconds  # noqa: E402

from wv.shards.images import BadImage, prepare_image  # noqa: E402
from wv.shards.meta import normalise, read_meta_file  # noqa: E402

# The build's spawned workers import this script again (multiprocessing's spawn runs it as __mp_main__),
# so what it imports at the top is charged to each of them. Kept to what a `wv shard build` worker
# imports anyway; the planning side (wv.shards.build: numpy, tqdm) and wv.synth are imported where used.


def synth_once(out: Path, images: int, size: str, workers: int) -> Path:
    from wv.synth import SynthOptions, write_synth

    source = out / f"synth-{images}-{size}"
    if not (source / "ground_truth.parquet").is_file():
        shutil.rmtree(source, ignore_errors=True)
        width, height = (int(v) for v in size.split("x"))
        classes = 20
        write_synth(source, SynthOptions(classes=classes, per_class=images // classes, val_per_class=0, noise=0.2, width=width, height=height, seed=0), workers=workers)
    return source


def list_images(source: Path) -> list[tuple[str, int]]:
    entries = []
    for name in ("google", "flickr"):
        for line in (source / "info" / f"train_filelist_{name}.txt").read_text().splitlines():
            path, label = line.rsplit(" ", 1)
            entries.append((path, int(label)))
    return entries


def warm(source: Path, entries) -> int:
    return sum(len((source / p).read_bytes()) for p, _ in entries)


def time_tar(source: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["tar", "cf", str(out / "plain.tar"), "-C", str(source), "google", "flickr"], check=True)
    seconds = time.perf_counter() - start
    (out / "plain.tar").unlink()
    return seconds


def time_decode(source: Path, entries, limit: int = 3000) -> tuple[float, float]:
    """Seconds per image for a full PIL decode on one core, and CPU seconds per image."""
    data = [(source / p).read_bytes() for p, _ in entries[:limit]]
    start, cpu = time.perf_counter(), time.process_time()
    for d in data:
        Image.open(io.BytesIO(d)).load()
    return (time.perf_counter() - start) / len(data), (time.process_time() - cpu) / len(data)


def time_shardwriter(source: Path, entries, out: Path, check: str) -> float:
    import webdataset as wds  # imports torch; kept out of the module so spawned wv workers stay light

    start = time.perf_counter()
    meta = {}
    for path in (source / "meta").glob("*/*.json"):
        status, records = read_meta_file(path)
        for image_id, record in records:
            meta[(path.parent.name, path.stem, image_id)] = record
    target = out / f"shardwriter-{check}"
    target.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(target / "train-%06d.tar"), maxcount=1000, verbose=0) as sink:
        for path, label in entries:
            src, query, file = path.split("/")
            image_id = file.rsplit(".", 1)[0]
            try:
                image = prepare_image((source / path).read_bytes(), check)
            except (BadImage, FileNotFoundError):
                continue
            text = normalise(meta.get((src, query, image_id)), "ok")
            sink.write(
                {
                    "__key__": f"{src}-{query}-{image_id}",
                    "cls": str(label),
                    "jpg": image.data,
                    "json": json.dumps({"label": label, "path": path, **{k: text[k] for k in ("title", "description", "tags", "url")}}),
                    "txt": text["text"],
                }
            )
    seconds = time.perf_counter() - start
    shutil.rmtree(target)
    return seconds


def time_wv(source: Path, out: Path, check: str, workers: int) -> float:
    from wv.shards.build import BuildOptions, build

    root = out / f"wv-{check}"
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    build(source, root, BuildOptions(check=check, shard_size=1000), workers=workers, progress=False)
    seconds = time.perf_counter() - start
    shutil.rmtree(root)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12000)
    parser.add_argument("--size", default="340x256")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="bench-out/shard_build")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each method, interleaved; the best of each is reported.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = synth_once(out, args.images, args.size, args.workers)
    entries = list_images(source)
    n = len(entries)
    total_bytes = warm(source, entries)
    print(f"{n} images, {total_bytes / n / 1024:.1f} KB each on average, {args.size}, {args.workers} workers, best of {args.repeat}; load average before {os.getloadavg()[0]:.2f}")

    import webdataset  # noqa: F401  (imports torch) once here, outside every timing and CPU count

    import wv.shards.build  # noqa: F401  (likewise: time_wv's import)

    seconds, cpu_ms = {}, {}  # best wall seconds; least CPU ms per image (all processes)
    for _ in range(args.repeat):
        runs = {"tar": lambda: time_tar(source, out)}
        for check in ("full", "cheap"):
            runs[f"shardwriter-{check}"] = lambda check=check: time_shardwriter(source, entries, out, check)
            runs[f"wv-{check}"] = lambda check=check: time_wv(source, out, check, args.workers)
        decode_wall, decode_cpu = time_decode(source, entries)
        seconds["decode"] = min(seconds.get("decode", float("inf")), decode_wall)
        cpu_ms["decode"] = min(cpu_ms.get("decode", float("inf")), 1000 * decode_cpu)
        for name, run in runs.items():
            started = cpu_seconds()
            seconds[name] = min(seconds.get(name, float("inf")), run())
            cpu_ms[name] = min(cpu_ms.get(name, float("inf")), 1000 * (cpu_seconds() - started) / n)
    tar_rate = n / seconds["tar"]
    decode_limit = args.workers / seconds["decode"]
    rows = [("tar cf (copy limit)", tar_rate), (f"decode limit (1-core decode x {args.workers})", decode_limit)]
    results = {}
    for check in ("full", "cheap"):
        results[check] = {"shardwriter": n / seconds[f"shardwriter-{check}"], "wv": n / seconds[f"wv-{check}"]}
        rows += [(f"ShardWriter loop, {check} check, 1 process", results[check]["shardwriter"]), (f"wv shard build --check {check}, {args.workers} workers", results[check]["wv"])]
    with pl.Config(fmt_str_lengths=60, tbl_width_chars=100):
        print(pl.DataFrame({"method": [r[0] for r in rows], "images/s": [round(r[1]) for r in rows]}))
    ratios = {
        "full vs decode limit (target >= 0.80)": results["full"]["wv"] / decode_limit,
        "cheap vs tar (target >= 0.50)": results["cheap"]["wv"] / tar_rate,
        "full vs ShardWriter loop, full check (target >= 1.5)": results["full"]["wv"] / results["full"]["shardwriter"],
        "cheap vs ShardWriter loop, cheap check (target >= 1.5)": results["cheap"]["wv"] / results["cheap"]["shardwriter"],
    }
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    print(
        f"CPU ms per image, all processes (least of the runs): full decode alone {cpu_ms['decode']:.3f}; "
        f"wv full {cpu_ms['wv-full']:.3f}, ShardWriter full {cpu_ms['shardwriter-full']:.3f}; "
        f"wv cheap {cpu_ms['wv-cheap']:.3f}, ShardWriter cheap {cpu_ms['shardwriter-cheap']:.3f}; tar cf {cpu_ms['tar']:.3f}"
    )


if __name__ == "__main__":
    main()
