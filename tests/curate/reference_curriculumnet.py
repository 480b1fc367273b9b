"""The test oracle: a direct numpy transcription of CurriculumNet's curriculum clustering.

Transcribed (not copied: Python 3, one class at a time) from `cluster_curriculum_subsets`, method
'default', in MalongTech/research-curriculumnet, curriculum_clustering/_curriculum_clustering.py:
PCA of the class's float32 vectors to 256 dims, the full N x N distance matrix from the Gram trick,
np.sort of all N*N distances and the value at int(N*N*0.6), densities counted row by row, k-means on
the densities, the cluster minimums as bounds, the subsets by the reference's own loop.

Deliberate changes, each also made (and documented) in wv/curate/density_core.py and curriculum.py:
- distances in float64, with an exactly zero diagonal and an exactly symmetric matrix;
- KMeans(n_init=10): the default when the reference was written (scikit-learn >= 1.4 uses 1);
- PCA is skipped when N <= 256, where the reference fails (distances are kept exactly anyway);
- a class that cannot be split (fewer samples or distinct densities than subsets) goes to subset 0,
  where the reference raises;
- delta_i = the distance to the nearest sample with a strictly higher density, the largest distance
  for the densest (the reference's optional deltas are indexed by sort position).
Deliberately slow and memory-hungry: it is the "before" of bench/density.py.
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA


def reference_density(X, dim_reduce=256, density_t=0.6, random_state=0):
    """densities (float32), deltas (float64), d_c of one class, as the reference computes them."""
    subset_vectors = np.array(X, dtype=np.float32)
    if subset_vectors.shape[1] > dim_reduce and subset_vectors.shape[0] > dim_reduce:
        subset_vectors = PCA(n_components=dim_reduce, copy=False, random_state=random_state).fit_transform(subset_vectors)
    vectors = subset_vectors.astype(np.float64)
    m = np.dot(vectors, np.transpose(vectors))
    t = np.square(vectors).sum(axis=1)
    distance = np.sqrt(np.abs(-2 * m + t + np.transpose(np.array([t]))))
    del m
    distance = np.triu(distance, 1)
    distance = distance + distance.T
    n = distance.shape[0]
    flat_distance = distance.reshape(n * n)
    dist_cutoff = np.sort(flat_distance)[int(n * n * density_t)]
    densities = np.zeros(n, dtype=np.float32)
    for i in range(n):
        densities[i] = len(np.where(distance[i] < dist_cutoff)[0]) - 1  # remove itself
    deltas = np.zeros(n, dtype=np.float64)
    for i in range(n):
        denser = densities > densities[i]
        deltas[i] = distance[i, denser].min() if denser.any() else distance[i].max()
    return densities, deltas, float(dist_cutoff)


def reference_subsets(densities, n_subsets=3, random_state=0):
    """The reference's k-means split of one class's densities into subsets 0 (clean) .. n_subsets - 1."""
    densities = np.asarray(densities, dtype=np.float32)
    if len(densities) < n_subsets or len(set(densities.tolist())) < n_subsets:
        return np.zeros(len(densities), dtype=np.intp)
    model = KMeans(n_clusters=n_subsets, n_init=10, random_state=random_state)
    model.fit(densities.reshape(len(densities), 1))
    clusters = [densities[np.where(model.labels_ == i)] for i in range(n_subsets)]
    cluster_mins = [np.min(c) for c in clusters]
    bound = np.sort(np.array(cluster_mins))
    labels = np.full(len(densities), -1, dtype=np.intp)
    for i in range(len(densities)):
        if densities[i] >= bound[n_subsets - 1]:
            labels[i] = 0
        else:
            for j in range(n_subsets - 1):
                if bound[j] <= densities[i] < bound[j + 1]:
                    labels[i] = len(bound) - j - 1
    assert (labels >= 0).all()
    return labels


def reference_curriculum(X, n_subsets=3, dim_reduce=256, density_t=0.6, random_state=0):
    """subsets, densities, deltas, d_c of one class: the whole reference pipeline."""
    densities, deltas, cutoff = reference_density(X, dim_reduce, density_t, random_state)
    return reference_subsets(densities, n_subsets, random_state), densities, deltas, cutoff
