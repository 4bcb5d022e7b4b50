import numpy as np
import pytest

from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit, spherical_kmeans


def test_latlon_to_unit_axes() -> None:
    points = latlon_to_unit([0.0, 0.0, 90.0, -90.0], [0.0, 90.0, 0.0, 123.0])
    np.testing.assert_allclose(points, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0)


def test_latlon_to_unit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        latlon_to_unit([0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        latlon_to_unit([np.nan], [0.0])


def _two_groups() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Fiji across the antimeridian and a group near Greenwich.
    lat = np.concatenate([-17.5 + rng.normal(0, 0.3, 20), 51.5 + rng.normal(0, 0.3, 20)])
    lon = np.concatenate(
        [rng.choice([179.9, -179.9], 20) + rng.normal(0, 0.02, 20), rng.normal(0, 0.3, 20)]
    )
    lon = (lon + 180.0) % 360.0 - 180.0
    return latlon_to_unit(lat, lon)


def test_antimeridian_points_share_a_cluster() -> None:
    points = latlon_to_unit([-17.5, -17.5, 51.5, 51.6], [179.9, -179.9, 0.0, 0.1])
    _, labels = spherical_kmeans(points, k=2, seed=0)
    assert labels[0] == labels[1]
    assert labels[2] == labels[3]
    assert labels[0] != labels[2]
    centroids, labels = spherical_kmeans(_two_groups(), k=2, seed=3)
    assert len(set(labels[:20].tolist())) == 1
    assert len(set(labels[20:].tolist())) == 1
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0)


def test_deterministic_under_seed() -> None:
    rng = np.random.default_rng(1)
    points = latlon_to_unit(rng.uniform(-80, 80, 500), rng.uniform(-180, 180, 500))
    c1, l1 = spherical_kmeans(points, k=10, seed=7)
    c2, l2 = spherical_kmeans(points, k=10, seed=7)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(assign_clusters(points, c1), l1)
    assert set(l1.tolist()) == set(range(10))
    _, l3 = spherical_kmeans(points, k=10, seed=8)
    assert not np.array_equal(l1, l3)


def test_more_clusters_than_distinct_points() -> None:
    points = latlon_to_unit([10.0, 10.0, 20.0], [5.0, 5.0, 6.0])
    message = (
        r"^data.num_geo_clusters=3 is larger than the number of distinct training locations \(2\)"
        r" in /data/fmow$"
    )
    with pytest.raises(ValueError, match=message):
        spherical_kmeans(
            points,
            3,
            k_name="data.num_geo_clusters",
            what="training locations",
            context="/data/fmow",
        )
    _, labels = spherical_kmeans(points, 2)
    assert labels[0] == labels[1] != labels[2]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shape"):
        spherical_kmeans(np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match="at least 1"):
        spherical_kmeans(latlon_to_unit([0.0], [0.0]), 0)
