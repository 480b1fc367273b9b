"""`wv score lda` beside a plain single-process gensim pipeline, in one run; and its quality.

    python bench/score_lda.py --classes 1000 --per-class 100 --topics 500 --workers 2

On a synthetic text root (wv synth's web text and planted noise, 30%; meta sidecars only, since LDA
never reads images; --images makes a full root instead):
  baseline  one process: every document's tokens in a list (the same cleaning), gensim Dictionary,
            LdaModel (same topics, passes, iterations, chunksize, seed; float64 as wv, since float32
            collapses with hundreds of topics on short texts), then get_document_topics per document,
            class means and the similarity (--similarity) in numpy.
  multicore (--multicore) gensim's LdaMulticore (workers = --workers) on the same in-memory corpus,
            the model fit alone, for reference.
  wv        wv.curate.lda.score_lda (what `wv score lda` runs): vocabulary per shard in parallel, the
            online LDA with E-steps on the worker pool, topic inference per shard in parallel,
            sidecars written. Its times include starting the worker processes.
Prints documents/s for fitting (vocabulary + model) and for scoring (topics + similarities), the
ratios wv/baseline, the CPU time of all processes on each side, where wv's scoring time goes on one
shard (reading and cleaning text vs gensim inference), and the quality of both: AUROC of the similarity for noisy vs clean samples, and
precision/recall of dropping the lowest 10% per class.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measuring import cpu_seconds  # noqa: E402

from wv.atomic import write_json  # noqa: E402
from wv.curate import lda, lda_model  # noqa: E402
from wv.curate.text import clean_tokens  # noqa: E402
from wv.shards import sidecars  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.shards.keys import sample_key  # noqa: E402
from wv.shards.root import FORMAT, Root  # noqa: E402
from wv.synth import SynthOptions, class_styles, plan_samples, render_text, write_synth  # noqa: E402


def make_root(out: Path, classes: int, per_class: int, workers: int) -> tuple[Path, Path]:
    tag = f"{classes}x{per_class}"
    source, root = out / f"synth-lda-{tag}", out / f"root-lda-{tag}"
    if not (source / "ground_truth.parquet").is_file():
        shutil.rmtree(source, ignore_errors=True)
        write_synth(source, SynthOptions(classes=classes, per_class=per_class, noise=0.3, imbalance=3.0, val_per_class=0, width=32, height=24, seed=0), workers=workers)
    if not (root / "shards.parquet").is_file():
        build(source, root, BuildOptions(split="train", shard_size=1000, check="cheap"), workers=workers, progress=False)
    return source, root


def make_text_root(out: Path, classes: int, per_class: int, shard_size: int = 2000) -> tuple[Path, pl.DataFrame]:
    """A root of text only (wv.json, shards.parquet, meta/): LDA never reads images, so none are made.

    The web text and the planted noise are wv synth's (same plan, same text generator)."""
    root = out / f"text-root-{classes}x{per_class}"
    truth_path = root / "ground_truth.parquet"
    if truth_path.is_file():
        return root, pl.read_parquet(truth_path)
    shutil.rmtree(root, ignore_errors=True)
    opts = SynthOptions(classes=classes, per_class=per_class, noise=0.3, imbalance=3.0, val_per_class=0, seed=0)
    styles = class_styles(opts)
    rows = []
    for sample in plan_samples(opts):
        rng = np.random.default_rng(sample["seed"])
        truth = sample["true_label"]
        text = render_text(styles[truth] if truth is not None and truth >= 0 else None, sample["text_kind"], sample["source"], rng)
        rows.append(
            {
                "__key__": sample_key(sample["source"], sample["query"], sample["image_id"]),
                "label": sample["label"],
                "source": sample["source"],
                "query": sample["query"],
                "title": text["title"],
                "description": text["description"],
                "tags": text["tags"],
                "text": "\n".join(p for p in (text["title"], text["description"], " ".join(text["tags"])) if p),
                "is_noisy": sample["noise"] != "clean",
            }
        )
    order = np.random.default_rng(0).permutation(len(rows))
    table = pl.DataFrame([rows[i] for i in order])
    shards = []
    for number, start in enumerate(range(0, table.height, shard_size)):
        name = f"train-{number:06d}"
        part = table[start : start + shard_size]
        path = Root(root).meta_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        part.drop("is_noisy").write_parquet(path)
        shards.append({"name": name, "split": "train", "samples": part.height, "bytes": 0, "sha256": "", "path": ""})
    pl.DataFrame(shards).write_parquet(root / "shards.parquet")
    write_json(
        root / "wv.json", {"format": FORMAT, "classes": [{"label": s.label, "synset": s.synset, "names": s.names} for s in styles], "splits": {"train": {"complete": True, "samples": table.height}}}
    )
    truth = table.select("__key__", "is_noisy")
    truth.write_parquet(truth_path)
    return root, truth


def baseline(root: Root, args) -> tuple[dict, pl.DataFrame]:
    """The plain pipeline, everything in memory in one process."""
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel, LdaMulticore

    started = time.perf_counter()
    meta = pl.concat([pl.read_parquet(root.meta_path(s), columns=["__key__", "label", "text"]) for s in root.shard_names("train")])
    tokens = [clean_tokens(t) for t in meta["text"]]
    fit_docs = [t for t in tokens if t]
    dictionary = Dictionary(fit_docs)
    dictionary.filter_extremes(no_below=args.no_below, no_above=0.5, keep_n=100_000)
    corpus = [dictionary.doc2bow(t) for t in fit_docs]
    model = LdaModel(corpus, id2word=dictionary, num_topics=args.topics, passes=args.passes, iterations=50, chunksize=2000, random_state=args.seed, eval_every=None, dtype=np.float64)
    fit_seconds = time.perf_counter() - started
    multicore = None
    if args.multicore:
        started = time.perf_counter()
        LdaMulticore(
            corpus, id2word=dictionary, num_topics=args.topics, passes=args.passes, iterations=50, chunksize=2000, workers=args.workers, random_state=args.seed, eval_every=None, dtype=np.float64
        )
        multicore = time.perf_counter() - started
    started = time.perf_counter()
    theta = np.full((meta.height, args.topics), np.nan)
    for i, words in enumerate(tokens):
        bag = dictionary.doc2bow(words)
        if bag:
            for topic, p in model.get_document_topics(bag, minimum_probability=0.0):
                theta[i, topic] = p
    labels = meta["label"].to_numpy()
    scored = ~np.isnan(theta[:, 0])
    means = np.stack([theta[scored & (labels == c)].mean(axis=0) if (scored & (labels == c)).any() else np.full(args.topics, np.nan) for c in range(labels.max() + 1)])
    similarity = lda_model.similarities(theta, means, args.similarity)[np.arange(labels.size), labels]
    score_seconds = time.perf_counter() - started
    frame = meta.select("__key__", "label").with_columns(pl.Series("similarity", similarity).fill_nan(None))
    return {"fit": fit_seconds, "multicore": multicore, "score": score_seconds, "fit_docs": len(fit_docs), "docs": meta.height}, frame


def quality(frame: pl.DataFrame, truth: pl.DataFrame, drop: float = 0.1) -> dict:
    """AUROC of -similarity for noisy vs clean; precision/recall of dropping the lowest `drop` per class."""
    joined = frame.join(truth, on="__key__").filter(pl.col("similarity").is_not_null())
    auroc = roc_auc_score(joined["is_noisy"].to_numpy(), -joined["similarity"].to_numpy())
    ranked = joined.with_columns(pl.col("similarity").rank("ordinal").over("label").alias("rank"), pl.len().over("label").alias("n"))
    dropped = ranked.filter(pl.col("rank") <= (pl.col("n") * drop).floor())
    hits = int(dropped["is_noisy"].sum())
    return {
        "auroc": auroc,
        "precision": hits / max(1, dropped.height),
        "recall": hits / max(1, int(joined["is_noisy"].sum())),
        "dropped": dropped.height,
        "scored": joined.height,
        "noise_rate": float(joined["is_noisy"].mean()),
    }


def scoring_breakdown(root: Root, shard: str, model_dir: Path) -> dict:
    """On one shard, single process: seconds reading + cleaning text vs gensim inference."""
    saved = lda.open_model(model_dir)
    model, dictionary = lda.load_model(str(model_dir), saved.model_id)
    started = time.perf_counter()
    texts = lda.shard_texts(root, shard, columns=("label", "text"))["text"]
    bags = [dictionary.doc2bow(clean_tokens(t)) for t in texts]
    prepare = time.perf_counter() - started
    started = time.perf_counter()
    model.inference([b for b in bags if b])
    return {"text": prepare, "inference": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--no-below", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--similarity", choices=["cosine", "dot"], default="cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each side; the best time of each is reported.")
    parser.add_argument("--multicore", action="store_true", help="Also time gensim's LdaMulticore fit.")
    parser.add_argument("--images", action="store_true", help="A full synthetic root with images (slower to make; same text).")
    args = parser.parse_args()
    if args.images:
        source, root_path = make_root(Path(args.out), args.classes, args.per_class, args.workers)
        truth = pl.read_parquet(source / "ground_truth.parquet").select("__key__", "is_noisy")
    else:
        root_path, truth = make_text_root(Path(args.out), args.classes, args.per_class)
    root = Root(root_path)

    load = os.getloadavg()[0]
    # Best of --repeat runs of each, interleaved: the machine is shared, and interference only adds time.
    runs, bases, cpu = [], [], {"baseline": [], "wv": []}
    for _ in range(args.repeat):
        started = cpu_seconds()
        bases.append(baseline(root, args))
        cpu["baseline"].append(cpu_seconds() - started)
        options = lda.LdaOptions(topics=args.topics, passes=args.passes, no_below=args.no_below, similarity=args.similarity, seed=args.seed)
        started = cpu_seconds()
        runs.append(lda.score_lda(root_path, options, workers=args.workers, overwrite=True, progress=False))
        cpu["wv"].append(cpu_seconds() - started)
    base = {k: min(b[0][k] for b in bases) if k in ("fit", "score") or (k == "multicore" and args.multicore) else bases[0][0][k] for k in bases[0][0]}
    base_frame = bases[0][1]
    figures = runs[0]
    seconds = {k: min(r["seconds"][k] for r in runs) for k in ("fit", "vocabulary", "model", "topics", "scores")}
    seconds["score"] = min(r["seconds"]["topics"] + r["seconds"]["scores"] for r in runs)
    ours = sidecars.read_scores(root, lda.NAME, split="train", columns=["similarity"]).collect()
    ours = ours.join(pl.concat([pl.read_parquet(root.meta_path(s), columns=["__key__", "label"]) for s in root.shard_names("train")]), on="__key__")
    breakdown = scoring_breakdown(root, root.shard_names("train")[0], root.model_dir(lda.NAME))

    docs = base["docs"]
    fit_rate = (base["fit_docs"] / base["fit"], figures["fit_docs"] / seconds["fit"])
    score_rate = (docs / base["score"], docs / seconds["score"])
    print(
        f"data        {docs} documents ({base['fit_docs']} with text), {args.classes} classes, {args.topics} topics, "
        f"{args.passes} pass(es), --workers {args.workers}, best of {args.repeat}; load average before {load:.2f}"
    )
    print(f"fit         wv {seconds['fit']:.2f} s ({fit_rate[1]:.0f} docs/s), baseline LdaModel {base['fit']:.2f} s ({fit_rate[0]:.0f} docs/s); ratio wv/baseline {fit_rate[1] / fit_rate[0]:.2f}x")
    print(f"            wv fit = vocabulary {seconds['vocabulary']:.2f} s (starting {args.workers} worker processes included) + model {seconds['model']:.2f} s (best runs)")
    if base["multicore"] is not None:
        print(f"fit         gensim LdaMulticore (workers={args.workers}) {base['multicore']:.2f} s ({base['fit_docs'] / base['multicore']:.0f} docs/s, model only; no vocabulary)")
    print(
        f"score       wv {seconds['score']:.2f} s ({score_rate[1]:.0f} docs/s), baseline get_document_topics "
        f"{base['score']:.2f} s ({score_rate[0]:.0f} docs/s); ratio wv/baseline {score_rate[1] / score_rate[0]:.2f}x"
    )
    multicore_note = " (its LdaMulticore fit included)" if args.multicore else ""
    print(f"cpu         fit + score, all processes: wv {min(cpu['wv']):.1f} s, baseline {min(cpu['baseline']):.1f} s{multicore_note} (least of the runs)")
    share = breakdown["inference"] / (breakdown["inference"] + breakdown["text"])
    print(f"one shard   reading + cleaning text {breakdown['text']:.3f} s, gensim inference {breakdown['inference']:.3f} s (inference {share:.0%} of the scoring work)")
    for name, frame in (("wv", ours), ("baseline", base_frame)):
        q = quality(frame, truth)
        print(
            f"quality     {name:9s} AUROC {q['auroc']:.3f}; drop lowest 10% per class: precision {q['precision']:.3f} "
            f"recall {q['recall']:.3f} ({q['dropped']} of {q['scored']} scored, noise rate {q['noise_rate']:.3f})"
        )


if __name__ == "__main__":
    main()
