"""The model wrapper: a real timm backbone, its pooling, and a model that does not pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from geossl.embed import EmbedOptions, describe_pooling, embed_rasters
from tests.embed.embed_helpers import position_raster, run_embed, write_raster


def test_a_timm_backbone(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("test_resnet", num_classes=0)  # timm's tiny ResNet for tests
    assert describe_pooling(model) == "avg"
    raster = write_raster(tmp_path / "rgb.tif", np.full((3, 48, 64), 120, np.uint8))
    report = embed_rasters(
        model,
        [raster],
        tmp_path / "e.parquet",
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        scale=1 / 255,
        options=EmbedOptions(chip_size=32, progress=False),
    )
    assert report.embedding_dim == model.num_features
    assert report.num_embedded == 4
    assert not model.training
    meta = json.loads(pq.read_schema(tmp_path / "e.parquet").metadata[b"geossl"])
    assert meta["pooling"] == "avg"
    assert meta["precision"] == "fp32"


def test_model_output_must_be_pooled(tmp_path: Path) -> None:
    class FeatureMap(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    raster = position_raster(tmp_path / "pos.tif")
    with pytest.raises(ValueError, match=r"pooled features \[B, D\]"):
        run_embed([raster], tmp_path / "e.parquet", model=FeatureMap())
    assert not (tmp_path / "e.parquet").exists()
