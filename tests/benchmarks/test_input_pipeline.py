import torch

from benchmarks import input_pipeline


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
