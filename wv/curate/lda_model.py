"""The LDA topic model of `wv score lda`, on token lists and arrays: no dataset root, no files.

  vocabulary   a gensim Dictionary of the documents' tokens, filtered by document frequency, its
               token ids in alphabetical order (`finish_vocabulary`)
  fit          gensim's online LDA with its E-steps in seeded parts (wv.curate.lda_fit): the same
               model for any worker count; `fit_topics` fits token lists held in memory exactly as
               the driver fits a root's texts
  topics       each document's topic distribution (`infer_topics`; NaN rows where nothing is known)
  class means  per class, the mean distribution of its scored documents (`class_sums`, `class_means`)
  scores       each document's similarity to every class's mean, its top topics and the label
               weights of the 2020 entry (`score_frames`)

wv.curate.lda is the driver: it reads the texts of ROOT/meta/, spreads the passes over the worker
pool and writes the model, the topic features and the sidecars.
"""

import contextlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import polars as pl

from wv.curate.text import clean_tokens, text_flag
from wv.errors import WvError

if TYPE_CHECKING:
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel

    from wv.parallel import Workers

FLAG_UNKNOWN_WORDS = "unknown_words"
FLAG_NO_CLASS_MEAN = "no_class_mean"
LDA_SCHEMA = {
    "__key__": pl.String,
    "similarity": pl.Float32,
    "top_topics": pl.List(pl.Int16),
    "top_weights": pl.List(pl.Float32),
    "tokens": pl.Int32,
    "text_flag": pl.String,
}
WEIGHTS_SCHEMA = {
    "__key__": pl.String,
    "label_topk": pl.List(pl.Int32),
    "weight_topk": pl.List(pl.Float32),
    "sim_topk": pl.List(pl.Float32),
    "label_weight": pl.Float32,
}


class FitSettings(Protocol):
    """What the vocabulary and the fit read of their options (wv.curate.lda.LdaOptions has them all)."""

    topics: int
    passes: int
    iterations: int
    chunksize: int
    no_below: int
    no_above: float
    keep_n: int
    seed: int


# -- vocabulary and fit -----------------------------------------------------------------------------
def finish_vocabulary(dictionary: "Dictionary", options: FitSettings) -> "Dictionary":
    """The dictionary filtered by document frequency, token ids in alphabetical order; WvError when no word is left."""
    dictionary.filter_extremes(no_below=options.no_below, no_above=options.no_above, keep_n=options.keep_n)
    if len(dictionary) == 0:
        raise WvError(
            f"no word is in at least --no-below {options.no_below} of the {dictionary.num_docs} documents and at most "
            f"--no-above {options.no_above} of them; lower --no-below (or raise --no-above) for a dataset this small"
        )
    return canonical(dictionary)


def canonical(dictionary):
    """Token ids in alphabetical order, so that a model never depends on the order shards finished in."""
    from gensim.corpora import Dictionary

    ordered = Dictionary(prune_at=None)
    ordered.token2id = {token: i for i, token in enumerate(sorted(dictionary.token2id))}
    ordered.dfs = {ordered.token2id[t]: dictionary.dfs[i] for t, i in dictionary.token2id.items()}
    ordered.cfs = {ordered.token2id[t]: dictionary.cfs.get(i, 0) for t, i in dictionary.token2id.items()}
    ordered.num_docs, ordered.num_pos, ordered.num_nnz = dictionary.num_docs, dictionary.num_pos, dictionary.num_nnz
    return ordered


@contextlib.contextmanager
def quiet_gensim():
    """gensim's warnings ("too few updates" and the like) held back: the summary says what was fitted."""
    gensim_log = logging.getLogger("gensim")
    level = gensim_log.level
    gensim_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        gensim_log.setLevel(level)


def fit_model(
    corpus: Sequence, dictionary: "Dictionary", options: FitSettings, pool: "Workers", scratch: Path, reader: Callable | None = None, progress: Callable[[int], None] | None = None
) -> "LdaModel":
    """gensim's LdaModel fitted on `corpus` (bags of words, or references `reader` turns into bags), E-steps on `pool`."""
    from wv.curate.lda_fit import fit_lda

    with quiet_gensim():
        return fit_lda(corpus, dictionary, options.topics, options.passes, options.iterations, options.chunksize, options.seed, pool, scratch, reader, progress)


def fit_topics(documents: list[list[str]], options: FitSettings, pool=None):
    """-> (LdaModel, Dictionary) fitted on token lists (e.g. `clean_tokens` of texts), in document order.

    The same vocabulary and fit as `wv score lda` on a root whose fit documents are these, in this
    order. `pool`: a wv.parallel.Workers for the E-steps (default: this process)."""
    from gensim.corpora import Dictionary

    from wv.parallel import Workers

    documents = [tokens for tokens in documents if tokens]
    if not documents:
        raise WvError("no document has a token; there is nothing to fit a topic model on")
    dictionary = finish_vocabulary(Dictionary(documents, prune_at=None), options)
    bags = [dictionary.doc2bow(tokens) for tokens in documents]
    with contextlib.ExitStack() as stack:
        pool = pool if pool is not None else stack.enter_context(Workers(1))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lda-fit-")))
        return fit_model(bags, dictionary, options, pool, scratch), dictionary


# -- topics and class means -------------------------------------------------------------------------
def infer_topics(model: "LdaModel", dictionary: "Dictionary", documents: list[list[str]], seed: int) -> tuple[np.ndarray, list]:
    """Token lists -> (topic distributions, float32 (n, topics), NaN rows where not scored; bags of words)."""
    bags = [dictionary.doc2bow(tokens) for tokens in documents]
    theta = np.full((len(bags), model.num_topics), np.nan, dtype=np.float32)
    scored = [i for i, bag in enumerate(bags) if bag]
    if scored:
        # A fixed random start per call: the same result whichever worker runs it, however often.
        model.random_state = np.random.RandomState(seed)
        gamma, _ = model.inference([bags[i] for i in scored])
        theta[scored] = gamma / gamma.sum(axis=1, keepdims=True)
    return theta, bags


def class_sums(labels: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class present among the scored rows: (labels, sums (n, topics) float64, counts)."""
    scored = ~np.isnan(theta[:, 0])
    present, inverse = np.unique(labels[scored], return_inverse=True)
    sums = np.zeros((present.size, theta.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, theta[scored].astype(np.float64))
    return present, sums, np.bincount(inverse, minlength=present.size)


def class_means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(classes, topics) float32; a row of NaN for a class with no scored document."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts[:, None]).astype(np.float32)


# -- similarities, top topics, label weights ----------------------------------------------------------
def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return matrix / norms


def similarities(theta: np.ndarray, means: np.ndarray, kind: str) -> np.ndarray:
    """(samples, classes): cosine, or the reference's plain dot product; NaN where either side is missing."""
    if kind == "cosine":
        theta, means = normalise_rows(theta), normalise_rows(means)
    return theta.astype(np.float64) @ means.astype(np.float64).T


def top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of each row's k largest (descending; NaN never chosen)."""
    k = min(k, values.shape[1])
    filled = np.where(np.isnan(values), -np.inf, values)
    part = np.argpartition(-filled, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(-filled, part, axis=1).argsort(axis=1, kind="stable")
    index = np.take_along_axis(part, order, axis=1)
    return index, np.take_along_axis(values, index, axis=1)


def score_frames(
    keys: Sequence[str], labels: np.ndarray, texts: Sequence[str | None], theta: np.ndarray, means: np.ndarray, dictionary: "Dictionary", similarity: str, top_topics: int, top_classes: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The lda and label_weights columns (LDA_SCHEMA, WEIGHTS_SCHEMA) of documents with these keys,
    labels, texts and topic distributions, given the class means."""
    sims = similarities(theta, means, similarity)
    own = sims[np.arange(labels.size), labels]
    flags, tokens = [], []
    for text in texts:
        words = clean_tokens(text)
        bag = dictionary.doc2bow(words)
        tokens.append(sum(count for _, count in bag))
        flags.append(text_flag(text, words) or (FLAG_UNKNOWN_WORDS if not bag else None))
    flags = [flag or (FLAG_NO_CLASS_MEAN if np.isnan(sim) else None) for flag, sim in zip(flags, own)]
    scored = np.array([flag is None for flag in flags])
    topic_ids, topic_weights = top_k(theta, top_topics)
    class_ids, class_sims = top_k(sims, top_classes)
    total = np.nansum(class_sims, axis=1, keepdims=True)
    weights = class_sims / np.where(total > 0, total, 1)
    label_weight = np.where(class_ids == labels[:, None], np.nan_to_num(weights), 0).sum(axis=1)
    valid = ~np.isnan(class_sims)  # fewer than k classes have a mean: shorter lists
    lda = pl.DataFrame(
        {
            "__key__": keys,
            "similarity": np.where(scored, own, np.nan),
            "top_topics": [ids.tolist() if ok else None for ids, ok in zip(topic_ids, ~np.isnan(theta[:, 0]))],
            "top_weights": [w.tolist() if ok else None for w, ok in zip(topic_weights, ~np.isnan(theta[:, 0]))],
            "tokens": tokens,
            "text_flag": flags,
        },
        schema=LDA_SCHEMA,
    ).with_columns(pl.col("similarity").fill_nan(None))
    has_classes = ~np.isnan(theta[:, 0])
    label_weights = pl.DataFrame(
        {
            "__key__": keys,
            "label_topk": [ids[v].tolist() if ok else None for ids, v, ok in zip(class_ids, valid, has_classes)],
            "weight_topk": [w[v].tolist() if ok else None for w, v, ok in zip(weights, valid, has_classes)],
            "sim_topk": [s[v].tolist() if ok else None for s, v, ok in zip(class_sims, valid, has_classes)],
            "label_weight": np.where(has_classes, label_weight, np.nan),
        },
        schema=WEIGHTS_SCHEMA,
    ).with_columns(pl.col("label_weight").fill_nan(None))
    return lda, label_weights
