"""Visual permutation learning (DeepPermNet): the image's tiles, shuffled, put back in order.

    tiles     an image is cut into grid x grid tiles (l = grid^2), shuffled by a permutation P drawn
              from a fixed set of --permutations distinct ones (seeded)
    network   one CNN embeds every tile (the backbone, its last linear layer giving `features` per
              tile), the l embeddings are concatenated, a linear layer maps them to an l x l matrix,
              the Sinkhorn layer (wv.train.sinkhorn) makes it doubly stochastic
    loss      cross-entropy of each row against P (row j: where the tile shown at place j came from)
    accuracy  tiles put back at their place: by the argmax of each row (training, on the device) and by
              the best assignment (Hungarian, scipy's linear_sum_assignment; validation)
The backbone is a plain model of its architecture, saved as the checkpoint's `model`, so that
`wv train --init` starts a classifier from it (the tile-feature layer is its class head, re-initialised).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from wv.errors import WvError
from wv.runtime import rng
from wv.train.sinkhorn import log_sinkhorn


def permutation_set(tiles: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct permutations of range(tiles) [count, tiles], the same for a seed on every rank."""
    if count > math.factorial(tiles):
        raise WvError(f"--permutations {count} is more than the {math.factorial(tiles)} orders of {tiles} tiles")
    generator = rng(seed, 17)
    found: dict[tuple, None] = {}
    while len(found) < count:
        found.setdefault(tuple(generator.permutation(tiles).tolist()), None)
    return np.array(list(found), dtype=np.int64)


def cut_tiles(images: torch.Tensor, grid: int) -> torch.Tensor:
    """[B, C, S, S] -> [B, grid^2, C, t, t] in row-major order, t = S // grid (a remainder is cropped)."""
    batch, channels, height, width = images.shape
    t = min(height, width) // grid
    images = images[:, :, : t * grid, : t * grid]
    tiles = images.reshape(batch, channels, grid, t, grid, t).permute(0, 2, 4, 1, 3, 5)
    return tiles.reshape(batch, grid * grid, channels, t, t)


def shuffle_tiles(tiles: torch.Tensor, permutations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Place j shows tile permutations[b, j]; returns (shuffled tiles, the permutation matrices P
    [B, l, l] with P[b, j, k] = 1 where the tile at place j came from place k)."""
    batch, places = permutations.shape
    shuffled = tiles[torch.arange(batch, device=tiles.device)[:, None], permutations]
    return shuffled, F.one_hot(permutations, places).float()


class PermutationNet(nn.Module):
    """backbone (tiles -> features each) -> concatenation -> linear -> l x l -> log Sinkhorn."""

    def __init__(self, backbone: nn.Module, tiles: int, features: int, iterations: int, temperature: float):
        super().__init__()
        self.model, self.tiles, self.iterations, self.temperature = backbone, tiles, iterations, temperature
        self.task_head = nn.Linear(tiles * features, tiles * tiles)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        batch = tiles.shape[0]
        features = F.relu(self.model(tiles.flatten(0, 1))).reshape(batch, -1)
        scores = self.task_head(features).float().view(batch, self.tiles, self.tiles)
        return log_sinkhorn(scores, self.iterations, self.temperature)


def permutation_loss(log_s: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each row's cross-entropy against P, averaged over the rows, weighted per sample, / batch size."""
    per_sample = -(target * log_s).sum(dim=(1, 2)) / log_s.shape[1]
    return (per_sample * weights).sum() / len(weights)


def argmax_hits(log_s: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Tiles whose row argmax is their true place (a device tensor: no sync)."""
    return (log_s.argmax(dim=2) == target.argmax(dim=2)).sum()


def assignment_hits(log_s: torch.Tensor, permutations: torch.Tensor) -> tuple[int, int]:
    """(tiles at their place, whole permutations recovered) under the best one-to-one assignment."""
    cost = -log_s.detach().float().cpu().numpy()
    truth = permutations.cpu().numpy()
    tiles = whole = 0
    for c, p in zip(cost, truth):
        _, columns = linear_sum_assignment(c)
        right = int((columns == p).sum())
        tiles += right
        whole += right == len(p)
    return tiles, whole
