"""The options of `wv relabel` (wv.curate.relabel), each with its default and --help line, declared
once. Apart from relabel.py, which imports torch, so that the command line is built without it."""

import math
from dataclasses import dataclass

from wv.errors import WvError
from wv.options import opt
from wv.runtime import check_processes, check_seed


@dataclass(frozen=True)
class RelabelOptions:
    models: tuple = opt(
        help="A `wv train` checkpoint trained on this root's classes; repeat it for an ensemble (the models' probabilities are averaged).", flag="--model", multiple=True, metavar="CHECKPOINT"
    )
    min_confidence: float = opt(0.9, "A sample gets a pseudo-label where the most probable class has at least this probability.")
    split: str = opt("train", choices=("train", "val"))
    batch_size: int = opt(256, "Images per forward pass.")
    loader_workers: int = opt(2, "Processes decoding images (0: in this process).")
    device: str = opt("auto", "auto (GPU when there is one), cpu, cuda, cuda:1 ...")
    seed: int = opt(0, "Seeds torch (the pseudo-labels themselves are deterministic).")

    def __post_init__(self):
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))

    def validate(self) -> None:
        if not self.models:
            raise WvError("give --model: a `wv train` checkpoint (repeat it for an ensemble)")
        if not (math.isfinite(self.min_confidence) and 0 < self.min_confidence <= 1):
            raise WvError(f"--min-confidence must be a probability above 0 and at most 1, not {self.min_confidence}")
        if self.split not in ("train", "val"):
            raise WvError("--split must be train or val")
        if self.batch_size < 1 or self.loader_workers < 0:
            raise WvError("--batch-size must be at least 1 and --loader-workers at least 0")
        check_processes(self.loader_workers, "--loader-workers")
        check_seed(self.seed)
