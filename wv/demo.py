"""`wv demo`: the whole pipeline on a synthetic dataset, on this machine, step by step."""

from pathlib import Path

from wv.shards.build import BuildOptions, build
from wv.shards.info import describe
from wv.shards.verify import verify
from wv.synth import SynthOptions, write_synth


def run_demo(out, workers: int = 2, classes: int = 20, per_class: int = 100, progress: bool = True, say=print) -> dict:
    out = Path(out)
    source, root = out / "webvision", out / "root"
    figures = {"out": str(out)}
    if not (source / "ground_truth.parquet").is_file():
        say(f"1. wv synth {source}: {classes} classes, 30% planted noise, a few broken files")
        figures["synth"] = write_synth(source, SynthOptions(classes=classes, per_class=per_class, noise=0.3, imbalance=3.0, defects=True, seed=0), workers)
    else:
        say(f"1. {source} already exists; reusing it")
    for split in ("train", "val"):
        say(f"2. wv shard build {source} {root} --split {split}")
        report = build(source, root, BuildOptions(split=split, shard_size=250), workers=workers, progress=progress)
        figures[f"build_{split}"] = vars(report)
        say(f"   {report.written} written, {report.rejected} rejected, {report.shards} shards")
    say(f"3. wv shard verify {root}")
    figures["verify"] = verify(root, workers=workers, progress=progress)
    say(f"   {'OK' if figures['verify']['ok'] else 'FAILED'}: {figures['verify']['samples']} samples checked")
    figures["info"] = {k: v for k, v in describe(root).items() if k in ("meta", "rejects")}
    figures["root"] = str(root)
    return figures
