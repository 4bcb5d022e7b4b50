"""Shared fixtures: one generated fMoW sample per session (seeded: the same every run)."""

import random
from pathlib import Path

import pytest
import torch

from geossl.synthetic.fmow import generate_fmow_sample

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(autouse=True)
def _seeded_global_generators() -> None:
    """Every test starts from the same global torch and random state, whatever ran before it.

    Without this a test's random draws depend on the tests that ran earlier in the process, so a
    rare draw can fail CI once and pass on rerun.
    """
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fmow_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fMoW-rgb sample in the real layout (read-only: copy it before corrupting files)."""
    root = tmp_path_factory.mktemp("fmow") / "fmow-rgb"
    generate_fmow_sample(root, locations=24, seed=0, image_size=(96, 160))
    return root
