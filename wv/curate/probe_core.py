"""A linear probe (multinomial logistic regression) on features, trained from batches: arrays in, arrays out.

The out-of-fold predictions of `wv score noise` and `wv score labelissues` come from it; the driver
(wv.curate.probe) streams the batches shard by shard, so memory holds one batch, the weights
(dim x classes) and the standardisation (two vectors of dim), never the dataset.
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Standardiser:
    """Running per-dimension mean and variance (Chan's parallel update), merged batch by batch."""

    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        n, mean = len(x), x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
        self.count = total

    def scale(self) -> tuple[np.ndarray, np.ndarray]:
        sd = np.sqrt(self.m2 / max(self.count - 1, 1))
        return self.mean.astype(np.float32), np.where(sd > 1e-8, sd, 1.0).astype(np.float32)


class LinearProbe:
    def __init__(self, dim: int, classes: int, mean: np.ndarray, sd: np.ndarray, seed: int, lr: float = 0.01, weight_decay: float = 1e-4):
        generator = torch.Generator().manual_seed(seed)
        self.layer = torch.nn.Linear(dim, classes)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(classes, dim, generator=generator) * 0.01)
            self.layer.bias.zero_()
        self.mean, self.sd = torch.from_numpy(mean), torch.from_numpy(sd)
        self.optimizer = torch.optim.AdamW(self.layer.parameters(), lr=lr, weight_decay=weight_decay)

    def inputs(self, x: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(np.asarray(x, dtype=np.float32)) - self.mean) / self.sd

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = torch.nn.functional.cross_entropy(self.layer(self.inputs(x)), torch.from_numpy(np.asarray(y, dtype=np.int64)))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return torch.softmax(self.layer(self.inputs(x)), dim=1).numpy()


def batches(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator):
    """The rows of one chunk in a seeded random order, `size` at a time."""
    order = rng.permutation(len(y))
    for start in range(0, len(order), size):
        rows = np.sort(order[start : start + size])
        yield x[rows], y[rows]
