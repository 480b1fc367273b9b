"""`wv score noise` against cleanlab and against every single score, on a `wv synth` root with planted noise.

One root with every kind of planted noise (wv/synth.py): label flips (another class's image and
text), image-only flips (another class's image, this class's text), off-topic outliers, and right
images with off-topic text (NOT a wrong label: flagging them is a false alarm). The pipeline is the
user's: wv score lda and keywords; a tinycnn trained briefly on the noisy labels (a stand-in for
`wv train`), `wv embed` with it, density, curriculum split, confidence; then `wv score noise`
(its out-of-fold linear probe on the embedding) and `wv score labelissues` (cleanlab's
find_label_issues on the same out-of-fold probe predictions).

Reports, against the ground truth: AUROC, precision, recall, F1 for each method at its own operating
point (wv score noise: p_noisy > 0.5; cleanlab: find_label_issues; a single score: the same mixture
fitted on that score alone, p > 0.5, its unsupervised operating point), and F1 at the best threshold
(an oracle: the most a score could give if someone knew where to cut); per kind of noise the share
each method flags at its operating point. Usage:

    python bench/noise.py --out /tmp/bench-noise [--classes 10 --per-class 150 --noise 0.3]
"""

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wv.curate import noise_core  # noqa: E402
from wv.curate.confidence import score_confidence  # noqa: E402
from wv.curate.curriculum import curriculum_split  # noqa: E402
from wv.curate.density import DensityOptions, score_density  # noqa: E402
from wv.curate.embed import embed  # noqa: E402
from wv.curate.keywords import KeywordOptions, score_keywords  # noqa: E402
from wv.curate.labelissues import score_labelissues  # noqa: E402
from wv.curate.lda import LdaOptions, score_lda  # noqa: E402
from wv.curate.noise import Component, component_values, keyword_counts, score_noise  # noqa: E402
from wv.curate.noise_options import NoiseOptions, ProbeOptions  # noqa: E402
from wv.curate.options import CurriculumOptions  # noqa: E402
from wv.models import ModelSpec, build_model, default_input, eval_transform, save_checkpoint  # noqa: E402
from wv.shards import sidecars  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.read import iter_samples, shard_urls  # noqa: E402
from wv.shards.root import Root  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402

KINDS = ("flip", "image_flip", "outlier", "offtopic_text")
# (score, the command that wrote it, column, higher is noisier, group): every single score the root holds
SINGLE = [
    ("lda", "score lda", "similarity", False, "text"),
    ("keywords", "score keywords", "keywords", False, "text"),
    ("density", "score density", "density", False, "image"),
    ("curriculum", "curriculum split", "subset", True, "image"),
    ("confidence", "score confidence", "p_label", False, "image"),
    ("probe", "score probe", "p_label", False, "image"),
]


def make_root(out: Path, classes: int, per_class: int, noise: float, size: int, seed: int, workers: int) -> tuple[Path, Path]:
    source, root = out / "synth", out / "root"
    if not (source / "ground_truth.parquet").is_file():
        shutil.rmtree(source, ignore_errors=True)
        write_synth(
            source,
            SynthOptions(classes=classes, per_class=per_class, noise=noise, outlier_share=0.3, image_flip_share=0.3, offtopic_text=0.1, val_per_class=5, width=size, height=size * 3 // 4, seed=seed),
            workers,
        )
    if not (root / "shards.parquet").is_file():  # built: a copy of an out folder keeps its root (and its scores) as they are
        build(source, root, BuildOptions(split="train", shard_size=max(per_class * classes // 10, 20)), workers=workers, progress=False)
    return source, root


def train_tinycnn(root: Path, out: Path, epochs: int, size: int = 48, seed: int = 0) -> Path:
    """A tinycnn trained for a few epochs on the noisy labels (early: before it memorises the noise)."""
    path = out / "tinycnn.pt"
    if path.is_file():
        return path
    classes = Root(root).classes()
    transform = eval_transform({**default_input("tinycnn"), "size": size})
    pairs = [(transform(Image.open(io.BytesIO(s["jpg"]))), int(s["cls"])) for s in iter_samples(shard_urls(root, "train"))]
    images, labels = torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    torch.manual_seed(seed)
    model = build_model("tinycnn", len(classes), width=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(labels)).split(64):
            loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    save_checkpoint(path, model.eval(), "tinycnn", len(classes), [c["synset"] for c in classes], {"input": {**default_input("tinycnn"), "size": size}, "arch_options": {"width": 16}, "step": epochs})
    return path


def score_everything(root: Path, checkpoint: Path, workers: int, folds: int) -> dict:
    seconds = {}

    def timed(name, fn):
        started = time.time()
        result = fn()
        seconds[name] = round(time.time() - started, 1)
        return result

    timed("lda", lambda: score_lda(root, LdaOptions(topics=20, passes=4, no_below=2), workers=workers, progress=False))
    timed("keywords", lambda: score_keywords(root, KeywordOptions(min_docs=2), workers=workers, progress=False))
    spec = ModelSpec(model=str(checkpoint))
    timed("embed", lambda: embed(root, spec, name="cnn", loader_workers=0, device="cpu"))
    timed("density", lambda: score_density(root, DensityOptions(features="cnn"), device="cpu", progress=False))
    timed("curriculum", lambda: curriculum_split(root, CurriculumOptions(by="density", subsets=3), progress=False))
    timed("confidence", lambda: score_confidence(root, spec, device="cpu"))
    probe = ProbeOptions(folds=folds)
    timed("noise", lambda: score_noise(root, NoiseOptions(), features="cnn", probe=probe, progress=False))
    timed("labelissues", lambda: score_labelissues(root, "cnn", probe=probe, progress=False))
    return seconds


def single_score(r: Root, component: Component) -> tuple[np.ndarray, np.ndarray]:
    """(suspicion, flags) of one score alone: its per-class z-scores and `wv score noise`'s mixture fitted on it alone
    (its own unsupervised operating point, p > 0.5)."""
    shards = r.shard_names("train")
    counts = {component.score: keyword_counts(r, component, shards)} if component.command == "score keywords" else {}
    parts = [component_values(r, component, s, counts) for s in shards]
    values, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    grids = noise_core.class_grids(values, labels, len(r.classes()))
    z = noise_core.suspicion(values, labels, grids, component.higher_is_noisier)[:, None]
    p = noise_core.noise_posterior(noise_core.fit_mixture(z, [component.group]), z)["p_noisy"]
    return z[:, 0], p > 0.5


def metrics(truth: pl.DataFrame, suspicion: np.ndarray, flagged: np.ndarray | None) -> dict:
    """AUROC of a suspicion (high: noisy); P/R/F1 at the method's own flags; F1 at the best threshold; per-kind flag shares."""
    y = truth["is_noisy"].to_numpy()
    suspicion = np.where(np.isfinite(suspicion), suspicion, np.nanmedian(suspicion))
    out = {"auroc": round(float(roc_auc_score(y, suspicion)), 3)}
    if flagged is not None:
        p, r, f, _ = precision_recall_fscore_support(y, flagged, average="binary", zero_division=0)
        out.update(precision=round(float(p), 3), recall=round(float(r), 3), f1=round(float(f), 3))
    order = np.argsort(-suspicion, kind="stable")
    hits = np.cumsum(y[order])
    f1s = 2 * hits / (np.arange(1, len(y) + 1) + y.sum())
    out["best_f1"] = round(float(f1s.max()), 3)
    best_cut = suspicion[order][int(f1s.argmax())]
    chosen = flagged if flagged is not None else suspicion >= best_cut
    kinds = truth["noise"].to_numpy()
    out["flagged_by_kind"] = {k: round(float(chosen[kinds == k].mean()), 3) for k in ("clean", *KINDS) if (kinds == k).any()}
    return out


def evaluate(root: Path, source: Path) -> dict:
    r = Root(root)
    truth = pl.concat([pl.read_parquet(r.meta_path(s), columns=["__key__"]) for s in r.shard_names("train")]).join(
        pl.read_parquet(source / "ground_truth.parquet", columns=["__key__", "is_noisy", "noise"]), on="__key__", how="left", maintain_order="left"
    )
    rows = {}
    for name, command, column, higher, group in SINGLE:
        suspicion, flags = single_score(r, Component(name, command, column, higher, group))
        rows[f"{name}.{column} alone"] = metrics(truth, suspicion, flags)
    noise = sidecars.read_scores(r, "noise", split="train", columns=["p_noisy", "noisy"]).collect()
    rows["wv score noise (p_noisy > 0.5)"] = metrics(truth, noise["p_noisy"].cast(pl.Float64).to_numpy(), noise["noisy"].to_numpy())
    issues = sidecars.read_scores(r, "labelissues", split="train", columns=["label_issue", "label_quality"]).collect()
    rows["cleanlab find_label_issues"] = metrics(truth, -issues["label_quality"].cast(pl.Float64).to_numpy(), issues["label_issue"].to_numpy())
    return {"samples": truth.height, "noisy": int(truth["is_noisy"].sum()), "kinds": dict(truth.group_by("noise").len().sort("noise").iter_rows()), "methods": rows}


def table(result: dict) -> str:
    lines = ["| method | AUROC | precision | recall | F1 | best-threshold F1 | flagged: " + " / ".join(("clean", *KINDS)) + " |", "|---|---|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        kinds = " / ".join(f"{m['flagged_by_kind'].get(k, float('nan')):.2f}" for k in ("clean", *KINDS))
        lines.append(f"| {name} | {m['auroc']:.3f} | {m.get('precision', '-')} | {m.get('recall', '-')} | {m.get('f1', '-')} | {m['best_f1']:.3f} | {kinds} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--cnn-epochs", type=int, default=4, help="Fewer: a weaker image model (harder for image evidence).")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source, root = make_root(out, args.classes, args.per_class, args.noise, args.image_size, args.seed, args.workers)
    checkpoint = train_tinycnn(root, out, args.cnn_epochs, seed=args.seed)
    seconds = score_everything(root, checkpoint, args.workers, args.folds)
    result = {"args": vars(args), "seconds": seconds, **evaluate(root, source)}
    (out / "noise_bench.json").write_text(json.dumps(result, indent=2))
    print(f"{result['samples']} train samples, {result['noisy']} noisy; kinds {result['kinds']}; seconds {seconds}")
    print(table(result))


if __name__ == "__main__":
    main()
