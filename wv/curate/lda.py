"""`wv score lda`: text-topic cleaning (LDA over each image's web text) and label weights.

The reference entry: clean the web text (wv.curate.text), fit an LDA topic model over it, take each
class's mean topic distribution, and score every image by the similarity of its own topic
distribution to its class's mean; low scores are likely label noise. The 2020 entry's label-weighted
set reuses the same distributions: each image's similarity to every class's mean, kept as its top-k
classes and weights.

Passes (each per shard in parallel, resumable; the text comes from ROOT/meta/, never from images):
  1. vocabulary   tokens of the fit documents (all, or a seeded sample: fit_docs) -> gensim Dictionary,
                  filtered by document frequency
  2. fit          gensim's online LDA over a streaming corpus of those documents, its E-steps spread
                  over the worker pool (wv.curate.lda_fit: seeded, the same model for any worker count)
  3. topics       each sample's topic distribution -> ROOT/features/lda/{shard}.npy (float16, a row of
                  NaN where the text cannot be scored); on the fit split, per-class sums -> class means
  4. scores       ROOT/scores/lda/{shard}.parquet and ROOT/scores/label_weights/{shard}.parquet

The model (a gensim LdaModel, its dictionary, the class means) is saved under ROOT/models/lda/
(wv.curate.lda_saved); another split or another root is scored with it (`model=`) without refitting.
The model itself, and every computation on token lists and arrays, is wv.curate.lda_model (no root):
this module is its driver, reading the texts, spreading the passes over the pool, writing the outputs.

Sidecar columns:
  lda             similarity (null when not scored), top_topics, top_weights, tokens (dictionary
                  tokens in the text), text_flag (why not scored: empty, non_english, no_words,
                  unknown_words, no_class_mean; null when scored)
  label_weights   label_topk (the k most similar classes), weight_topk (their similarities scaled to
                  sum to 1), sim_topk (the raw similarities), label_weight (the sample's own label's
                  weight: 0 when it is not among the k; null when not scored)
"""

import functools
import hashlib
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from tqdm import tqdm

import wv
from wv.curate.lda_model import class_sums, finish_vocabulary, fit_model, infer_topics, score_frames
from wv.curate.lda_saved import DICTIONARY_FILE, INFO_FILE, MODEL_FORMAT, SavedModel, load_means, load_model, open_model, save_means, save_model
from wv.curate.options import LdaOptions
from wv.curate.text import clean_tokens
from wv.errors import WvError
from wv.parallel import Workers
from wv.progress import bar_options
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root
from wv.shards.runrecord import refuse_changed

if TYPE_CHECKING:
    from gensim.corpora import Dictionary

NAME = "lda"
COMMAND = "score lda"
LABEL_WEIGHTS = "label_weights"
PRUNE_AT = 2_000_000  # distinct tokens kept while merging shard vocabularies (as gensim's prune_at)


# -- the entry point -------------------------------------------------------------------------------
def score_lda(
    root: str | Path,
    options: LdaOptions = LdaOptions(),
    model: str | Path | None = None,
    workers: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Fit (or reuse) the model, then write the topic features and the lda and label_weights sidecars."""
    options.validate()
    root = Root(root)
    shards = root.shards(options.split)
    if shards.height == 0:
        raise WvError(f"{root.path} has no {options.split} shards")
    classes = len(root.classes())
    timings, figures = {}, {}
    with writing(root, COMMAND), Workers(workers, executor, ray_address) as pool:
        started = time.perf_counter()
        saved, fitted = prepare_model(root, options, model, pool, overwrite, progress, figures)
        timings["fit"] = round(time.perf_counter() - started, 3)
        if fitted:
            timings.update(saved.info["seconds"])
        if saved.info["classes"] != classes:
            raise WvError(f"the LDA model at {saved.folder} was fitted on {saved.info['classes']} classes, {root.path} has {classes}")
        started = time.perf_counter()
        saved = run_topics(root, options, saved, shards, pool, overwrite, progress)
        timings["topics"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        written = run_scores(root, options, saved, shards, pool, overwrite, progress)
        timings["scores"] = round(time.perf_counter() - started, 3)
    return {
        **figures,
        **summarise(root, shards, options),
        "fitted": fitted,
        "model_id": saved.model_id,
        "topics": saved.info["topics"],
        "shards_written": written,
        "shards_skipped": shards.height - written,
        "seconds": timings,
        "paths": {"scores": str(root.path / "scores" / NAME), "label_weights": str(root.path / "scores" / LABEL_WEIGHTS), "features": str(root.path / "features" / NAME), "model": str(saved.folder)},
    }


def prepare_model(root: Root, options: LdaOptions, model, pool: Workers, overwrite: bool, progress: bool, figures: dict) -> tuple[SavedModel, bool]:
    if model is not None:
        saved = open_model(model)
        if not saved.means_id:
            raise WvError(f"the LDA model at {model} has no class means yet; finish `wv score lda` on the root it was fitted on")
        return saved, False
    folder = root.model_dir(NAME)
    if (folder / INFO_FILE).is_file() and not overwrite:
        saved = open_model(folder)
        hint = f"; to score {options.split} with the model fitted on {saved.info['fit']['split']}, pass --model {folder}" if saved.info["fit"].get("split") != options.split else ""
        refuse_changed(f"the model at {folder}", saved.info["fit"], options.fit_options(), f"pass --overwrite to refit it{hint}")
        figures.update(fit_docs=saved.info["documents"], vocabulary=saved.info["vocabulary"])
        return saved, False
    saved = fit(root, options, folder, pool, progress)
    figures.update(fit_docs=saved.info["documents"], vocabulary=saved.info["vocabulary"])
    return saved, True


# -- 1 + 2: vocabulary and fit -----------------------------------------------------------------------
def fit_plan(root: Root, options: LdaOptions) -> list[tuple[str, np.ndarray | None]]:
    """Which rows of which shard the model is fitted on: all, or a seeded uniform sample of fit_docs."""
    shards = root.shards(options.split)
    total = int(shards["samples"].sum())
    if options.fit_docs is None or options.fit_docs >= total:
        return [(name, None) for name in shards["name"]]
    chosen = np.sort(np.random.default_rng([options.seed, 7]).choice(total, options.fit_docs, replace=False))
    starts = np.concatenate([[0], np.cumsum(shards["samples"].to_numpy())])
    plan = []
    for number, name in enumerate(shards["name"]):
        rows = chosen[np.searchsorted(chosen, starts[number]) : np.searchsorted(chosen, starts[number + 1])] - starts[number]
        if rows.size:
            plan.append((name, rows))
    return plan


def shard_texts(root: Root, shard: str, rows=None, columns=("text",)) -> pl.DataFrame:
    frame = pl.read_parquet(root.meta_path(shard), columns=list(columns))
    return frame if rows is None else frame[rows]


def vocabulary_task(job):
    """Pool task: one shard's fit documents -> (shard, its Dictionary, the rows whose text has tokens)."""
    from gensim.corpora import Dictionary

    root, shard, rows = job
    texts = shard_texts(Root(root), shard)["text"]
    rows = np.arange(texts.len()) if rows is None else rows
    tokens = [clean_tokens(texts[int(row)]) for row in rows]
    return shard, Dictionary((t for t in tokens if t), prune_at=None), np.array([r for r, t in zip(rows, tokens) if t], dtype=np.int32)


def build_vocabulary(root: Root, options: LdaOptions, plan: list[tuple[str, np.ndarray | None]], pool: Workers, progress: bool) -> tuple["Dictionary", list[tuple[str, np.ndarray]]]:
    """-> (filtered Dictionary, the fit documents: [(shard, rows whose text has tokens)]), the same for any worker count."""
    from gensim.corpora import Dictionary

    dictionary, documents = Dictionary(prune_at=None), []
    jobs = ((str(root.path), shard, rows) for shard, rows in plan)
    results = pool.map(vocabulary_task, jobs)
    for shard, shard_dictionary, rows in tqdm(in_order(results, [s for s, _ in plan]), total=len(plan), desc="lda vocabulary", unit="shard", **bar_options(progress)):
        dictionary.merge_with(shard_dictionary)
        if rows.size:
            documents.append((shard, rows))
        if len(dictionary) > PRUNE_AT:
            dictionary.filter_extremes(no_below=1, no_above=1.0, keep_n=PRUNE_AT)
    if not documents:
        raise WvError(f"no {options.split} sample of {root.path} has usable text (all empty, non-English or stop words); there is nothing to fit a topic model on")
    return finish_vocabulary(dictionary, options), documents


def in_order(results, order: list):
    """Results that come back in completion order, `(name, ...)`, yielded in `order` (a small buffer)."""
    waiting, position = {}, 0
    for result in results:
        waiting[result[0]] = result
        while position < len(order) and order[position] in waiting:
            yield waiting.pop(order[position])
            position += 1
    if waiting:
        raise RuntimeError(f"results for unexpected shards: {sorted(waiting)[:3]}")


class FitCorpus:
    """The fit documents as (shard, row) references, re-iterable, with len(): the workers read and clean
    the text themselves (DocumentReader), so the master never holds or tokenizes the corpus."""

    def __init__(self, documents: list):
        self.documents = documents

    def __len__(self) -> int:
        return sum(rows.size for _, rows in self.documents)

    def __iter__(self):
        for shard, rows in self.documents:
            for row in rows.tolist():
                yield shard, row


@dataclass(frozen=True)
class DocumentReader:
    """(shard, row) references -> bags of words, in an E-step worker."""

    root: str
    dictionary: str  # a saved gensim Dictionary

    def __call__(self, references) -> list:
        dictionary = load_dictionary(self.dictionary)
        return [dictionary.doc2bow(clean_tokens(cached_texts(self.root, shard)[row])) for shard, row in references]


@functools.lru_cache(maxsize=2)
def load_dictionary(path: str):
    from gensim.corpora import Dictionary

    return Dictionary.load(path)


@functools.lru_cache(maxsize=16)
def cached_texts(root: str, shard: str) -> list:
    """A shard's texts, kept while the E-step parts of its rows come by."""
    return shard_texts(Root(root), shard)["text"].to_list()


def fit(root: Root, options: LdaOptions, folder: Path, pool: Workers, progress: bool) -> SavedModel:
    from wv.curate.lda_fit import scratch_folder

    started = time.perf_counter()
    plan = fit_plan(root, options)
    dictionary, documents = build_vocabulary(root, options, plan, pool, progress)
    seconds = {"vocabulary": round(time.perf_counter() - started, 3)}
    started = time.perf_counter()
    corpus = FitCorpus(documents)
    bar = tqdm(total=len(corpus) * options.passes, desc=f"lda fit ({options.topics} topics)", unit="doc", **bar_options(progress))
    try:
        with scratch_folder(folder.parent) as scratch:
            dictionary.save(str(scratch / DICTIONARY_FILE))
            reader = DocumentReader(str(root.path), str(scratch / DICTIONARY_FILE))
            model = fit_model(corpus, dictionary, options, pool, scratch, reader, bar.update)
    finally:
        bar.close()
    seconds["model"] = round(time.perf_counter() - started, 3)
    info = {
        "format": MODEL_FORMAT,
        "model_id": hashlib.sha256(np.ascontiguousarray(model.expElogbeta).tobytes()).hexdigest()[:16],
        "fit": options.fit_options(),
        "documents": len(corpus),
        "vocabulary": len(dictionary),
        "topics": options.topics,
        "classes": len(root.classes()),
        "root": str(root.path.resolve()),
        "wv_version": wv.__version__,
        "class_means": None,
        "seconds": seconds,
    }
    save_model(folder, model, dictionary, info)
    return SavedModel(folder, info)


# -- 3: topic distributions and class means --------------------------------------------------------------
@dataclass(frozen=True)
class TopicsJob:
    root: str
    shard: str
    model_dir: str
    model_id: str
    seed: int
    class_sums: bool  # also return per-class sums of the distributions (the fit split, before means exist)


def shard_seed(seed: int, shard: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(shard.encode())) % 2**32


def topics_task(job: TopicsJob):
    """Pool task: write features/lda/{shard}.npy (unless complete); return (shard, labels, sums, counts)."""
    root = Root(job.root)
    frame = shard_texts(root, job.shard, columns=("label", "text"))
    theta = None
    if sidecars.complete(root, "features", NAME, job.shard, frame.height):
        theta = np.asarray(sidecars.read_features(root, NAME, job.shard), dtype=np.float32)
    if theta is None:
        model, dictionary = load_model(job.model_dir, job.model_id)
        documents = [clean_tokens(text) for text in frame["text"]]
        theta, _ = infer_topics(model, dictionary, documents, shard_seed(job.seed, job.shard))
        sidecars.write_features(root, NAME, job.shard, theta.astype(np.float16))
    if not job.class_sums:
        return job.shard, None, None, None
    return (job.shard, *class_sums(frame["label"].to_numpy(), theta))


def run_topics(root: Root, options: LdaOptions, saved: SavedModel, shards: pl.DataFrame, pool: Workers, overwrite: bool, progress: bool) -> SavedModel:
    need_means = not saved.means_id
    if need_means and saved.info["fit"]["split"] != options.split:
        raise WvError(f"the model at {saved.folder} has no class means yet; score its fit split ({saved.info['fit']['split']}) first")
    todo = set(sidecars.begin_run(root, "features", NAME, {"model": saved.model_id, "seed": options.seed}, overwrite, options.split, command=COMMAND))
    names = shards["name"].to_list()
    jobs = [TopicsJob(str(root.path), name, str(saved.folder), saved.model_id, options.seed, need_means) for name in names if need_means or name in todo]
    classes = saved.info["classes"]
    sums, counts = np.zeros((classes, saved.info["topics"]), dtype=np.float64), np.zeros(classes, dtype=np.int64)
    results = in_order(pool.map(topics_task, jobs), [j.shard for j in jobs])
    total = int(shards.filter(pl.col("name").is_in([j.shard for j in jobs]))["samples"].sum())
    bar = tqdm(total=total, desc=f"lda topics {options.split}", unit="doc", **bar_options(progress))
    for shard, labels, shard_sums, shard_counts in results:
        if labels is not None:
            if labels.size and labels.max() >= classes:
                raise WvError(f"{shard} has label {labels.max()}, beyond the model's {classes} classes")
            sums[labels] += shard_sums
            counts[labels] += shard_counts
        bar.update(int(shards.filter(pl.col("name") == shard)["samples"][0]))
    bar.close()
    if need_means:
        save_means(saved, sums, counts)
    return saved


# -- 4: similarities, top topics, label weights ----------------------------------------------------------
@dataclass(frozen=True)
class ScoresJob:
    root: str
    shard: str
    model_dir: str
    model_id: str
    means_id: str
    similarity: str
    top_topics: int
    top_classes: int


def scores_task(job: ScoresJob) -> str:
    """Pool task: write scores/lda/{shard} and scores/label_weights/{shard}."""
    root = Root(job.root)
    frame = shard_texts(root, job.shard, columns=("__key__", "label", "text"))
    theta = np.asarray(sidecars.read_features(root, NAME, job.shard), dtype=np.float32)
    _, dictionary = load_model(job.model_dir, job.model_id)
    means = load_means(job.model_dir, job.means_id)
    lda, label_weights = score_frames(frame["__key__"], frame["label"].to_numpy(), frame["text"], theta, means, dictionary, job.similarity, job.top_topics, job.top_classes)
    sidecars.write_scores(root, NAME, job.shard, lda)
    sidecars.write_scores(root, LABEL_WEIGHTS, job.shard, label_weights)
    return job.shard


def run_scores(root: Root, options: LdaOptions, saved: SavedModel, shards: pl.DataFrame, pool: Workers, overwrite: bool, progress: bool) -> int:
    run = {"model": saved.model_id, "class_means": saved.means_id, "similarity": options.similarity, "top_topics": options.top_topics, "top_classes": options.top_classes, "seed": options.seed}
    todo = set(sidecars.begin_run(root, "scores", NAME, run, overwrite, options.split, command=COMMAND))
    todo |= set(sidecars.begin_run(root, "scores", LABEL_WEIGHTS, run, overwrite, options.split, command=COMMAND))
    jobs = [ScoresJob(str(root.path), name, str(saved.folder), saved.model_id, saved.means_id, options.similarity, options.top_topics, options.top_classes) for name in shards["name"] if name in todo]
    for _ in tqdm(pool.map(scores_task, jobs), total=len(jobs), desc=f"lda scores {options.split}", unit="shard", **bar_options(progress)):
        pass
    return len(jobs)


def summarise(root: Root, shards: pl.DataFrame, options: LdaOptions) -> dict:
    scores = sidecars.read_scores(root, NAME, shards["name"].to_list(), columns=["similarity", "text_flag"])
    counts = scores.group_by("text_flag").len().collect()
    flags = {row["text_flag"]: row["len"] for row in counts.iter_rows(named=True) if row["text_flag"] is not None}
    stats = scores.select(pl.len().alias("samples"), pl.col("similarity").count().alias("scored"), pl.col("similarity").median().alias("median")).collect().row(0, named=True)
    return {
        "split": options.split,
        "samples": stats["samples"],
        "scored": stats["scored"],
        "skipped": stats["samples"] - stats["scored"],
        "flags": flags,
        "median_similarity": stats["median"],
        "similarity": options.similarity,
    }
