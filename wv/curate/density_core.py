"""CurriculumNet's density-distance scores of one class, from its features: arrays in, arrays out.

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

No files, pools or progress here: `class_density` takes one class's features as a numpy array and
returns its densities, deltas and d_c; wv.curate.density runs it over a dataset root.
"""

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from wv.curate.density_tiles import (
    BRACKET_SIGMAS,
    Tiles,
    bracket,
    full_float32_matmul,
    sample_pairs,
    sample_size,
    squared_pairs,
    tile_sample,
)

TILE = {"cpu": 2048, "cuda": 8192}
TRIES = 3  # brackets tried (each 4x wider) before the float64 path takes over
HISTOGRAM_BINS = 4096


class DensitySettings(Protocol):
    """What `class_density` reads of its options (wv.curate.density.DensityOptions has them all)."""

    dim: int
    quantile: float
    mode: str
    exact_max: int
    anchors: int
    seed: int


@dataclass
class ClassDensity:
    density: np.ndarray  # int64, one per sample
    delta: np.ndarray  # float64
    cutoff: float  # d_c
    exact: bool
    path: str  # how it was computed: "float32+float64", "float64", "approximate", "trivial"


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
        per_sample[r : r + len(s)] += below.sum(1).to(torch.int64)
        per_sample[c : c + s.shape[1]] += below.sum(0).to(torch.int64)
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
        lo, hi = bracket(sample, r / tiles.pairs, BRACKET_SIGMAS * 4**attempt)
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
        edges = torch.unique(torch.cat([torch.linspace(float(lo), float(hi), HISTOGRAM_BINS + 1, dtype=z.dtype, device=z.device), torch.as_tensor(hi, dtype=z.dtype, device=z.device)[None]]))


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
        counts[r0 : r0 + len(s)] += close.sum(1).to(torch.int64)
        counts[c0 : c0 + s.shape[1]] += close.sum(0).to(torch.int64)
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
    out = [(sq[None, :] + (z64[which[s : s + 256]] ** 2).sum(1)[:, None] - 2 * z64[which[s : s + 256]] @ others.T).abs().amax(1) for s in range(0, len(which), 256)]
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


def approximate_class_density(z32: torch.Tensor, quantile: float, anchors: int, generator: torch.Generator, tile: int, budget: int) -> ClassDensity:
    n = len(z32)
    chosen = torch.randperm(n, generator=generator)[:anchors].sort().values.to(z32.device)
    m = len(chosen)
    anchors64 = z32[chosen].to(torch.float64)
    _, cutoff, _, _ = exact_counts(anchors64 - anchors64.mean(0), quantile, generator, tile, budget)
    cross = Tiles(z32, z32[chosen], tile=tile, b_rows=chosen)  # a sample and itself: inf, never counted
    threshold = cutoff * cutoff
    counts = torch.zeros(n, dtype=torch.int64, device=z32.device)
    for r, _, s in cross:
        counts[r : r + len(s)] += torch.lt(s, threshold, out=torch.empty_like(s)).sum(1).to(torch.int64)
    is_anchor = torch.zeros(n, dtype=torch.int64, device=z32.device)
    is_anchor[chosen] = 1
    density = torch.round(counts.to(torch.float64) * (n - 1) / (m - is_anchor).clamp(min=1)).to(torch.int64)
    nearest = nearest_denser(cross, density, density[chosen]).to(torch.float64).sqrt()
    lonely = torch.isinf(nearest).nonzero()[:, 0]
    if len(lonely):
        z64 = z32.to(torch.float64)
        nearest[lonely] = farthest(z64, lonely, z64[chosen])
    return ClassDensity(density.cpu().numpy(), nearest.cpu().numpy(), cutoff, False, "approximate")


def class_density(features: np.ndarray, opts: DensitySettings, device: torch.device | str = "cpu", budget: int = 1 << 26, tile: int | None = None) -> ClassDensity:
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
