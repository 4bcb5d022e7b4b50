"""The per-image metadata of the fMoW sample: UTM zones, sun angles, footprints, calibration."""

import math
from datetime import UTC, datetime

import numpy as np

from geossl.datasets.fmow.constants import FMOW_MS_BANDS
from geossl.synthetic.fmow_metadata import (
    _abs_cal_factors,
    _footprint_wkt,
    _solar_angles,
    _utm_epsg,
    _utm_zone,
    _variants,
)


def test_utm_zones_and_epsg_codes() -> None:
    assert _utm_zone(40.7, -74.0) == (18, "T")  # New York
    assert _utm_zone(-33.9, 151.2) == (56, "H")  # Sydney
    assert _utm_epsg(40.7, -74.0) == 32618
    assert _utm_epsg(-33.9, 151.2) == 32756


def test_sun_angles_on_the_equator_at_the_equinox() -> None:
    noon = int(datetime(2016, 3, 20, 12, 0, tzinfo=UTC).timestamp())
    elevation, _ = _solar_angles(0.0, 0.0, noon)
    assert elevation > 85.0
    morning = int(datetime(2016, 3, 20, 8, 0, tzinfo=UTC).timestamp())
    elevation, azimuth = _solar_angles(0.0, 0.0, morning)
    assert abs(elevation - 30.0) < 1.0  # 4 h before noon: 60 degrees of hour angle
    assert abs(azimuth - 90.0) < 2.0  # due east


def test_footprint_is_a_closed_north_up_ring_of_the_right_size() -> None:
    wkt = _footprint_wkt(10.0, 20.0, 1113.2, 2226.4)
    ring = [tuple(map(float, p.split())) for p in wkt[len("POLYGON ((") : -2].split(", ")]
    assert len(ring) == 5
    assert ring[0] == ring[-1]
    lons, lats = zip(*ring, strict=True)
    assert math.isclose(max(lats) - min(lats), 0.02, rel_tol=1e-6)
    assert math.isclose(max(lons) - min(lons), 0.01 / math.cos(math.radians(10.0)), rel_tol=1e-6)


def test_json_variants_and_calibration_factors() -> None:
    rng = np.random.default_rng(0)
    fields = _variants("gsd", 0.5, 0.01, rng)
    assert set(fields) == {f"gsd_{k}dbl" for k in ("", "start_", "end_", "min_", "max_")}
    assert fields["gsd_min_dbl"] <= fields["gsd_dbl"] <= fields["gsd_max_dbl"]
    factors = _abs_cal_factors(rng)
    assert [f["band"] for f in factors] == list(FMOW_MS_BANDS)
