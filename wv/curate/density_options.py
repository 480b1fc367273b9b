"""The options of `wv score density` (wv.curate.density), each with its default and --help line,
declared once. Apart from density.py, which imports torch, so that the command line is built
without it."""

from dataclasses import dataclass

from wv.errors import WvError
from wv.options import opt

MODES = ("auto", "exact", "approximate")


@dataclass(frozen=True)
class DensityOptions:
    features: str = opt("", "Which ROOT/features/NAME to use (default: the only one there).")
    split: str = opt("train", choices=("train", "val"))
    dim: int = opt(256, "PCA to this many dimensions when the features are wider.")
    quantile: float = opt(0.6, "d_c is this quantile of the class's distances.")
    mode: str = opt("auto", "exact: every pair. approximate: sampled anchors. auto: exact up to --exact-max samples per class.",
                    choices=MODES)
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
