import pytest
import torch

from benchmarks import input_pipeline

# torchvision 0.29 deprecates its JPEG decoder for TorchCodec; it is the decode being measured.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)


def test_input_pipeline_modes(tmp_path, monkeypatch):
    monkeypatch.setattr(input_pipeline, "RESULTS", tmp_path)  # no step_throughput.json to compare
    out = tmp_path / "pipeline.json"
    result = input_pipeline.main(
        [
            f"--work-dir={tmp_path}",
            "--locations=6",
            "--image-size=32",
            "--crop-size=16",
            "--batch-size=2",
            "--workers",
            "0",
            "--batches=1",
            "--warmup=0",
            "--no-docs",
            f"--output={out}",
        ]
    )
    assert out.is_file()
    assert {"machine", "dataset", "settings", "notes", "results", "command"} <= set(result)
    rows = {r["decode"]: r for r in result["results"]}
    assert set(rows) == {"pil", "decode_jpeg_cpu", "decode_jpeg_cuda"}
    for mode in ("pil", "decode_jpeg_cpu"):
        assert rows[mode]["status"] == "ok", rows[mode]
        assert rows[mode]["loader_samples_per_s"] > 0
        assert rows[mode]["augmented_samples_per_s"] > 0
    if not torch.cuda.is_available():
        assert rows["decode_jpeg_cuda"]["status"] == "skipped: no GPU"


def test_decode_batch_matches_the_crop(tmp_path):
    from io import BytesIO

    from PIL import Image

    image = torch.zeros(3, 20, 30, dtype=torch.uint8)
    image[:, 5:15, 10:20] = 200  # the crop is uniformly 200
    buffer = BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=100)
    data = buffer.getvalue()
    batch = {"data": [data, data], "crop": torch.tensor([[11, 6, 19, 14], [11, 6, 19, 14]])}
    out = input_pipeline.decode_batch(batch, 8, torch.device("cpu"))
    assert out.shape == (1, 2, 3, 8, 8)
    assert out.dtype == torch.uint8
    assert (out.float() - 200).abs().max() <= 6
