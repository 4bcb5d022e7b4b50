"""The generated raster time series shared by the tests of geossl.datasets.rasters."""

import pytest

from geossl.synthetic.rasters import (
    RasterSampleSummary,
    generate_raster_timeseries_sample,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    """5 dates, one file each, 96 x 128 px, 4 bands, nodata wedges and one cloudy date."""
    return generate_raster_timeseries_sample(tmp_path_factory.mktemp("rasters") / "stack")
