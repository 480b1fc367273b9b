"""Does curation pay? The seeds' recipes side by side on one synthetic root, one model, one budget.

The root: `wv synth` with 40% planted label noise (mostly flips: another class's image and text, and
image-only flips, so the noise is learnable and confusing rather than off-topic junk), few images per
class and small images (32x24 by default), so that a tinycnn trained on everything memorises wrong
labels and loses points against training on the clean subset. The evidence is the user's: wv score
lda and keywords, a probe tinycnn trained briefly on the noisy labels (`wv train`), `wv embed` with
it, density, curriculum split, confidence, `wv score noise`.

Every recipe trains the same model (tinycnn) for the same epochs with `wv train`, differing only in
its sampler/loss options, selection or starting weights (the WeChat rows pre-train for half the
budget first, on top of it; the pseudo-labels come from `wv relabel` of the first seed's model
trained on everything for the whole budget, as WeChat relabelled with its trained models); the figure is clean val top-1 (the val split's labels are
right), mean and spread over seeds. A recipe is one entry in RECIPES: (name, what it needs, train
option overrides, sampler option overrides); a recipe left out by --only is a row "not measured". Usage:

    python bench/recipes.py --out /tmp/bench-recipes [--seeds 3 --epochs 8 --classes 8 --per-class 80]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wv.curate.curriculum import curriculum_split  # noqa: E402
from wv.curate.density import DensityOptions, score_density  # noqa: E402
from wv.curate.embed import embed  # noqa: E402
from wv.curate.keywords import KeywordOptions, score_keywords  # noqa: E402
from wv.curate.lda import LdaOptions, score_lda  # noqa: E402
from wv.curate.noise import score_noise  # noqa: E402
from wv.curate.noise_options import NoiseOptions, ProbeOptions  # noqa: E402
from wv.curate.options import CurriculumOptions  # noqa: E402
from wv.curate.relabel import relabel  # noqa: E402
from wv.curate.relabel_options import RelabelOptions  # noqa: E402
from wv.curate.select import select  # noqa: E402
from wv.models import ModelSpec  # noqa: E402
from wv.shards import sidecars  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.stream.config import SamplerConfig  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402
from wv.train.options import PretrainOptions  # noqa: E402
from wv.train.trainer import TrainOptions, train  # noqa: E402

PSEUDO = "pseudo_everything"


def gate_to_zero(epochs: int) -> str:
    """docs/recipes.md's schedule: no gate for two epochs (a fresh model's confidences are all near 1 / classes), then 0.5 lowered to 0."""
    return f"0@0,0@2,0.5@3,0@{max(epochs - 1, 4)}"


def stages(epochs: int) -> str:
    return f"0:0;{max(epochs // 3, 1)}:0,1;{max(2 * epochs // 3, 2)}:0,1,2"


# (name, selection or prerequisite it needs (None: not measured yet), train overrides(epochs), sampler overrides(epochs))
RECIPES = [
    ("everything (no curation)", "none", lambda e: {}, lambda e: {}),
    ("clean subset (ceiling: ground truth)", "sel_truth", lambda e: {}, lambda e: {}),
    ("LDA: drop the lowest 10% per class (gombru)", "sel_lda10", lambda e: {}, lambda e: {}),
    ("LDA soft labels (weight similarity/median below the median)", "none", lambda e: {"soft_label": "lda.similarity", "soft_threshold": "MEDIAN"}, lambda e: {}),
    ("CurriculumNet: stages 0 / 0,1 / 0,1,2, subset weights 1/0.5/0.5", "none", lambda e: {}, lambda e: {"curriculum": stages(e), "subset_weights": "1,0.5,0.5"}),
    ("gated backprop 0.5 lowered to 0 (SenseTime)", "none", lambda e: {"backprop_gate": gate_to_zero(e)}, lambda e: {}),
    ("inverse-frequency sampling (ACRV)", "none", lambda e: {}, lambda e: {"class_balance": "draw"}),
    ("wv score noise: drop noise.noisy", "sel_noise", lambda e: {}, lambda e: {}),
    ("wv score noise drop + CurriculumNet subset weights", "sel_noise", lambda e: {}, lambda e: {"curriculum": stages(e), "subset_weights": "1,0.5,0.5"}),
    ("keyword pre-training (WT-set), then fine-tune with --init (WeChat)", "none", lambda e: {"init": "PRETRAINED:keywords"}, lambda e: {}),
    ("label-weight pre-training (LW-set), then fine-tune with --init (WeChat)", "none", lambda e: {"init": "PRETRAINED:label-weights"}, lambda e: {}),
    ("pseudo-labels from wv relabel of the everything model, confidence >= 0.9 (WeChat)", "none", lambda e: {}, lambda e: {"labels": f"{PSEUDO}.label"}),
    ("wv score noise drop + label-weight pre-training", "sel_noise", lambda e: {"init": "PRETRAINED:label-weights"}, lambda e: {}),
    ("wv score noise drop + LDA soft labels", "sel_noise", lambda e: {"soft_label": "lda.similarity", "soft_threshold": "MEDIAN"}, lambda e: {}),
]


def make_root(out: Path, args) -> tuple[Path, Path]:
    source, root = out / "synth", out / "root"
    if not (source / "ground_truth.parquet").is_file():
        write_synth(
            source,
            SynthOptions(
                classes=args.classes,
                per_class=args.per_class,
                noise=args.noise,
                outlier_share=0.1,
                image_flip_share=0.3,
                val_per_class=args.val_per_class,
                imbalance=args.imbalance,
                width=args.image_size,
                height=args.image_size * 3 // 4,
                seed=args.data_seed,
            ),
            args.workers,
        )
    for split in ("train", "val"):
        build(source, root, BuildOptions(split=split, shard_size=max(args.classes * args.per_class // 8, 20)), workers=args.workers, progress=False)
    return source, root


def base_options(out: Path, args, seed: int, **kw) -> tuple[TrainOptions, dict]:
    train_options = dict(out=str(out), arch="tinycnn", image_size=args.image_size, epochs=args.epochs, lr=0.05, lr_step=max(args.epochs - 2, 1), workers=0, device="cpu", **kw)
    return train_options, {"batch_size": 32, "seed": seed}


def prepare(root: Path, source: Path, out: Path, args) -> None:
    """The evidence and the selections the recipes use (each resumes)."""
    r = Root(root)
    score_lda(root, LdaOptions(topics=20, passes=4, no_below=2), workers=args.workers, progress=False)
    options, sampler = base_options(out / "probe", args, 0, val=None)
    options["epochs"] = 3  # early: before the probe model memorises the noise
    options["resume"] = (out / "probe" / "checkpoint.pt").is_file()
    probe = train(root, TrainOptions(**options), SamplerConfig(**sampler, selection="none"), progress=False, say=lambda *a: None)
    spec = ModelSpec(model=probe["paths"]["checkpoint"])
    embed(root, spec, name="cnn", loader_workers=0, device="cpu")
    score_density(root, DensityOptions(features="cnn"), device="cpu", progress=False)
    curriculum_split(root, CurriculumOptions(by="density", subsets=3), progress=False)
    curriculum_split(root, CurriculumOptions(by="lda:similarity", subsets=10, method="quantile"), name="lda10", progress=False)
    score_keywords(root, KeywordOptions(min_docs=2), workers=args.workers, progress=False)
    score_noise(root, NoiseOptions(), features="cnn", probe=ProbeOptions(folds=4), progress=False)
    for task in ("keywords", "label-weights"):
        options, sampler = base_options(out / f"pretrain-{task}", args, 0, val=None)
        options["epochs"] = max(args.epochs // 2, 1)  # WeChat pre-trains, then fine-tunes: these epochs come on top of the budget
        options["resume"] = (out / f"pretrain-{task}" / "checkpoint.pt").is_file()
        train(root, TrainOptions(**options), SamplerConfig(**sampler, selection="none"), progress=False, say=lambda *a: None, pretrain=PretrainOptions(task=task))
    truth = pl.read_parquet(source / "ground_truth.parquet", columns=["__key__", "is_noisy"])
    for shard in r.shard_names("train"):
        keys = sidecars.shard_keys(r, shard)
        frame = pl.DataFrame({"__key__": keys}).join(truth, on="__key__", how="left", maintain_order="left")
        sidecars.write_scores(r, "truth", shard, frame.with_columns(pl.col("is_noisy").fill_null(False)))
    for name, rule in (("sel_truth", "truth.is_noisy"), ("sel_lda10", "lda10.subset == 9"), ("sel_noise", "noise.noisy")):
        select(root, [rule], min_per_class=0, max_drop_fraction=1.0, name=name, progress=False)


def median_similarity(root: Path) -> float:
    values = sidecars.read_scores(Root(root), "lda", split="train", columns=["similarity"]).collect()["similarity"]
    return float(values.drop_nulls().median())


def pseudo_labels(root: Path, out: Path, args) -> None:
    """WeChat's relabelling: the model trained on everything (seed 0, the whole budget) gives a pseudo-label where it is confident."""
    if Root(root).score_path(PSEUDO, Root(root).shard_names("train")[0]).is_file():
        return
    name, selection, train_kw, sampler_kw = RECIPES[0]
    run_recipe(root, out, args, name, selection, train_kw, sampler_kw, seed=0)
    model = out / "runs" / f"{RECIPES_INDEX[name]:02d}-seed0" / "checkpoint.pt"
    relabel(root, RelabelOptions(models=(str(model),), min_confidence=0.9, loader_workers=0, device="cpu"), name=PSEUDO)


def run_recipe(root: Path, out: Path, args, name: str, selection: str, train_kw, sampler_kw, seed: int) -> float:
    kw = train_kw(args.epochs)
    if "labels" in sampler_kw(args.epochs):
        pseudo_labels(root, out, args)
    if kw.get("soft_threshold") == "MEDIAN":
        kw["soft_threshold"] = median_similarity(root)
    if str(kw.get("init", "")).startswith("PRETRAINED:"):
        kw["init"] = str(out / f"pretrain-{kw['init'].split(':')[1]}" / "checkpoint.pt")
    folder = out / "runs" / f"{RECIPES_INDEX[name]:02d}-seed{seed}"
    options, sampler = base_options(folder, args, seed, val=str(root), **kw)
    options["resume"] = (folder / "checkpoint.pt").is_file()
    if options["resume"]:
        options.pop("init", None)  # a resumed run keeps its own weights
    summary = train(root, TrainOptions(**options), SamplerConfig(**sampler, selection=selection, **sampler_kw(args.epochs)), progress=False, say=lambda *a: None)
    return float(summary["val_top1"])


RECIPES_INDEX = {name: i for i, (name, *_) in enumerate(RECIPES)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--val-per-class", type=int, default=25)
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--imbalance", type=float, default=1.0, help="Largest / smallest class in train (val stays balanced).")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default=None, help="Comma-separated recipe numbers (0-based) to run, in that order.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source, root = make_root(out, args)
    started = time.time()
    prepare(root, source, out, args)
    prepared = round(time.time() - started, 1)
    order = [int(i) for i in args.only.split(",")] if args.only else range(len(RECIPES))
    rows = [{"recipe": name, "top1": None} for name, *_ in RECIPES]
    for index in order:  # in the order asked: the rows that matter most first when time is short
        name, selection, train_kw, sampler_kw = RECIPES[index]
        scores = [run_recipe(root, out, args, name, selection, train_kw, sampler_kw, seed) for seed in range(args.seeds)]
        rows[index] = {"recipe": name, "top1": scores, "mean": statistics.mean(scores), "spread": statistics.stdev(scores) if len(scores) > 1 else 0.0}
        print(f"{name}: {statistics.mean(scores):.3f} (+- {rows[index]['spread']:.3f}) {scores}", flush=True)
    (out / "recipes.json").write_text(json.dumps({"args": vars(args), "prepare_seconds": prepared, "rows": rows}, indent=2))
    print("| recipe | clean val top-1 (mean +- sd over seeds) | seeds |\n|---|---|---|")
    for row in rows:
        cell = f"{row['mean']:.3f} +- {row['spread']:.3f}" if row["top1"] else "not measured"
        print(f"| {row['recipe']} | {cell} | {len(row['top1']) if row['top1'] else '-'} |")


if __name__ == "__main__":
    main()
