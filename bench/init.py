"""`wv train --init` against a run from scratch: pre-train a tinycnn on 10 synthetic classes, then train on
20 classes at a larger image size, once from the pre-trained weights (--init: body loaded, head afresh)
and once from scratch, with the same options, budget and seed; each run's val top-1 after its first epoch.

    python bench/init.py --seeds 3

    pre-train   ROOT10 (10 classes), --image-size 32, --pre-epochs epochs
    init        ROOT20 (20 classes: the first 10 share their hue and pattern with ROOT10's, their other
                traits are drawn anew), --image-size 48, --epochs, --init pre/checkpoint.pt
    scratch     the same run without --init
Printed per seed and as means; the ratio is init / scratch top-1 (chance: 0.05).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.stream.config import SamplerConfig  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402
from wv.train.trainer import TrainOptions, train  # noqa: E402


def prepare(out: Path, classes: int, per_class: int, seed: int) -> Path:
    source, root = out / f"init-synth-{classes}x{per_class}-{seed}", out / f"init-root-{classes}x{per_class}-{seed}"
    if not (source / "ground_truth.parquet").is_file():
        write_synth(source, SynthOptions(classes=classes, per_class=per_class, val_per_class=10, noise=0.2, width=64, height=48, seed=seed), workers=2)
    if not Root(root).exists():
        for split in ("train", "val"):
            build(source, root, BuildOptions(split=split, shard_size=200, check="cheap"), workers=2, progress=False)
    return root


def run(root: Path, out: Path, seed: int, size: int, epochs: int, batch: int, init: str | None = None) -> dict:
    options = TrainOptions(out=str(out), arch="tinycnn", width=32, image_size=size, epochs=epochs, lr=0.05, workers=1, val=str(root), log_every=1000, device="cpu", init=init)
    summary = train(str(root), options, SamplerConfig(batch_size=batch, seed=seed), progress=False, say=lambda *a: None)
    first = next(json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"kind": "epoch"' in line)
    return {"first_epoch_top1": first["val_top1"], "final_top1": summary["val_top1"], "init": summary["init"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/wv-bench-init")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=60, help="Train images per class of both roots.")
    parser.add_argument("--pre-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1, help="Epochs of the two 20-class runs.")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    out = Path(args.out)
    pre_root, root = prepare(out, 10, args.per_class, seed=101), prepare(out, 20, args.per_class, seed=202)
    rows = []
    for seed in range(args.seeds):
        runs = out / f"runs-{time.time_ns()}"
        run(pre_root, runs / "pre", seed, 32, args.pre_epochs, args.batch_size)
        init = run(root, runs / "init", seed, 48, args.epochs, args.batch_size, init=str(runs / "pre" / "checkpoint.pt"))
        scratch = run(root, runs / "scratch", seed, 48, args.epochs, args.batch_size)
        rows.append((init["first_epoch_top1"], scratch["first_epoch_top1"]))
        report = init["init"]
        print(
            f"seed {seed}: first-epoch val top-1  init {rows[-1][0]:.3f}  scratch {rows[-1][1]:.3f}   "
            f"(init: {report['loaded']} loaded, {report['reinitialised']} re-initialised, {report['ignored']} ignored; "
            f"head {report['head']})",
            flush=True,
        )
    init_mean, scratch_mean = statistics.mean(r[0] for r in rows), statistics.mean(r[1] for r in rows)
    print(f"mean over {len(rows)} seeds: init {init_mean:.3f}  scratch {scratch_mean:.3f}  ratio {init_mean / max(scratch_mean, 1e-9):.2f}x  (chance 0.050)")


if __name__ == "__main__":
    main()
