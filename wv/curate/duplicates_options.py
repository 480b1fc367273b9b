"""The options of `wv score duplicates` (wv.curate.duplicates), declared once, apart from the driver
(which imports torch) so that the command line is built without it."""

from dataclasses import dataclass

from wv.errors import WvError
from wv.options import opt

MODES = ("auto", "exact", "approximate")


@dataclass(frozen=True)
class DuplicateOptions:
    features: str = opt("", "Which ROOT/features/NAME to use (default: the only one there); train and val both need them.")
    val_features: str = opt("", "The val shards' features when `wv embed --split val` wrote them under another name (the same model; default: --features).")
    threshold: float = opt(0.95, "Near duplicates: cosine similarity of the features at or above this (0 to 1].")
    against: str = opt(
        "", "Another dataset to check for leaks: a .npy of features, a .parquet with a features column (and __key__), or a folder of images (embedded with the model of --features).", metavar="PATH"
    )
    mode: str = opt(
        "auto", "exact: every pair, tile by tile. approximate: k-means cells (faiss), each sample searched in its --probes nearest cells. auto: exact up to --exact-max samples.", choices=MODES
    )
    exact_max: int = opt(200_000, "In auto mode, more samples (train + val + against) than this are searched approximately.")
    probes: int = opt(3, "Approximate mode: cells searched per sample.")
    seed: int = opt(0, "Seeds the k-means of the approximate mode.")

    def validate(self) -> None:
        if not 0 < self.threshold <= 1:
            raise WvError(f"--threshold must be a cosine similarity above 0 and at most 1, not {self.threshold}")
        if self.mode not in MODES:
            raise WvError(f"--mode must be one of {', '.join(MODES)}")
        if self.exact_max < 1 or self.probes < 1:
            raise WvError("--exact-max and --probes must be at least 1")
