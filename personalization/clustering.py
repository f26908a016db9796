"""k-means over interest vectors, with k chosen by the silhouette criterion (numpy only).

Vectors are scaled to unit length first, so clusters group people by the *mix*
of their interests, not by how much they browse. For each k in 2..max_k we run
k-means++ (several seeded restarts, keeping the lowest inertia) and compute the
mean silhouette coefficient s = mean((b − a) / max(a, b)), where a is a point's
mean distance to its own cluster and b to the nearest other cluster. The k
with the highest silhouette wins. If even the best silhouette is below
MIN_SILHOUETTE the data has no real cluster structure and a single archetype
(k = 1) is reported instead of inventing groups. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SILHOUETTE = 0.25
RESTARTS = 4
MAX_ITERATIONS = 100
# The silhouette is O(n²); beyond this many points it is estimated on a fixed sample.
SILHOUETTE_SAMPLE = 2000


@dataclass(frozen=True)
class Clustering:
    k: int
    labels: np.ndarray  # cluster index per row
    centroids: np.ndarray  # unit-length rows
    distances: np.ndarray  # each row's distance to its centroid
    silhouette: float | None


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def _squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.maximum(
        (points**2).sum(axis=1)[:, None] - 2 * points @ centroids.T + (centroids**2).sum(axis=1)[None, :], 0.0
    )


def _kmeans_once(points: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    n = len(points)
    centroids = np.empty((k, points.shape[1]))
    centroids[0] = points[rng.integers(n)]
    closest = _squared_distances(points, centroids[:1])[:, 0]
    for i in range(1, k):  # k-means++ seeding: far points are likelier seeds
        total = closest.sum()
        index = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centroids[i] = points[index]
        closest = np.minimum(closest, _squared_distances(points, centroids[i : i + 1])[:, 0])
    labels = np.zeros(n, dtype=int)
    for iteration in range(MAX_ITERATIONS):
        new_labels = _squared_distances(points, centroids).argmin(axis=1)
        if iteration and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for i in range(k):
            members = points[labels == i]
            # An emptied cluster restarts at the point worst served by its centroid.
            if len(members):
                centroids[i] = members.mean(axis=0)
            else:
                worst = _squared_distances(points, centroids).min(axis=1).argmax()
                centroids[i] = points[worst]
    inertia = float(_squared_distances(points, centroids)[np.arange(n), labels].sum())
    return labels, centroids, inertia


def kmeans(points: np.ndarray, k: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(RESTARTS):
        result = _kmeans_once(points, k, rng)
        if best is None or result[2] < best[2]:
            best = result
    assert best is not None
    return best[0], best[1]


def silhouette(points: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> float:
    k = len(set(labels.tolist()))
    if k < 2:
        return 0.0
    index = np.arange(len(points))
    if len(points) > SILHOUETTE_SAMPLE:
        index = np.random.default_rng(seed).choice(len(points), SILHOUETTE_SAMPLE, replace=False)
    sample, sample_labels = points[index], labels[index]
    distances = np.sqrt(_squared_distances(sample, sample))
    scores = np.zeros(len(sample))
    clusters = sorted(set(sample_labels.tolist()))
    for i in range(len(sample)):
        own = sample_labels == sample_labels[i]
        if own.sum() <= 1:
            continue  # a singleton's silhouette is 0 by convention
        a = distances[i, own].sum() / (own.sum() - 1)
        b = min(distances[i, sample_labels == c].mean() for c in clusters if c != sample_labels[i])
        scores[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(scores.mean())


def cluster(matrix: np.ndarray, *, max_k: int, seed: int = 0) -> Clustering:
    """Cluster rows (after unit scaling), choosing k by the best mean silhouette."""
    points = normalize_rows(np.asarray(matrix, dtype=float))
    n = len(points)
    distinct = len(np.unique(points.round(9), axis=0))
    best: tuple[float, int, np.ndarray, np.ndarray] | None = None
    for k in range(2, min(max_k, n - 1, distinct) + 1):
        labels, centroids = kmeans(points, k, seed=seed)
        score = silhouette(points, labels, seed=seed)
        if best is None or score > best[0] + 1e-9:
            best = (score, k, labels, centroids)
    if best is None or best[0] < MIN_SILHOUETTE:
        labels = np.zeros(n, dtype=int)
        centroids = points.mean(axis=0, keepdims=True)
        score: float | None = best[0] if best else None
        k = 1
    else:
        score, k, labels, centroids = best
    centroids = normalize_rows(centroids)
    distances = np.linalg.norm(points - centroids[labels], axis=1)
    return Clustering(k=k, labels=labels, centroids=centroids, distances=distances, silhouette=score)
