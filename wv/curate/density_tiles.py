"""Squared Euclidean distances tile by tile, and the samples of pairs that bracket a quantile of them.

The building blocks of wv.curate.density_core (see its docstring for how they are used): `Tiles`
computes the distances between rows in tiles (torch, any device), over the upper triangle only for
a set against itself, with a bound on their float32 rounding error; `squared_pairs` / `sample_pairs`
/ `tile_sample` give the same distances for chosen or sampled pairs; `bracket` puts an interval
around a quantile of the population a sample comes from. Arrays in, arrays out: no files.
"""

import contextlib
import functools
import math
from collections.abc import Iterator

import torch

FLOAT32_ROUNDOFF = 2.0**-24
BRACKET_SIGMAS = 6.0  # half-width of the sampled bracket around d_c, in standard errors of the sample quantile
SAMPLE_CHUNK = 1 << 16


class Tiles:
    """Squared Euclidean distances S between the rows of `a` and of `b`, tile by tile, in a's dtype.

    With b = a only the pairs i < j count: the other entries of the diagonal tiles are +inf. With
    `b_rows` (b[k] is a[b_rows[k]]) the pairs of a sample with itself are +inf. Every pass yields
    (row offset, column offset, tile); the tiles are kept for later passes when `cache_values` fit.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor | None = None, tile: int = 2048, cache_values: int = 0, b_rows: torch.Tensor | None = None):
        self.a, self.b, self.tile, self.b_rows = a, (a if b is None else b), tile, b_rows
        self.symmetric = b is None
        self.sq_a = (a * a).sum(1)
        self.sq_b = self.sq_a if self.symmetric else (self.b * self.b).sum(1)
        n, m = len(self.a), len(self.b)
        self.pairs = n * (n - 1) // 2 if self.symmetric else n * m
        self.keep = self.pairs <= cache_values
        self.cache: list | None = None
        self.largest_norm = float(torch.cat([self.sq_a, self.sq_b]).max().sqrt()) if n and m else 0.0

    def __iter__(self):
        if self.cache is not None:
            yield from self.cache
            return
        computed = []
        for item in self.compute():
            if self.keep:
                computed.append(item)
            yield item
        if self.keep:
            self.cache = computed

    def compute(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        n, m = len(self.a), len(self.b)
        for r in range(0, n, self.tile):
            for c in range(r if self.symmetric else 0, m, self.tile):
                rows, cols = slice(r, r + self.tile), slice(c, c + self.tile)
                s = torch.addmm(self.sq_b[None, cols], self.a[rows], self.b[cols].T, alpha=-2).add_(self.sq_a[rows, None]).abs_()
                if self.symmetric and r == c:
                    s.add_(lower_triangle_inf(len(s), s.dtype, s.device))
                if self.b_rows is not None:
                    ids = self.b_rows[cols]
                    own = ((ids >= r) & (ids < r + len(s))).nonzero()[:, 0]
                    s[ids[own] - r, own] = math.inf
                yield r, c, s

    def error_bound(self) -> float:
        """A bound on |S - exact S| for float32 tiles of float32 rows rounded from float64 ones.

        Rounding the rows moves S by at most 2u (|x| + |y|)^2 (u = 2^-24); the squared norms, the dot
        product (d terms, any summation order, |sum x_k y_k| <= |x||y|) and the two additions add at
        most (d + 2) u (|x| + |y|)^2 (plus terms of order d^2 u^2). (d + 5) u (2 max |x|)^2 covers both
        with room to spare, also for the float64 recomputation (~1e-16 relative). Rows are centred
        first, so |x| is of the order of the distances."""
        scale = 2 * self.largest_norm
        return (self.a.shape[1] + 5) * FLOAT32_ROUNDOFF * scale * scale


@functools.lru_cache(maxsize=4)
def lower_triangle_inf(size: int, dtype, device) -> torch.Tensor:
    """Added to a diagonal tile: +inf on and below the diagonal (pairs i >= j), 0 above."""
    return torch.zeros(size, size, dtype=dtype, device=device).masked_fill_(torch.ones(size, size, dtype=torch.bool, device=device).tril_(), math.inf)


@contextlib.contextmanager
def full_float32_matmul() -> Iterator[None]:
    """Exactness rests on true float32 products: no TF32 / bf16 shortcuts while we compute."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def squared_pairs(z: torch.Tensor, sq: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """S for the given pairs, as the tiles compute it (same formula), in z's dtype, chunk by chunk."""
    parts = []
    for start in range(0, len(i), SAMPLE_CHUNK):
        a, b = i[start : start + SAMPLE_CHUNK], j[start : start + SAMPLE_CHUNK]
        dots = (z.index_select(0, a) * z.index_select(0, b)).sum(1)
        parts.append((sq.index_select(0, a) + sq.index_select(0, b) - 2 * dots).abs_())
    return torch.cat(parts) if parts else torch.zeros(0, dtype=z.dtype, device=z.device)


def sample_pairs(z: torch.Tensor, sq: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
    """S of up to `draws` random pairs i != j of z's rows, in z's dtype."""
    i = torch.randint(0, len(z), (draws,), generator=generator).to(z.device)
    j = torch.randint(0, len(z), (draws,), generator=generator).to(z.device)
    keep = i != j
    return squared_pairs(z, sq, i[keep], j[keep])


def tile_sample(tiles: Tiles, draws: int) -> torch.Tensor:
    """S of about `draws` pairs taken at a fixed stride from the tiles (computing and keeping them):
    nearly free when the tiles are kept anyway. The stride is prime to the tile width and its start
    moves from tile to tile, so every row and column is sampled."""
    step = max(1, tiles.pairs // draws) | 1
    while math.gcd(step, tiles.tile) != 1:
        step += 2
    parts = []
    for k, (_, _, s) in enumerate(tiles):
        values = s.reshape(-1)[(k * 7919) % step :: step]
        parts.append(values[torch.isfinite(values)])
    return torch.cat(parts)


def sample_size(pairs: int, budget: int, from_tiles: bool) -> int:
    """Pairs sampled to bracket d_c; the bracket then holds about 6 / sqrt(draws) of all pairs.
    Taken from kept tiles, a sample costs little: a sixteenth of the pairs (all of them for small
    classes, at most 4M). Drawn at
    random, enough that the bracket holds about budget / 64 pairs (at least 65,536, at most 4M)."""
    if from_tiles:
        return int(min(max(pairs // 16, min(pairs, 1 << 16)), 1 << 22))
    wanted = (64 * BRACKET_SIGMAS * pairs / max(budget, 1)) ** 2
    return int(max(min(wanted, 1 << 22, pairs // 8), 1 << 16))


def bracket(sample: torch.Tensor, p: float, sigmas: float) -> tuple[float, float]:
    """[lo, hi) in S around the p-quantile of the population `sample` comes from."""
    m = len(sample)
    if m == 0:
        return 0.0, math.inf
    half = sigmas * math.sqrt(p * (1 - p) / m) + 2 / m
    lo = float(sample.kthvalue(int((p - half) * m) + 1).values) if p - half > 0 else 0.0
    hi = float(sample.kthvalue(min(m - 1, math.ceil((p + half) * m)) + 1).values) if p + half < 1 else math.inf
    return lo, math.nextafter(hi, math.inf)
