"""The shared SpaceNet-1 sample of the SpaceNet tests."""

import pytest

from geossl.synthetic.spacenet import SpaceNetSampleSummary, generate_spacenet_sample


@pytest.fixture(scope="package")
def sn1(tmp_path_factory: pytest.TempPathFactory) -> SpaceNetSampleSummary:
    # Read-only for the tests: one generation for the whole package.
    return generate_spacenet_sample(tmp_path_factory.mktemp("sn1"), tiles=4, seed=0)
