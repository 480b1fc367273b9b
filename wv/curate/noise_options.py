"""The options of `wv score noise`, `wv score labelissues` and their out-of-fold probe (no torch here,
so that `--help` stays fast)."""

from dataclasses import dataclass

from wv.errors import WvError
from wv.options import opt
from wv.runtime import check_seed


@dataclass(frozen=True)
class ProbeOptions:
    folds: int = opt(5, "Out-of-fold probe: K folds, each a group of shards (shard i is in fold i mod K).")
    epochs: int = opt(10, "Probe training passes over the other folds' shards.")
    lr: float = opt(0.01, "Probe learning rate (AdamW, on standardised features).")
    batch_size: int = opt(256, "Probe minibatch size.")
    mix_shards: int = opt(8, "Shards read and shuffled together while the probe trains (memory: their features).")

    def validate(self, shards: int) -> None:
        if not 2 <= self.folds <= 1000 or self.epochs < 1 or self.batch_size < 1 or self.mix_shards < 1 or not 0 < self.lr <= 10:
            raise WvError("--folds must be 2 to 1000, --epochs, --batch-size and --mix-shards at least 1, and --lr in (0, 10]")
        if shards < self.folds:
            raise WvError(f"--folds {self.folds} needs at least {self.folds} shards (the folds are groups of shards) and the split has {shards}; lower --folds or rebuild with a smaller --shard-size")


@dataclass(frozen=True)
class NoiseOptions:
    threshold: float = opt(0.5, "Operating point: noisy = p_noisy above it (0.5: the model's more probable state).")
    points: int = opt(4096, "Order statistics kept per class and component for the within-class ranks.")
    fit_samples: int = opt(200_000, "Samples (a seeded pick) the mixture is fitted on.")
    split: str = opt("train", choices=("train", "val"))
    seed: int = opt(0, "Seeds the probe and the mixture's sample (results are deterministic).")

    def validate(self) -> None:
        if not 0 < self.threshold < 1:
            raise WvError("--threshold must be between 0 and 1 (exclusive)")
        if not 2 <= self.points <= 10_000_000 or not 100 <= self.fit_samples <= 100_000_000:
            raise WvError("--points must be 2 to 10,000,000 and --fit-samples 100 to 100,000,000")
        check_seed(self.seed)
