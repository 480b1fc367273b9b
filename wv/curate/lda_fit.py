"""Fitting gensim's LDA with its E-step spread over wv's worker pool: deterministic, no busy-waiting.

gensim's LdaModel.update runs the online algorithm (Hoffman et al.): for each chunk of documents an
E-step (per-document inference, collecting sufficient statistics), then an M-step blending them
into the topics. Its distributed mode hands each chunk to a `dispatcher` (reset / putjob /
getstate). `PoolDispatcher` is such a dispatcher over a `wv.parallel.Workers` pool:

  - every chunk's E-step is cut into fixed parts of PART documents, run in parallel, and their
    statistics are summed in part order; each part's inference starts from a random state seeded
    by (seed, chunk, part). The fitted model is therefore the same for any number of workers, and
    the update schedule is exactly LdaModel's (one M-step per `chunksize` documents).
  - the topics (expElogbeta) are published to the workers as one .npy file per update, which each
    worker memory-maps; a part returns only the statistics of the words it contains.
  - the master waits on its futures instead of polling (gensim's LdaMulticore master spins a core
    while its job queue is full, a third of the CPU on a 2-core machine).
  - the corpus may hold references to documents instead of bags of words, with a `reader` that
    turns a part's references into bags in the worker: reading and cleaning text is then spread
    over the pool too, and the master only runs M-steps.
"""

import contextlib
import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gensim.corpora import Dictionary
from gensim.models import LdaModel
from gensim.models.ldamodel import LdaState

from wv.parallel import Workers

PART = 256  # documents per E-step task
# Not gensim's default float32: with hundreds of topics and short web texts, a document's topic weights
# start near alpha (1/topics), exp(digamma(~0.004)) ~ exp(-250) underflows in float32, and inference
# collapses to the prior (every sample the same distribution). float64 keeps it.
DTYPE = np.float64


@dataclass(frozen=True)
class EstepJob:
    topics_file: str  # expElogbeta of the current update, (topics, terms) float64 .npy
    alpha: tuple
    iterations: int
    gamma_threshold: float
    seed: tuple
    docs: list  # bags of words, or references that `reader` turns into bags
    reader: object = None


@functools.lru_cache(maxsize=1)
def inference_model(topics: int, terms: int, alpha: tuple, iterations: int, gamma_threshold: float):
    """A bare LdaModel whose `inference` the E-step calls (its topics are set per job)."""
    return LdaModel(id2word={0: ""}, num_topics=topics, alpha=np.asarray(alpha, dtype=DTYPE), iterations=iterations, gamma_threshold=gamma_threshold, dtype=DTYPE)


def estep_task(job: EstepJob):
    """Pool task: inference over one part -> (word ids, their sufficient statistics, documents)."""
    exp_elog_beta = np.load(job.topics_file, mmap_mode="r")
    topics, terms = exp_elog_beta.shape
    model = inference_model(topics, terms, job.alpha, job.iterations, job.gamma_threshold)
    bags = job.docs if job.reader is None else job.reader(job.docs)
    words = np.unique(np.fromiter((w for bag in bags for w, _ in bag), dtype=np.int64))
    local = {w: i for i, w in enumerate(words.tolist())}
    model.expElogbeta = np.ascontiguousarray(exp_elog_beta[:, words])  # only this part's words
    model.random_state = np.random.RandomState(np.random.SeedSequence(job.seed).generate_state(1)[0])
    _, sstats = model.inference([[(local[w], c) for w, c in bag] for bag in bags], collect_sstats=True)
    return words, sstats, len(bags)


class PoolDispatcher:
    """gensim's dispatcher protocol (reset / putjob / getstate) over a wv worker pool."""

    def __init__(self, model, pool: Workers, folder: Path, seed: int, reader=None, progress=None):
        self.model, self.pool, self.folder, self.seed, self.reader, self.progress = model, pool, folder, seed, reader, progress
        self.chunks, self.chunk_number, self.topics_file = [], 0, None

    def reset(self, state: LdaState) -> None:
        """A new update starts: publish the current topics."""
        old = self.topics_file
        self.topics_file = self.folder / f"topics-{uuid.uuid4().hex[:8]}.npy"
        with open(self.topics_file, "wb") as f:
            np.save(f, np.asarray(self.model.expElogbeta, dtype=DTYPE))
        if old is not None:
            old.unlink(missing_ok=True)
        self.chunks = []

    def putjob(self, chunk):
        self.chunks.append(list(chunk))

    def getstate(self) -> LdaState:
        model = self.model
        jobs = []
        for chunk in self.chunks:
            for start in range(0, len(chunk), PART):
                jobs.append(
                    EstepJob(
                        str(self.topics_file),
                        tuple(float(a) for a in model.alpha),
                        model.iterations,
                        model.gamma_threshold,
                        (self.seed, self.chunk_number, start),
                        chunk[start : start + PART],
                        self.reader,
                    )
                )
            self.chunk_number += 1
        state = LdaState(model.eta, model.state.sstats.shape, model.dtype)
        results = {}
        for index, result in self.pool.map(indexed_estep, enumerate(jobs)):
            results[index] = result
        for index in range(len(jobs)):  # summed in part order: the same bits for any worker count
            words, sstats, documents = results.pop(index)
            state.sstats[:, words] += sstats
            state.numdocs += documents
        self.chunks = []
        if self.progress is not None:
            self.progress(state.numdocs)
        return state


def indexed_estep(job):
    index, estep = job
    return index, estep_task(estep)


class LeanLdaModel(LdaModel):
    """gensim's LdaModel with an M-step that skips what only feeds its log messages."""

    def do_mstep(self, rho, other, extra_pass=False):
        # gensim's do_mstep also computes the previous Elogbeta, the mean change and the top words of
        # 5 topics, only to log them: three more passes over the (topics x words) matrix per update.
        self.state.blend(rho, other)
        self.sync_state(self.state.get_Elogbeta())
        if not extra_pass:
            self.num_updates += other.numdocs


@contextlib.contextmanager
def scratch_folder(parent: Path) -> Iterator[Path]:
    """A hidden folder for the fit's shared files (on ROOT, so Ray workers on other nodes see it too)."""
    folder = Path(parent) / f".lda-fit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fit_lda(
    corpus: Sequence,
    dictionary: Dictionary,
    topics: int,
    passes: int,
    iterations: int,
    chunksize: int,
    seed: int,
    pool: Workers,
    scratch: Path,
    reader: Callable | None = None,
    progress: Callable[[int], None] | None = None,
) -> LdaModel:
    """An LdaModel fitted on `corpus` (re-iterable, with len()), its E-steps on `pool`.

    `corpus` holds bags of words, or references that the picklable `reader` turns into bags in the
    workers; `progress(documents)` is called after each update; `scratch` is a folder every worker sees.
    """
    model = LeanLdaModel(id2word=dictionary, num_topics=topics, chunksize=chunksize, passes=passes, iterations=iterations, random_state=seed, eval_every=None, dtype=DTYPE)
    try:
        model.dispatcher, model.numworkers = PoolDispatcher(model, pool, scratch, seed, reader, progress), 1
        model.update(corpus)
    finally:
        model.dispatcher, model.numworkers = None, 1
    model.__class__ = LdaModel  # same state; saved as a plain gensim model that loads without wv
    return model
