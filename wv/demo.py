"""`wv demo`: the whole pipeline on a synthetic dataset, on this machine, step by step.

synth -> shard build (train, val) -> verify -> score lda, keywords -> a probe model trained on the
noisy labels -> embed, density, curriculum split, confidence -> select -> audit report -> a
CurriculumNet run on the selected data -> 10-crop eval -> the same training budget on everything, uncurated,
so the demo ends with the gain (or the loss) of curation. Each step resumes when the demo is re-run.
"""

from collections.abc import Callable
from pathlib import Path

import polars as pl

from wv.curate.audit import write_report
from wv.curate.confidence import score_confidence
from wv.curate.curriculum import curriculum_split
from wv.curate.density import DensityOptions, score_density
from wv.curate.embed import embed
from wv.curate.keywords import KeywordOptions, score_keywords
from wv.curate.lda import LdaOptions, score_lda
from wv.curate.options import CurriculumOptions
from wv.curate.select import select
from wv.models import ModelSpec
from wv.shards import sidecars
from wv.shards.build import BuildOptions, build
from wv.shards.info import describe
from wv.shards.root import Root
from wv.shards.verify import verify
from wv.stream.config import SamplerConfig
from wv.synth import SynthOptions, write_synth
from wv.train.evaluate import eval_checkpoint
from wv.train.trainer import CHECKPOINT, TrainOptions, train

DROP_RULES = ("curriculum.subset == 2 and confidence.p_label < 0.5", "lda.similarity < 0.05")


def run_demo(out: str | Path, workers: int = 2, classes: int = 20, per_class: int = 100, epochs: int = 6, progress: bool = True, say: Callable[[str], None] = print, uncurated: bool = True) -> dict:
    out = Path(out)
    source, root, runs = out / "webvision", out / "root", out / "runs"
    figures = {"out": str(out), "root": str(root)}
    if not (source / "ground_truth.parquet").is_file():
        say(f"1. wv synth {source}: {classes} classes, 30% planted noise, a few broken files")
        figures["synth"] = write_synth(source, SynthOptions(classes=classes, per_class=per_class, noise=0.3, imbalance=3.0, val_per_class=10, defects=True, seed=0), workers)
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
    text_scores(root, workers, progress, say, figures)
    image_scores(root, runs, epochs, workers, progress, say, figures)
    curate_and_audit(root, source, workers, progress, say, figures)
    curriculum_run(root, runs, epochs, workers, progress, say, figures)
    uncurated_run(root, runs, epochs, workers, progress, say, figures, uncurated)
    return figures


def text_scores(root, workers, progress, say, figures) -> None:
    say(f"4. wv score lda {root} --topics 20   and   wv score keywords {root}")
    figures["lda"] = score_lda(root, LdaOptions(topics=20, passes=4, no_below=2), workers=workers, progress=progress)
    figures["keywords"] = score_keywords(root, KeywordOptions(min_docs=2), workers=workers, progress=progress)


def probe_options(runs: Path, name: str, epochs: int, workers: int, **kw) -> TrainOptions:
    return TrainOptions(out=str(runs / name), arch="tinycnn", image_size=48, epochs=epochs, lr=0.05, lr_step=max(epochs - 2, 1), workers=workers, resume=(runs / name / CHECKPOINT).is_file(), **kw)


def image_scores(root, runs, epochs, workers, progress, say, figures) -> None:
    say(f"5. wv train --shards {root} --arch tinycnn --out {runs / 'probe'}   (a probe model on the noisy labels)")
    figures["probe"] = train(root, probe_options(runs, "probe", epochs, workers), SamplerConfig(batch_size=64, selection="none"), progress=progress, say=say)
    checkpoint = ModelSpec(model=figures["probe"]["paths"]["checkpoint"])
    say(f"6. wv embed {root} --model {checkpoint.model} --name probe;  wv score density --features probe;  wv curriculum split;  wv score confidence")
    figures["embed"] = embed(root, checkpoint, name="probe", loader_workers=0, device="cpu")
    figures["density"] = score_density(root, DensityOptions(features="probe"), device="cpu", progress=progress)
    figures["curriculum"] = curriculum_split(root, CurriculumOptions(by="density", subsets=3), progress=progress)
    figures["confidence"] = score_confidence(root, checkpoint, device="cpu")


def curate_and_audit(root, source, workers, progress, say, figures) -> None:
    rules = " ".join(f'--drop "{r}"' for r in DROP_RULES)
    say(f"7. wv select {root} {rules}")
    figures["select"] = select(root, list(DROP_RULES), workers=workers, progress=progress)
    figures["noise"] = planted_noise(root, source)
    say(f"   kept {figures['select']['kept']}, dropped {figures['select']['dropped']}: {figures['noise']['dropped']:.0%} of the dropped are planted noise, {figures['noise']['kept']:.0%} of the kept")
    say(f"8. wv audit {root}")
    figures["audit"] = write_report(root, workers=workers, progress=progress)
    figures["report"] = figures["audit"]["paths"]["report"]
    say(f"   report: {figures['report']}")


def planted_noise(root, source) -> dict:
    """The share of planted noise (ground_truth.parquet) among the dropped and the kept samples."""
    truth = pl.read_parquet(Path(source) / "ground_truth.parquet", columns=["__key__", "is_noisy"])
    decisions = sidecars.read_scores(Root(root), "selection", split="train", columns=["keep"]).collect()
    shares = decisions.join(truth, on="__key__").group_by("keep").agg(pl.col("is_noisy").mean())
    return {("kept" if keep else "dropped"): share for keep, share in shares.iter_rows()}


def curriculum_run(root, runs, epochs, workers, progress, say, figures) -> None:
    stages = f"0:0;{max(epochs // 3, 1)}:0,1;{max(2 * epochs // 3, 2)}:0,1,2"
    say(f"9. wv train --shards {root} --val {root} --curriculum '{stages}' --subset-weights 1,0.5,0.5 --out {runs / 'curriculum'}")
    sampler = SamplerConfig(batch_size=64, curriculum=stages, subset_weights="1,0.5,0.5")
    figures["train"] = train(root, probe_options(runs, "curriculum", epochs, workers, val=str(root)), sampler, progress=progress, say=say)
    checkpoint = figures["train"]["paths"]["checkpoint"]
    say(f"10. wv eval --shards {root} --checkpoint {checkpoint} --crops 10")
    figures["eval"] = eval_checkpoint(checkpoint, root, crops=10, workers=min(workers, 2), device="cpu", progress=progress)
    say(f"   val top-1 {figures['eval']['top1']:.3f}, top-5 {figures['eval']['top5']:.3f} ({figures['eval']['n']} images, 10 crops)")


def uncurated_run(root, runs, epochs, workers, progress, say, figures, run: bool) -> None:
    """The same model and budget on every sample, no selection and no curriculum: what the curation gained."""
    curated = figures["train"]["val_top1"]
    if not run:
        figures["uncurated"] = None
        figures["gain"] = {"curated_val_top1": curated, "uncurated_val_top1": None, "skipped": "the uncurated run was not asked for (it would take as long as the curated one)"}
        say(f"11. skipped the uncurated run ({figures['gain']['skipped']}); curated val top-1 {curated:.3f}")
        return
    say(f"11. wv train --shards {root} --val {root} --selection none --out {runs / 'uncurated'}   (same budget, no curation)")
    figures["uncurated"] = train(root, probe_options(runs, "uncurated", epochs, workers, val=str(root)), SamplerConfig(batch_size=64, selection="none"), progress=progress, say=say)
    plain = figures["uncurated"]["val_top1"]
    figures["gain"] = {"curated_val_top1": curated, "uncurated_val_top1": plain, "gain": round(curated - plain, 4)}
    say(f"   val top-1 (1 crop, {epochs} epochs each): curated {curated:.3f}, uncurated {plain:.3f} ({curated - plain:+.3f})")
