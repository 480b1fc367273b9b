"""Pre-training: val top-1 after the same fine-tuning budget, from scratch and from each `wv pretrain` task.

    python bench/pretrain.py --classes 8 --per-class 60 --pretrain-epochs 4 --finetune-epochs 3 --seeds 0 1 2

One synthetic root (wv synth, 20% label noise; keywords and label weights scored by the real scorers,
`wv score keywords` and `wv score lda`). For every seed, a tinycnn is fine-tuned for --finetune-epochs
on the web labels with the same sampler, optimiser and schedule:
    scratch        from a random initialisation
    keywords       from `wv pretrain --task keywords` (--pretrain-epochs), its body via `wv train --init`
    label-weights  from `wv pretrain --task label-weights`
    permutation    from `wv pretrain --task permutation` (2 x 2 tiles of the training crops)
The table gives the mean and the spread (standard deviation and min..max) of val top-1 over the seeds,
and each pre-training's difference from scratch. The pre-training epochs come on top of the budget.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wv.curate.keywords import KeywordOptions, score_keywords  # noqa: E402
from wv.curate.lda import LdaOptions, score_lda  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.stream.config import SamplerConfig  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402
from wv.train.options import PretrainOptions  # noqa: E402
from wv.train.trainer import TrainOptions, train  # noqa: E402

TASKS = ("keywords", "label-weights", "permutation")


def prepare(out: Path, classes: int, per_class: int) -> Path:
    root = out / "root"
    write_synth(out / "synth", SynthOptions(classes=classes, per_class=per_class, noise=0.2, val_per_class=10, width=48, height=48, seed=7))
    for split in ("train", "val"):
        build(out / "synth", root, BuildOptions(split=split, shard_size=64), workers=1, progress=False)
    score_lda(root, LdaOptions(topics=2 * classes, passes=4, no_below=2), progress=False)
    score_keywords(root, KeywordOptions(min_docs=3), progress=False)
    return root


def run(root: Path, out: Path, seed: int, epochs: int, lr: float, args, init=None, pretrain=None) -> dict:
    options = TrainOptions(
        out=str(out),
        arch="tinycnn",
        width=args.width,
        image_size=32,
        epochs=epochs,
        lr=lr,
        lr_step=100,
        workers=args.workers,
        log_every=1000,
        val=str(root) if pretrain is None or pretrain.task != "keywords" else None,
        init=str(init) if init else None,
    )
    sampler = SamplerConfig(batch_size=args.batch_size, seed=seed, selection="none")
    return train(root, options, sampler, progress=False, say=lambda *a: None, pretrain=pretrain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wv-bench-pretrain-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        root = prepare(tmp, args.classes, args.per_class)
        print(f"root: {args.classes} classes x {args.per_class} train images (20% noise), 10 val each; scored in {time.perf_counter() - started:.0f} s", flush=True)
        results = {name: [] for name in ("scratch", *TASKS)}
        for seed in args.seeds:
            results["scratch"].append(run(root, tmp / f"scratch-{seed}", seed, args.finetune_epochs, args.lr, args)["val_top1"])
            for task in TASKS:
                settings = PretrainOptions(task=task, grid=2, permutations=24, holdout=0.05)
                pre = run(root, tmp / f"{task}-{seed}", seed, args.pretrain_epochs, args.lr, args, pretrain=settings)
                tuned = run(root, tmp / f"{task}-{seed}-ft", seed, args.finetune_epochs, args.lr, args, init=Path(pre["paths"]["checkpoint"]))
                results[task].append(tuned["val_top1"])
                metric = {k: round(v, 3) for k, v in pre.items() if k.startswith(("val_", "train_tile")) and isinstance(v, float)}
                print(
                    f"seed {seed} {task}: pre-training loss {pre['first_loss']:.3f} -> {pre['final_loss']:.3f} {metric}; "
                    f"fine-tuned val top-1 {tuned['val_top1']:.3f} (scratch {results['scratch'][-1]:.3f})",
                    flush=True,
                )
        base = statistics.mean(results["scratch"])
        print(f"\nval top-1 after {args.finetune_epochs} fine-tuning epochs, {len(args.seeds)} seeds (pre-training: {args.pretrain_epochs} epochs on top)")
        print("| start | mean | std | min..max | vs scratch |")
        print("|---|---|---|---|---|")
        for name, values in results.items():
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"| {name} | {statistics.mean(values):.3f} | {spread:.3f} | {min(values):.3f}..{max(values):.3f} | {statistics.mean(values) - base:+.3f} |")
        print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
