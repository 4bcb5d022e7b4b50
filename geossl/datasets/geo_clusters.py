r"""Geo-location clusters: seeded spherical k-means over latitude/longitude.

The geo-location pretext task of Ayush et al. (ICCV 2021) classifies an image into one of
K = 100 clusters of the training locations. Clustering raw (lat, lon) pairs in the plane splits
places that are close across the date line (lon 179.9 and -179.9) and distorts distances near the
poles, so the points are mapped to 3-D unit vectors

$$
p = (\cos\varphi \cos\lambda,\ \cos\varphi \sin\lambda,\ \sin\varphi)
$$

and clustered by cosine similarity (spherical k-means): each point goes to the centroid with the
largest $p \cdot c$, and each centroid is the re-normalised mean of its points. Everything is
vectorised numpy and deterministic under the seed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["assign_clusters", "latlon_to_unit", "spherical_kmeans"]

_CHUNK = (
    65_536  # rows per block of the [N, K] similarity matrix (bounds memory for a million points)
)


def latlon_to_unit(lat: npt.ArrayLike, lon: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Map latitude/longitude in degrees to 3-D unit vectors.

    Args:
        lat: latitudes in degrees, shape ``[N]`` (or a scalar).
        lon: longitudes in degrees, shape ``[N]`` (or a scalar).

    Returns:
        float64 array ``[N, 3]`` of unit vectors (x towards lon 0 on the equator, z towards the
        north pole).

    Raises:
        ValueError: if the shapes differ or a value is not finite.
    """
    lat_r = np.radians(np.atleast_1d(np.asarray(lat, dtype=np.float64)))
    lon_r = np.radians(np.atleast_1d(np.asarray(lon, dtype=np.float64)))
    if lat_r.shape != lon_r.shape or lat_r.ndim != 1:
        raise ValueError(
            f"lat and lon must be 1-D with the same shape, got {lat_r.shape} and {lon_r.shape}"
        )
    if not (np.isfinite(lat_r).all() and np.isfinite(lon_r).all()):
        raise ValueError("lat and lon must be finite")
    cos_lat = np.cos(lat_r)
    return np.stack([cos_lat * np.cos(lon_r), cos_lat * np.sin(lon_r), np.sin(lat_r)], axis=1)


def _check_points(points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3], got {list(array.shape)}")
    return array


def assign_clusters(points: npt.ArrayLike, centroids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Assign each point to the centroid with the largest cosine similarity.

    Args:
        points: unit vectors ``[N, 3]``.
        centroids: unit vectors ``[K, 3]``.

    Returns:
        int64 cluster ids ``[N]`` in ``0..K-1`` (ties go to the lowest id).
    """
    pts = _check_points(points)
    cents = _check_points(centroids)
    if len(cents) == 0:
        raise ValueError("centroids must not be empty")
    labels = np.empty(len(pts), dtype=np.int64)
    for start in range(0, len(pts), _CHUNK):
        block = pts[start : start + _CHUNK]
        labels[start : start + len(block)] = np.argmax(block @ cents.T, axis=1)
    return labels


def _normalise(
    vectors: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    norms = np.linalg.norm(vectors, axis=1)
    ok = norms > 1e-12
    out = np.zeros_like(vectors)
    out[ok] = vectors[ok] / norms[ok, None]
    return out, ok


def _kmeans_pp_init(
    points: npt.NDArray[np.float64], k: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007), squared chord distance ``2 - 2 p.c``."""
    n = len(points)
    centroids = np.empty((k, 3), dtype=np.float64)
    centroids[0] = points[rng.integers(n)]
    closest = np.maximum(2.0 - 2.0 * (points @ centroids[0]), 0.0)
    for c in range(1, k):
        total = closest.sum()
        if total <= 0.0:  # cannot happen with >= k distinct points, kept as a guard
            index = int(rng.integers(n))
        else:
            cumulative = np.cumsum(closest)
            index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            index = min(index, n - 1)
            while closest[index] <= 0.0:  # never pick a point that coincides with a centroid
                index = (index + 1) % n
        centroids[c] = points[index]
        closest = np.minimum(closest, np.maximum(2.0 - 2.0 * (points @ centroids[c]), 0.0))
    return centroids


def spherical_kmeans(
    points: npt.ArrayLike,
    k: int,
    seed: int = 0,
    max_iter: int = 100,
    *,
    k_name: str = "k",
    what: str = "points",
    context: str | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Cluster unit vectors with seeded spherical k-means (k-means++ init, then Lloyd iterations).

    Lloyd iterations assign points by cosine similarity and move each centroid to the re-normalised
    mean of its points; a cluster that empties (or whose mean vanishes) is re-seeded with the point
    farthest from its centroid. Iteration stops when no label changes or after ``max_iter``
    iterations.

    Args:
        points: unit vectors ``[N, 3]``, e.g. from
            [`latlon_to_unit`][geossl.datasets.geo_clusters.latlon_to_unit].
        k: number of clusters.
        seed: seed of the ``numpy.random.Generator`` used by the k-means++ initialisation.
        max_iter: maximum number of Lloyd iterations.
        k_name: how the error message names ``k`` (e.g. ``"data.num_geo_clusters"``).
        what: how the error message names the points (e.g. ``"training locations"``).
        context: where the points come from, appended to the error message (e.g. the dataset root).

    Returns:
        ``(centroids, labels)``: float64 unit vectors ``[k, 3]`` and int64 cluster ids ``[N]``.

    Raises:
        ValueError: if ``k < 1`` or there are fewer distinct points than ``k``.
    """
    pts = _check_points(points)
    if k < 1:
        raise ValueError(f"{k_name}={k} must be at least 1")
    if max_iter < 0:
        raise ValueError(f"max_iter={max_iter} must be non-negative")
    num_distinct = len(np.unique(pts, axis=0)) if len(pts) else 0
    if num_distinct < k:
        where = f" in {context}" if context else ""
        raise ValueError(
            f"{k_name}={k} is larger than the number of distinct {what} ({num_distinct}){where}"
        )
    rng = np.random.default_rng(seed)
    centroids = _kmeans_pp_init(pts, k, rng)
    labels = assign_clusters(pts, centroids)
    for _ in range(max_iter):
        sums: npt.NDArray[np.float64] = np.stack(
            [np.bincount(labels, weights=pts[:, d], minlength=k) for d in range(3)], axis=1
        )
        centroids, ok = _normalise(sums)
        if not ok.all():
            # Re-seed empty clusters with the points that fit their current centroid worst.
            similarity = np.einsum("nd,nd->n", pts, centroids[labels])
            order = np.argsort(similarity, kind="stable")
            for slot, index in zip(np.flatnonzero(~ok), order, strict=False):
                centroids[slot] = pts[index]
        new_labels = assign_clusters(pts, centroids)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return centroids, labels
