"""The options of the curate commands (`wv score lda|keywords|density`, `wv select`, `wv audit`), each
field with its default and --help line, declared once. Free of polars, PIL and torch, so that the
command line (`wv --help`) is built without them; the drivers (lda.py, select.py ...) import these.
"""

from dataclasses import dataclass

from wv.errors import WvError
from wv.options import SPLITS, opt
from wv.runtime import check_seed

SELECTION = "selection"  # the sidecar `wv select` writes by default
SIMILARITIES = ("cosine", "dot")
MODES = ("auto", "exact", "approximate")
MAX_CARDS, MAX_BINS = 1_000_000, 10_000  # an audit report is read by a person


@dataclass(frozen=True)
class LdaOptions:
    topics: int = opt(500, "LDA topics (the reference used 500; small data wants fewer).")
    passes: int = opt(1, "Passes over the fit documents (more for small data).")
    iterations: int = opt(50, "Inference iterations per document.")
    chunksize: int = opt(2000, "Documents per LDA update chunk.")
    no_below: int = opt(5, "Keep words in at least this many documents.")
    no_above: float = opt(0.5, "Keep words in at most this share of the documents.")
    keep_n: int = opt(100_000, "Keep at most this many words (the most frequent).")
    fit_docs: int | None = opt(None, "Fit on a seeded sample of this many documents (default: all); all are scored.")
    similarity: str = opt("cosine", "Sample vs class mean topic distribution: cosine, or the reference's plain dot product.", choices=SIMILARITIES)
    top_topics: int = opt(3, "Top topics kept per sample.")
    top_classes: int = opt(5, "k of the label weights: the k most similar classes per sample.")
    split: str = opt("train", choices=SPLITS)
    seed: int = opt(0, "Seeds the fit sample, the LDA fit and inference.")

    def validate(self) -> None:
        if self.topics < 2:
            raise WvError("--topics must be at least 2")
        check_seed(self.seed)
        if min(self.passes, self.iterations, self.chunksize, self.keep_n) < 1:
            raise WvError("--passes, --iterations, --chunksize and --keep-n must be at least 1")
        if self.passes > 10_000 or self.iterations > 1_000_000:
            raise WvError("--passes must be at most 10,000 and --iterations at most 1,000,000 (each runs over every document)")
        if self.no_below < 1 or not 0 < self.no_above <= 1:
            raise WvError("--no-below must be at least 1 and --no-above a fraction in (0, 1]")
        if self.fit_docs is not None and self.fit_docs < 1:
            raise WvError("--fit-docs must be at least 1")
        if self.similarity not in SIMILARITIES:
            raise WvError(f"unknown --similarity {self.similarity!r}; choose cosine or dot")
        if self.top_topics < 1 or self.top_classes < 1:
            raise WvError("--top-topics and --top-classes must be at least 1")
        if self.split not in SPLITS:
            raise WvError(f"unknown split {self.split!r}; choose train or val")

    def fit_options(self) -> dict:
        keys = ("topics", "passes", "iterations", "chunksize", "no_below", "no_above", "keep_n", "fit_docs", "split", "seed")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class KeywordOptions:
    min_docs: int = opt(5, "Drop words in fewer documents than this (the least common).")
    max_doc_share: float = opt(0.1, "Drop words in more than this share of documents (the most common).")
    max_words: int | None = opt(None, "Keep at most this many words (the most common of those left).")
    split: str = opt("train", choices=SPLITS)

    def validate(self) -> None:
        if self.min_docs < 1:
            raise WvError("--min-docs must be at least 1")
        if not 0 < self.max_doc_share <= 1:
            raise WvError("--max-doc-share must be a fraction in (0, 1]")
        if self.max_words is not None and self.max_words < 1:
            raise WvError("--max-words must be at least 1")
        if self.split not in SPLITS:
            raise WvError(f"unknown split {self.split!r}; choose train or val")


@dataclass(frozen=True)
class DensityOptions:
    features: str = opt("", "Which ROOT/features/NAME to use (default: the only one there).")
    split: str = opt("train", choices=SPLITS)
    dim: int = opt(256, "PCA to this many dimensions when the features are wider.")
    quantile: float = opt(0.6, "d_c is this quantile of the class's distances.")
    mode: str = opt("auto", "exact: every pair. approximate: sampled anchors. auto: exact up to --exact-max samples per class.", choices=MODES)
    exact_max: int = opt(100_000, "In auto mode, larger classes are approximated.")
    anchors: int = opt(10_000, "Samples standing for a class in approximate mode.")
    seed: int = opt(0, "PCA and sampling seed (the reference's random_state).")

    def validate(self) -> None:
        if self.mode not in MODES:
            raise WvError(f"--mode must be one of {', '.join(MODES)}")
        if not 0 < self.quantile < 1:
            raise WvError("--quantile must be a fraction between 0 and 1 (CurriculumNet: 0.6)")
        if self.dim < 1 or self.exact_max < 1 or self.anchors < 2:
            raise WvError("--dim and --exact-max must be at least 1, --anchors at least 2")


@dataclass(frozen=True)
class SelectOptions:
    rules: tuple = opt(help="Drop the samples where RULE holds (repeatable; the first rule that matches is recorded).", flag="--drop", multiple=True, metavar="RULE")
    min_per_class: int = opt(10, "Never leave a class with fewer samples than this.")
    max_drop_fraction: float = opt(0.5, "Never drop more than this fraction of a class.")
    split: str = opt("train", choices=SPLITS)
    seed: int = opt(0, "Breaks ties when class protection keeps some matched samples.")

    def validate(self) -> None:
        if self.min_per_class < 0:
            raise WvError("--min-per-class must be 0 or more")
        if not 0 <= self.max_drop_fraction <= 1:
            raise WvError("--max-drop-fraction must be a fraction between 0 and 1")


@dataclass(frozen=True)
class AuditOptions:
    per_class: int = opt(24, "Dropped images shown per class.")
    kept_per_class: int = opt(8, "Kept (and, separately, protected) images shown per class, for contrast.")
    overview: int = opt(36, "Dropped images in the index page's mosaic.")
    thumb_size: int = opt(160, "Longest side of a thumbnail, in pixels.")
    bins: int = opt(40, "Bins of each score histogram.")
    split: str = opt("train", choices=SPLITS)
    selection: str = opt(SELECTION, "The selection sidecar to report on (wv select --name).")
    relabel: str = opt("auto", "Pseudo-labels to show on relabel.html (a `wv relabel` --name); auto: scores/pseudo when `wv relabel` made it; none.")
    seed: int = opt(0, "Which samples each class page shows (a seeded random pick).")

    def validate(self) -> None:
        if not (1 <= self.per_class <= MAX_CARDS and 0 <= self.kept_per_class <= MAX_CARDS and 0 <= self.overview <= MAX_CARDS):
            raise WvError(f"--per-class must be 1 to {MAX_CARDS:,}, --kept-per-class and --overview 0 to {MAX_CARDS:,}")
        if not 32 <= self.thumb_size <= 512:
            raise WvError("--thumb-size must be between 32 and 512 pixels")
        if not 1 <= self.bins <= MAX_BINS:
            raise WvError(f"--bins must be 1 to {MAX_BINS:,}")
        check_seed(self.seed)

    def limit(self, state: str) -> int:
        return self.per_class if state == "dropped" else self.kept_per_class


@dataclass(frozen=True)
class DensityResources:
    """Where `wv score density` computes: not recorded with the score (they do not change it)."""

    device: str = opt("auto", "auto (GPU when there is one), cpu, cuda ...")
    memory_gb: float = opt(4.0, "Memory for features and distances (half each).")

    def validate(self) -> None:
        if not self.memory_gb > 0:
            raise WvError("--memory-gb must be positive")


@dataclass(frozen=True)
class LoopOptions:
    """How `wv embed` and `wv score confidence` run a model over a split's images."""

    batch_size: int = opt(256, "Images per forward pass.")
    loader_workers: int = opt(2, "Processes decoding images (0: in this process).")
    device: str = opt("auto", "auto (GPU when there is one), cpu, cuda, cuda:1 ...")


@dataclass(frozen=True)
class EmbedOptions:
    split: str = opt("train", choices=SPLITS)
    seed: int = opt(0, "Seeds torch (the features themselves are deterministic).")


CLASS_NAMES = ("wordnet", "imagenet")


@dataclass(frozen=True)
class ConfidenceOptions:
    templates: str = opt("simple", "CLIP prompts: simple, openai, or your own with {} for the class name, separated by |.")
    names: str = opt("wordnet", "CLIP class names: the first WordNet name (wv.json), or open_clip's ImageNet names (WebVision 1.0 only).", flag="--class-names", choices=CLASS_NAMES)
    split: str = opt("train", choices=SPLITS)
    seed: int = opt(0, "Seeds torch (scores are deterministic).")


CURRICULUM_METHODS = ("auto", "kmeans", "quantile")


@dataclass(frozen=True)
class CurriculumOptions:
    by: str = opt("density", "The score to split by: density (CurriculumNet k-means) or any score column (per-class quantiles).", metavar="SCORE[:COLUMN]")
    subsets: int = opt(3, "How many subsets (CurriculumNet: 3).")
    method: str = opt("auto", "auto: k-means for a density column, quantiles otherwise.", choices=CURRICULUM_METHODS)
    lower_is_cleaner: bool = opt(False, "For quantiles: low values are clean (default: high values are).")
    split: str = opt("train", choices=SPLITS)
    seed: int = opt(0, "k-means seed (the reference's random_state).")

    def validate(self) -> None:
        if not 2 <= self.subsets <= 100:
            raise WvError("--subsets must be between 2 and 100")
        if self.method not in CURRICULUM_METHODS:
            raise WvError(f"--method must be one of {', '.join(CURRICULUM_METHODS)}")
        if self.split not in SPLITS:
            raise WvError(f"unknown split {self.split!r}; choose train or val")
        check_seed(self.seed)
