"""Duplicate images on plain arrays: content hashes, cosine neighbours tile by tile, groups, representatives.

The rules (wv.curate.duplicates is the driver: shards, features and sidecars):
  exact  two images are exact duplicates when their bytes have the same hash, or when their pixels do
         at low resolution: the 64-bit DCT hash of the grayscale image shrunk to 32 x 32 (the "pHash"
         of ImageHash and imagededup: bit k is whether the k-th of the 8 x 8 lowest DCT frequencies
         is above their median). A recompressed or resized copy keeps that hash; a crop or a colour
         change usually does not, and is left to the near rule.
  near   two images of the same split are near duplicates when the cosine similarity of their
         features is at or above the threshold. Groups are the connected components of both
         relations (single linkage), so an exact group always lies inside one near group.
  kept   each group keeps one representative: the largest image (width x height), then the lowest key.
"""

import hashlib
import io
import math

import numpy as np
import torch
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_SIDE = 32  # the grayscale thumbnail the DCT hash is taken from
HASH_FREQUENCIES = 8  # 8 x 8 lowest frequencies: 64 bits


# -- content hashes ---------------------------------------------------------------------------------------
def bytes_hash(data: bytes) -> int:
    """64 bits of BLAKE2b of the encoded bytes, as a signed int64."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: D @ x is the DCT of x."""
    k, i = np.mgrid[0:n, 0:n].astype(np.float64)
    d = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


DCT = dct_matrix(HASH_SIDE)


def gray_thumbnail(data: bytes) -> np.ndarray:
    """The image decoded to grayscale, HASH_SIDE x HASH_SIDE, float64 (JPEG: decoded at a reduced scale)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (2 * HASH_SIDE, 2 * HASH_SIDE))
        small = image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def pixel_hash(data: bytes) -> tuple[int, int, int]:
    """(the 64-bit DCT hash of the decoded pixels as a signed int64, width, height)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    low = (DCT @ gray_thumbnail(data) @ DCT.T)[:HASH_FREQUENCIES, :HASH_FREQUENCIES].reshape(-1)
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">i8")[0]), width, height


# -- groups ---------------------------------------------------------------------------------------------
def merge_groups(labels: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Group labels after adding the edges (i, j): connected components over the current labels.
    Every label is the smallest index of its group, so the result does not depend on edge order."""
    n = labels.size
    if i.size == 0:
        return labels
    graph = coo_matrix((np.ones(i.size, np.int8), (labels[i], labels[j])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    merged = component[labels]
    smallest = np.full(merged.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, merged, np.arange(n))
    return smallest[merged]


def equal_value_edges(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every index to the first index with the same value."""
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    starts = np.concatenate([[True], ranked[1:] != ranked[:-1]])
    first = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    keep = first != order
    return order[keep], first[keep]


def group_sizes(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels, minlength=labels.size)[labels].astype(np.int32)


# -- neighbours ---------------------------------------------------------------------------------------------
def unit_rows(features: np.ndarray) -> np.ndarray:
    """float32 rows scaled to length 1 (a zero row stays zero: similar to nothing)."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Best:
    """The most similar base row of every query row seen so far: similarity (-inf: none yet) and its index."""

    def __init__(self, n: int):
        self.similarity = np.full(n, -np.inf, dtype=np.float32)
        self.index = np.full(n, -1, dtype=np.int64)

    def update(self, rows: np.ndarray, similarity: np.ndarray, index: np.ndarray) -> None:
        better = similarity > self.similarity[rows]
        self.similarity[rows[better]] = similarity[better]
        self.index[rows[better]] = index[better]


def search_block(
    queries: np.ndarray, q_ids: np.ndarray, q_kind: np.ndarray, base: np.ndarray, b_ids: np.ndarray, b_kind: np.ndarray, threshold: float, best: dict, tile: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search of `queries` against `base` (unit rows, with global ids and kinds: 0 train,
    1 val, 2 against), tile by tile. Returns the near edges (ids i != j of the same kind, similarity >=
    threshold) and updates `best[(query kind, base kind)]` (a Best over global ids) for the other kinds."""
    edges_i, edges_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    if not len(queries) or not len(base):
        return edges_i[0], edges_j[0]
    b = torch.from_numpy(np.ascontiguousarray(base))
    for start in range(0, len(queries), tile):
        q = torch.from_numpy(np.ascontiguousarray(queries[start : start + tile]))
        sims = (q @ b.T).numpy()
        rows_id, rows_kind = q_ids[start : start + tile], q_kind[start : start + tile]
        for kind in np.unique(rows_kind):
            mine = np.flatnonzero(rows_kind == kind)
            for other in np.unique(b_kind):
                cols = np.flatnonzero(b_kind == other)
                part = sims[np.ix_(mine, cols)]
                if other == kind:
                    r, c = np.nonzero(part >= threshold)
                    i, j = rows_id[mine[r]], b_ids[cols[c]]
                    edges_i.append(i[i != j])
                    edges_j.append(j[i != j])
                elif (kind, other) in best:
                    top = part.argmax(axis=1)
                    best[(kind, other)].update(rows_id[mine], part[np.arange(len(mine)), top], b_ids[cols[top]])
    return np.concatenate(edges_i), np.concatenate(edges_j)


def representatives(labels: np.ndarray, area: np.ndarray, key_rank: np.ndarray) -> np.ndarray:
    """True for the one sample kept per group: the largest area, then the lowest key (key_rank)."""
    order = np.lexsort((key_rank, -area.astype(np.int64), labels))
    first = np.concatenate([[True], labels[order][1:] != labels[order][:-1]])
    chosen = np.zeros(labels.size, dtype=bool)
    chosen[order[first]] = True
    return chosen
