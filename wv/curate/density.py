"""`wv score density`: CurriculumNet's density-distance scores, per class, from image features.

For the N samples of one class (Guo et al., ECCV 2018; MalongTech/research-curriculumnet):
  1. PCA to `dim` (256) dimensions when the features are wider (scikit-learn PCA on float32, with
     random_state = seed, exactly as the reference; skipped when N <= dim, where the reference fails
     and where PCA would keep every pairwise distance anyway);
  2. D = the N x N Euclidean distances (diagonal exactly 0, D exactly symmetric);
  3. d_c = the value at index int(N * N * quantile) of the N * N sorted distances, self-distances
     included (quantile 0.6);
  4. density_i = #{j : D_ij < d_c} - 1;
  5. delta_i = min D_ij over the samples j with density_j > density_i; the class's densest samples
     (none denser) get their largest distance, as the reference's density centre does.
`wv curriculum split` turns densities into subsets (k-means, as the reference).

Differences from the reference, all deliberate: distances are exact to float64 (the reference's
float32 Gram-matrix trick leaves self-distances of ~1e-3 and rounds pairs near d_c differently on
every BLAS, so no two float32 implementations agree sample for sample); its deltas (an optional
extra there) are indexed by sort position and break density ties by argsort order, ours follow the
definition above. A single sample gets density -1 and delta 0 (d_c is its zero self-distance); two
samples get density 0. In general density is -1 wherever d_c = 0 (60% of the distances are zero:
identical features).

Exact mode never holds the N x N matrix. Squared distances are computed in tiles (torch, on the GPU
when there is one) over the upper triangle only, so D is exactly symmetric, in float32 from centred
rows, with a proven bound E on their rounding error. A sample of pairs brackets d_c; one pass counts,
per sample, the pairs below the bracket and collects the pairs inside it (a fraction of a
percent); the r-th float32 value overall is within E of the exact d_c^2, so only the pairs within
3E of it are recomputed in float64 to settle d_c and every density exactly. When that cannot settle
it (a bracket missed three times, too many pairs inside), the float64 path does: float64 tiles, d_c
selected by counting with histogram passes that narrow the bracket, then a counting pass. Deltas take
one more pass over the same tiles (on the fast path their squares are within E of the float64 ones;
the sidecar keeps them as float32). Tiles are kept between passes when they fit the budget
(`memory_gb`), recomputed otherwise.

Approximate mode (classes larger than `exact_max`, or `mode="approximate"`): `anchors` samples of
the class, drawn with the seed, stand for it. d_c is the exact cutoff of the anchors' own distances;
density_i = #{anchors a != i : D_ia < d_c} scaled by (N - 1) / (number of anchors compared), rounded;
delta_i = the distance to the nearest anchor with a higher density (the farthest anchor for the
densest). Cost O(N x anchors) instead of O(N^2), float32.

Work is gathered class by class from the per-shard feature files, in groups of classes that fit
`memory_gb`: memory is bounded by the largest class, never the dataset. Finished classes are kept in
scores/{name}/_classes/ so that a killed run resumes; the per-shard sidecars
scores/{name}/{shard}.parquet (__key__, density, delta, cutoff) are written at the end. With
`workers` > 1 (or Ray) a group's classes are computed in parallel on CPU, one class per task; a
class's result does not depend on where it ran.
"""

import contextlib
import functools
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from wv.atomic import write_parquet
from wv.errors import WvError
from wv.parallel import Workers
from wv.progress import bar_options
from wv.runtime import pick_device, set_threads
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root, check_name

MODES = ("auto", "exact", "approximate")
COMMAND = "score density"
TILE = {"cpu": 2048, "cuda": 8192}
FLOAT32_ROUNDOFF = 2.0 ** -24
BRACKET_SIGMAS = 6.0  # half-width of the sampled bracket around d_c, in standard errors of the sample quantile
TRIES = 3  # brackets tried (each 4x wider) before the float64 path takes over
HISTOGRAM_BINS = 4096
SAMPLE_CHUNK = 1 << 16


@dataclass(frozen=True)
class DensityOptions:
    features: str = ""
    split: str = "train"
    dim: int = 256
    quantile: float = 0.6
    mode: str = "auto"
    exact_max: int = 100_000
    anchors: int = 10_000
    seed: int = 0

    def validate(self) -> None:
        if self.mode not in MODES:
            raise WvError(f"--mode must be one of {', '.join(MODES)}")
        if not 0 < self.quantile < 1:
            raise WvError("--quantile must be a fraction between 0 and 1 (CurriculumNet: 0.6)")
        if self.dim < 1 or self.exact_max < 1 or self.anchors < 2:
            raise WvError("--dim and --exact-max must be at least 1, --anchors at least 2")


@dataclass
class ClassDensity:
    density: np.ndarray  # int64, one per sample
    delta: np.ndarray  # float64
    cutoff: float  # d_c
    exact: bool
    path: str  # how it was computed: "float32+float64", "float64", "approximate", "trivial"


# -- distances, tile by tile ------------------------------------------------------------------------
class Tiles:
    """Squared Euclidean distances S between the rows of `a` and of `b`, tile by tile, in a's dtype.

    With b = a only the pairs i < j count: the other entries of the diagonal tiles are +inf. With
    `b_rows` (b[k] is a[b_rows[k]]) the pairs of a sample with itself are +inf. Every pass yields
    (row offset, column offset, tile); the tiles are kept for later passes when `cache_values` fit.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor | None = None, tile: int = 2048, cache_values: int = 0,
                 b_rows: torch.Tensor | None = None):
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

    def compute(self):
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
def full_float32_matmul():
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
        a, b = i[start:start + SAMPLE_CHUNK], j[start:start + SAMPLE_CHUNK]
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
        values = s.reshape(-1)[(k * 7919) % step::step]
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


# -- exact mode, fast path: float32 tiles, float64 for the pairs near d_c ---------------------------
def scan_candidates(tiles: Tiles, lo: float, hi: float, limit: int):
    """One pass over float32 tiles: per sample, how many of its pairs lie below lo; the pairs in
    [lo, hi) as (i, j, S). None when more than `limit` pairs lie in [lo, hi)."""
    n = len(tiles.a)
    per_sample = torch.zeros(n, dtype=torch.int64, device=tiles.a.device)
    rows, cols, values, found = [], [], [], 0
    below, inside = None, None
    for r, c, s in tiles:
        # Comparisons written into float buffers: much faster on CPU than boolean masks and their sums.
        below = torch.lt(s, lo, out=below if below is not None and below.shape == s.shape else torch.empty_like(s))
        per_sample[r:r + len(s)] += below.sum(1).to(torch.int64)
        per_sample[c:c + s.shape[1]] += below.sum(0).to(torch.int64)
        inside = torch.lt(s, hi, out=inside if inside is not None and inside.shape == s.shape else torch.empty_like(s)).sub_(below)
        where = inside.nonzero()  # in [lo, hi)
        found += len(where)
        if found > limit:
            return None
        rows.append(where[:, 0] + r)
        cols.append(where[:, 1] + c)
        values.append(s[where[:, 0], where[:, 1]])
    return per_sample, torch.cat(rows), torch.cat(cols), torch.cat(values)


def fast_exact_density(tiles: Tiles, z64: torch.Tensor, r: int, generator: torch.Generator, budget: int):
    """(per-sample counts of pairs closer than d_c, d_c), d_c the square root of the r-th smallest
    exact S. The float32 tiles rank the pairs to within their rounding bound E; only the pairs
    within 3 E of the r-th are recomputed in float64. None when that cannot settle it (the float64
    path then does)."""
    n, sq64 = len(z64), (z64 * z64).sum(1)
    error = tiles.error_bound()
    draws = sample_size(tiles.pairs, budget, from_tiles=tiles.keep)
    sample = tile_sample(tiles, draws) if tiles.keep else sample_pairs(tiles.a, tiles.sq_a, draws, generator)
    for attempt in range(TRIES):
        lo, hi = bracket(sample, r / tiles.pairs, BRACKET_SIGMAS * 4 ** attempt)
        scanned = scan_candidates(tiles, lo, hi, budget // 16)
        if scanned is None:
            return None
        per_sample, i, j, s32 = scanned
        below = int(per_sample.sum()) // 2
        if not below <= r < below + len(s32):
            continue  # the sample's bracket missed: try a wider one
        nth = float(s32.kthvalue(r - below + 1).values)  # the r-th float32 S; the exact one is within E of it
        if not (lo <= nth - 3 * error and nth + 3 * error < hi):
            continue  # pairs outside the bracket could be near d_c
        sure = s32 < nth - 3 * error  # exact S < nth - 2E <= the exact r-th - E
        near = ~sure & (s32 <= nth + 3 * error)
        exact = squared_pairs(z64, sq64, i[near], j[near])
        rank = r - below - int(sure.sum())
        if not 0 <= rank < len(exact):
            return None
        cutoff = float(exact.kthvalue(rank + 1).values.sqrt())
        if not (nth - 2 * error <= 0 or math.sqrt(nth - 2 * error) < cutoff):
            return None  # a pair taken as surely below could round to d_c itself
        close = exact.sqrt() < cutoff
        counts = per_sample + torch.bincount(i[sure], minlength=n) + torch.bincount(j[sure], minlength=n)
        counts += torch.bincount(i[near][close], minlength=n) + torch.bincount(j[near][close], minlength=n)
        return counts, cutoff
    return None


# -- exact mode, float64 path: select d_c by counting, narrowing by histograms ----------------------
def kth_squared(tiles: Tiles, r: int, z: torch.Tensor, generator: torch.Generator, budget: int) -> float:
    """The r-th smallest (0-based) S of the tiles' pairs, exactly, holding at most `budget` / 2 of them."""
    if tiles.pairs <= budget // 2:
        return float(torch.cat([s[torch.isfinite(s)] for _, _, s in tiles]).kthvalue(r + 1).values)
    sample = sample_pairs(z, tiles.sq_a, sample_size(tiles.pairs, budget, from_tiles=False), generator)
    lo, hi = bracket(sample, r / tiles.pairs, BRACKET_SIGMAS)
    edges = torch.tensor([lo, hi], dtype=z.dtype, device=z.device)
    while True:
        below, counts, inside = scan_histogram(tiles, edges, budget // 2)
        cumulative = below + torch.cumsum(counts, 0)
        if r < below:
            edges = torch.stack([torch.zeros_like(edges[0]), edges[0]])
            continue
        if r >= int(cumulative[-1]):
            edges = torch.stack([edges[-1], torch.full_like(edges[0], math.inf)])
            continue
        if inside is not None:
            return float(inside.kthvalue(r - below + 1).values)
        b = int(torch.searchsorted(cumulative, torch.tensor(r, device=cumulative.device), right=True))
        lo, hi = edges[b], edges[b + 1]
        if math.isinf(float(hi)):
            hi = (tiles.sq_a.max().sqrt() * 2) ** 2 * (1 + 1e-6) + 1e-300
        if torch.nextafter(lo, hi) >= hi:  # a bin one float wide holds a single value
            return float(lo)
        edges = torch.unique(torch.cat([torch.linspace(float(lo), float(hi), HISTOGRAM_BINS + 1, dtype=z.dtype, device=z.device),
                                        torch.as_tensor(hi, dtype=z.dtype, device=z.device)[None]]))


def scan_histogram(tiles: Tiles, edges: torch.Tensor, budget: int):
    """How many S lie below edges[0], how many in each bin [edges[k], edges[k+1]), and the values
    inside [edges[0], edges[-1]) when there are at most `budget` of them."""
    lo, hi, inner = edges[0], edges[-1], edges[1:-1]
    below, counts = 0, torch.zeros(len(edges) - 1, dtype=torch.int64, device=edges.device)
    kept, size = [], 0
    for _, _, s in tiles:
        below += int(torch.lt(s, lo, out=torch.empty_like(s)).sum())  # (float buffers: faster than boolean masks on CPU)
        inside = s[(s >= lo) & (s < hi)]
        counts += torch.bincount(torch.bucketize(inside, inner, right=True), minlength=len(counts))
        if kept is not None:
            size += len(inside)
            kept = kept + [inside] if size <= budget else None
    return below, counts, (torch.cat(kept) if kept is not None else None)


def float64_exact_density(z64: torch.Tensor, r: int, generator: torch.Generator, tile: int, budget: int):
    tiles = Tiles(z64, tile=tile, cache_values=budget // 2)
    cutoff = math.sqrt(kth_squared(tiles, r, z64, generator, budget))
    threshold = squared_threshold(cutoff)
    counts = torch.zeros(len(z64), dtype=torch.int64, device=z64.device)
    for r0, c0, s in tiles:
        close = torch.lt(s, threshold, out=torch.empty_like(s))
        counts[r0:r0 + len(s)] += close.sum(1).to(torch.int64)
        counts[c0:c0 + s.shape[1]] += close.sum(0).to(torch.int64)
    return counts, cutoff, tiles


def squared_threshold(cutoff: float) -> float:
    """The least float64 S with sqrt(S) >= cutoff: S < it exactly when sqrt(S) < cutoff (sqrt is monotone)."""
    s = cutoff * cutoff
    while s > 0 and math.sqrt(s) >= cutoff:
        s = math.nextafter(s, 0)
    while math.sqrt(s) < cutoff:
        s = math.nextafter(s, math.inf)
    return s


# -- deltas ---------------------------------------------------------------------------------------
def nearest_denser(tiles: Tiles, row_density: torch.Tensor, col_density: torch.Tensor) -> torch.Tensor:
    """Per row sample: the smallest S to a column sample of higher density (inf if none).

    The pairs to leave out get a huge number added (much cheaper than boolean masking on CPU)."""
    dtype = tiles.a.dtype
    huge = torch.finfo(dtype).max / 4
    row_density, col_density = row_density.to(dtype), col_density.to(dtype)
    nearest = torch.full((len(tiles.a),), math.inf, dtype=dtype, device=tiles.a.device)
    penalised = None
    for r, c, s in tiles:
        rows, cols = slice(r, r + len(s)), slice(c, c + s.shape[1])
        if penalised is None or penalised.shape != s.shape:
            penalised = torch.empty_like(s)
        torch.ge(row_density[rows, None], col_density[None, cols], out=penalised)  # 1 where the column is not denser
        nearest[rows] = torch.minimum(nearest[rows], penalised.mul_(huge).add_(s).amin(1))
        if tiles.symmetric:
            torch.le(row_density[rows, None], col_density[None, cols], out=penalised)  # 1 where the row is not denser
            nearest[cols] = torch.minimum(nearest[cols], penalised.mul_(huge).add_(s).amin(0))
    return nearest.masked_fill_(nearest >= huge / 2, math.inf)


def farthest(z64: torch.Tensor, which: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    """The largest distance from each of the samples `which` to the samples `others` (default all), float64."""
    others = z64 if others is None else others
    sq = (others * others).sum(1)
    out = [(sq[None, :] + (z64[which[s:s + 256]] ** 2).sum(1)[:, None] - 2 * z64[which[s:s + 256]] @ others.T).abs().amax(1)
           for s in range(0, len(which), 256)]
    return torch.cat(out).sqrt()


def deltas(tiles: Tiles, z64: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    nearest = nearest_denser(tiles, density, density).to(torch.float64).sqrt()
    densest = torch.isinf(nearest).nonzero()[:, 0]
    if len(densest):
        nearest[densest] = farthest(z64, densest)
    return nearest


# -- one class ------------------------------------------------------------------------------------
def reduce_dims(features: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """PCA to `dim` dimensions as the reference does it (float32 in, scikit-learn, random_state=seed)."""
    features = np.asarray(features, dtype=np.float32)
    if features.shape[1] <= dim or features.shape[0] <= dim:
        return features
    from sklearn.decomposition import PCA

    return PCA(n_components=dim, copy=False, random_state=seed).fit_transform(features.copy())


def exact_counts(z64: torch.Tensor, quantile: float, generator: torch.Generator, tile: int, budget: int):
    """(per sample: its pairs closer than d_c, d_c, the tiles, the path taken). z64: the class's rows,
    float64, centred (distances do not change; float32 rounding errors shrink)."""
    n = len(z64)
    z32 = z64.to(torch.float32)
    tiles = Tiles(z32, tile=tile, cache_values=budget)
    k = int(n * n * quantile)
    if k < n:  # d_c is one of the N zero self-distances (a single sample): no distance lies below it
        return torch.zeros(n, dtype=torch.int64, device=z64.device), 0.0, tiles, "trivial"
    r = (k - n) // 2  # the sorted N*N distances are the N zeros, then every pair i < j twice
    found = fast_exact_density(tiles, z64, r, generator, budget)
    if found is not None:
        return *found, tiles, "float32+float64"
    return *float64_exact_density(z64, r, generator, tile, budget), "float64"


def exact_class_density(z64: torch.Tensor, quantile: float, generator: torch.Generator, tile: int, budget: int) -> ClassDensity:
    counts, cutoff, tiles, path = exact_counts(z64, quantile, generator, tile, budget)
    density = counts - (0 if cutoff > 0 else 1)  # "- 1" removes the sample itself, counted only when d_c > 0
    return ClassDensity(density.cpu().numpy(), deltas(tiles, z64, density).cpu().numpy(), cutoff, True, path)


def approximate_class_density(z32: torch.Tensor, quantile: float, anchors: int, generator: torch.Generator, tile: int,
                              budget: int) -> ClassDensity:
    n = len(z32)
    chosen = torch.randperm(n, generator=generator)[:anchors].sort().values.to(z32.device)
    m = len(chosen)
    anchors64 = z32[chosen].to(torch.float64)
    _, cutoff, _, _ = exact_counts(anchors64 - anchors64.mean(0), quantile, generator, tile, budget)
    cross = Tiles(z32, z32[chosen], tile=tile, b_rows=chosen)  # a sample and itself: inf, never counted
    threshold = cutoff * cutoff
    counts = torch.zeros(n, dtype=torch.int64, device=z32.device)
    for r, _, s in cross:
        counts[r:r + len(s)] += torch.lt(s, threshold, out=torch.empty_like(s)).sum(1).to(torch.int64)
    is_anchor = torch.zeros(n, dtype=torch.int64, device=z32.device)
    is_anchor[chosen] = 1
    density = torch.round(counts.to(torch.float64) * (n - 1) / (m - is_anchor).clamp(min=1)).to(torch.int64)
    nearest = nearest_denser(cross, density, density[chosen]).to(torch.float64).sqrt()
    lonely = torch.isinf(nearest).nonzero()[:, 0]
    if len(lonely):
        z64 = z32.to(torch.float64)
        nearest[lonely] = farthest(z64, lonely, z64[chosen])
    return ClassDensity(density.cpu().numpy(), nearest.cpu().numpy(), cutoff, False, "approximate")


def class_density(features: np.ndarray, opts: DensityOptions, device: torch.device | str = "cpu",
                  budget: int = 1 << 26, tile: int | None = None) -> ClassDensity:
    """Density, delta and d_c of one class's samples (rows of `features`, in dataset order).

    `budget`: how many distances may be held at once (float32 tiles kept between passes, or half as
    many float64 ones; the pairs near d_c): memory of about 4 to 8 bytes times `budget`."""
    device = torch.device(device)
    tile = tile or TILE.get(device.type, 2048)
    generator = torch.Generator().manual_seed(opts.seed)
    z64 = torch.from_numpy(reduce_dims(features, opts.dim, opts.seed)).to(device=device, dtype=torch.float64)
    z64 -= z64.mean(0)
    with full_float32_matmul():
        if opts.mode == "exact" or (opts.mode == "auto" and len(z64) <= opts.exact_max):
            return exact_class_density(z64, opts.quantile, generator, tile, budget)
        return approximate_class_density(z64.to(torch.float32), opts.quantile, opts.anchors, generator, tile, budget)


# -- the dataset: classes gathered from the per-shard features ----------------------------------------
PARTIALS = "_classes"  # scores/{name}/_classes/{label}.parquet: finished classes of an unfinished run


def pick_features(root: Root, name: str | None) -> str:
    folder = root.path / "features"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if name:
        if name not in names:
            raise WvError(f"no features named {name!r} under {folder}; have: {', '.join(names) or 'none'} (make them with `wv embed`)")
        return name
    if not names:
        raise WvError(f"{root.path} has no image features; make them first with `wv embed {root.path} --model ...`")
    if len(names) > 1:
        raise WvError(f"{root.path} has several feature sets ({', '.join(names)}); choose one with --features")
    return names[0]


def sample_labels(root: Root, shards: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(label int32 per sample in dataset order, the index of each shard's first sample + the total):
    4 bytes per sample, the only thing held for the whole split (64 MB at 16M samples)."""
    labels = []
    for shard, samples in shards.select("name", "samples").iter_rows():
        label = pl.read_parquet(root.meta_path(shard), columns=["label"])["label"].cast(pl.Int32).to_numpy()
        if label.size != samples:
            raise WvError(f"{root.meta_path(shard)} has {label.size} rows for {samples} samples; run `wv shard verify`")
        labels.append(label)
    starts = np.concatenate([[0], np.cumsum(shards["samples"].to_numpy())]).astype(np.int64)
    return (np.concatenate(labels) if labels else np.zeros(0, np.int32)), starts


def check_features(root: Root, name: str, shards: pl.DataFrame) -> int:
    """The features' width; WvError unless every shard has its features, one row per sample."""
    dims = set()
    for shard, samples in shards.select("name", "samples").iter_rows():
        if not sidecars.complete(root, "features", name, shard, samples):
            raise WvError(f"features {name!r} are missing or incomplete for {shard}; finish `wv embed` first")
        dims.add(sidecars.read_features(root, name, shard).shape[1])
    if len(dims) > 1:
        raise WvError(f"features {name!r} have different widths in different shards ({sorted(dims)}); re-run `wv embed --overwrite`")
    return dims.pop() if dims else 0


def class_groups(sizes: dict[int, int], dim: int, group_bytes: float) -> list[list[int]]:
    """Classes in label order, grouped so that each group's float32 features fit `group_bytes`
    (a class larger than that is a group of its own: memory is bounded by the largest class)."""
    groups, current, used = [], [], 0
    for label, size in sorted(sizes.items()):
        need = size * dim * 4
        if current and used + need > group_bytes:
            groups.append(current)
            current, used = [], 0
        current.append(label)
        used += need
    return groups + ([current] if current else [])


def gather(root: Root, features: str, shard_names: list[str], label: np.ndarray, starts: np.ndarray, labels: list[int],
           dim: int) -> dict:
    """label -> (its samples' features as float32, their dataset indices), each class in dataset
    order, read in one pass over the shards."""
    index = np.flatnonzero(np.isin(label, labels))  # dataset order, so grouped by shard
    by_class = np.argsort(label[index], kind="stable")
    place = np.empty_like(by_class)
    place[by_class] = np.arange(by_class.size)  # index[k] goes to row place[k] of the block
    block = np.empty((index.size, dim), dtype=np.float32)
    bounds = np.searchsorted(index, starts)
    for position in np.flatnonzero(np.diff(bounds)):
        first, last = bounds[position], bounds[position + 1]
        stored = sidecars.read_features(root, features, shard_names[position])
        block[place[first:last]] = stored[index[first:last] - starts[position]]
    ordered = index[by_class]
    present, begins, counts = np.unique(label[ordered], return_index=True, return_counts=True)
    return {int(c): (block[b:b + n], ordered[b:b + n]) for c, b, n in zip(present, begins, counts)}


def distance_budget(memory_gb: float) -> int:
    """Distances that may be held at once: half of the memory, at up to 8 bytes each."""
    return int(memory_gb * 2 ** 30 / 2 / 8)


def partial_path(root: Root, name: str, label: int):
    return sidecars.sidecar_dir(root, "scores", name) / PARTIALS / f"{label}.parquet"


def score_density(root, opts: DensityOptions, name: str = "density", device: str = "auto", memory_gb: float = 4.0,
                  overwrite: bool = False, progress: bool = True, workers: int = 1, executor: str = "local",
                  ray_address: str | None = None) -> dict:
    """Write ROOT/scores/{name}/{shard}.parquet (__key__, density, delta, cutoff); returns the figures.

    workers > 1 or executor "ray": classes computed in parallel CPU processes, each with
    memory_gb / workers for its distances."""
    opts.validate()
    if memory_gb <= 0:
        raise WvError("--memory-gb must be positive")
    pooled = workers > 1 or executor == "ray"
    if pooled and device not in ("auto", "cpu"):
        raise WvError(f"--workers above 1 and --executor ray compute classes on CPU; drop --device {device}, or use one worker")
    dev = pick_device("cpu" if pooled else device)
    root = Root(root)
    root.info()
    check_name(name)
    with writing(root, COMMAND):
        return density_run(root, opts, name, dev, memory_gb, overwrite, progress, workers, executor, ray_address)


def density_run(root: Root, opts: DensityOptions, name: str, dev: torch.device, memory_gb: float, overwrite: bool, progress: bool,
                workers: int, executor: str, ray_address: str | None) -> dict:
    started = time.time()
    opts = DensityOptions(**{**asdict(opts), "features": pick_features(root, opts.features)})
    shards = root.shards(opts.split)
    if shards.height == 0:
        raise WvError(f"{root.path} has no {opts.split} shards")
    dim = check_features(root, opts.features, shards)
    todo = sidecars.begin_run(root, "scores", name, {**asdict(opts), "format": "wv-density/1"}, overwrite, opts.split, command=COMMAND)
    figures = {"name": name, "features": opts.features, "dim": dim, "device": str(dev), "classes": 0, "samples": int(shards["samples"].sum()),
               "classes_done": 0, "classes_resumed": 0, "exact": 0, "approximate": 0, "float64_fallback": 0, "largest_class": 0,
               "slowest_class_seconds": 0.0, "shards_written": len(todo), "shards_skipped": shards.height - len(todo),
               "paths": {"scores": str(sidecars.sidecar_dir(root, "scores", name))}}
    if todo:
        with Workers(workers, executor, ray_address) as pool:
            compute_classes(root, opts, name, shards, dim, dev, memory_gb, figures, progress, pool)
        write_shards(root, name, shards, todo)
        shutil.rmtree(sidecars.sidecar_dir(root, "scores", name) / PARTIALS, ignore_errors=True)
    figures["seconds"] = round(time.time() - started, 2)
    return figures


@dataclass(frozen=True)
class ClassJob:
    label: int
    features: np.ndarray
    opts: DensityOptions
    device: str
    budget: int
    threads: int | None  # torch threads in a pool worker; None: leave the process's setting


def class_task(job: ClassJob) -> tuple[int, ClassDensity, float]:
    """Pool task: one class's density -> (label, result, seconds)."""
    set_threads(job.threads)
    began = time.time()
    return job.label, class_density(job.features, job.opts, job.device, job.budget), time.time() - began


def compute_classes(root: Root, opts: DensityOptions, name: str, shards: pl.DataFrame, dim: int, device: torch.device,
                    memory_gb: float, figures: dict, progress: bool, pool: Workers) -> None:
    label, starts = sample_labels(root, shards)
    present, counts = np.unique(label, return_counts=True)
    sizes = dict(zip(present.tolist(), counts.tolist()))
    figures["classes"], figures["largest_class"] = len(sizes), max(sizes.values(), default=0)
    todo = {label: size for label, size in sizes.items() if not partial_path(root, name, label).is_file()}
    figures["classes_resumed"] = len(sizes) - len(todo)
    shard_names = shards["name"].to_list()
    budget = distance_budget(memory_gb) // pool.workers  # each of the workers holds its own distances
    threads = None if pool.inline else 1 if pool.ray is not None else max(1, (os.cpu_count() or 1) // pool.workers)
    with tqdm(total=sum(todo.values()), desc=f"density {opts.features}", unit="sample", dynamic_ncols=True,
              **bar_options(progress)) as bar:
        for group in class_groups(todo, dim, memory_gb * 2 ** 30 / 2):
            gathered = gather(root, opts.features, shard_names, label, starts, group, dim)
            for cls, (features, _) in gathered.items():
                if not np.isfinite(features).all():
                    raise WvError(f"features {opts.features!r} of class {cls} hold NaN or inf; re-run `wv embed --overwrite`")
            jobs = (ClassJob(cls, features, opts, str(device), budget, threads) for cls, (features, _) in gathered.items())
            for cls, result, seconds in pool.map(class_task, jobs):
                rows = gathered[cls][1]
                shard = np.searchsorted(starts, rows, side="right") - 1
                write_parquet(partial_path(root, name, cls), pl.DataFrame({
                    "shard": pl.Series(shard, dtype=pl.Int32), "row": pl.Series(rows - starts[shard], dtype=pl.Int32),
                    "density": pl.Series(result.density, dtype=pl.Int32), "delta": pl.Series(result.delta, dtype=pl.Float32),
                    "cutoff": pl.Series([result.cutoff] * len(rows), dtype=pl.Float32),
                }))
                figures["classes_done"] += 1
                figures["exact" if result.exact else "approximate"] += 1
                figures["float64_fallback"] += result.path == "float64"
                figures["slowest_class_seconds"] = round(max(figures["slowest_class_seconds"], seconds), 3)
                bar.update(len(rows))


def write_shards(root: Root, name: str, shards: pl.DataFrame, todo: list[str]) -> None:
    """Gather the per-class results (one file at a time) into per-sample arrays (13 bytes per sample),
    then write each shard's slice."""
    folder = sidecars.sidecar_dir(root, "scores", name) / PARTIALS
    starts = np.concatenate([[0], np.cumsum(shards["samples"].to_numpy())]).astype(np.int64)
    density, delta = np.zeros(starts[-1], dtype=np.int32), np.zeros(starts[-1], dtype=np.float32)
    cutoff, seen = np.zeros(starts[-1], dtype=np.float32), np.zeros(starts[-1], dtype=bool)
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        part = pl.read_parquet(path)
        at = starts[part["shard"].to_numpy()] + part["row"].to_numpy()
        density[at], delta[at], cutoff[at], seen[at] = part["density"].to_numpy(), part["delta"].to_numpy(), part["cutoff"].to_numpy(), True
    positions = {shard: i for i, shard in enumerate(shards["name"].to_list())}
    for shard in todo:
        first, last = starts[positions[shard]], starts[positions[shard] + 1]
        keys = sidecars.shard_keys(root, shard)
        covered = int(seen[first:last].sum())
        if covered != keys.len() or last - first != keys.len():
            raise WvError(f"density results cover {covered} of the {keys.len()} samples of {shard}; re-run with --overwrite")
        sidecars.write_scores(root, name, shard, pl.DataFrame({
            "__key__": keys, "density": pl.Series(density[first:last], dtype=pl.Int32),
            "delta": pl.Series(delta[first:last], dtype=pl.Float32), "cutoff": pl.Series(cutoff[first:last], dtype=pl.Float32)}))
