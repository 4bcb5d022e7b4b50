import json

from benchmarks import targets


def _write(path, name, data):
    (path / f"{name}.json").write_text(json.dumps(data))


def _step(device, co2, full, ratio):
    rows = [
        {
            "impl": "geossl",
            "recipe": "moco",
            "mode": "compile",
            "precision": "bf16",
            "samples_per_s": 5000.0,
            "status": "ok",
            "vs_torchgeo": ratio,
        },
        {
            "impl": "geossl",
            "recipe": "tp_geo_co2",
            "mode": "compile",
            "precision": "bf16",
            "samples_per_s": co2,
            "status": "ok",
            "vs_torchgeo": 1.0,
        },
        {
            "impl": "geossl",
            "recipe": "all",
            "mode": "eager",
            "precision": "bf16",
            "samples_per_s": full,
            "status": "ok",
            "vs_torchgeo": 1.0,
        },
        {
            "impl": "torchgeo",
            "recipe": "moco",
            "mode": "compile",
            "precision": "bf16",
            "samples_per_s": 1.0,
            "status": "failed: x",
            "vs_torchgeo": "-",
        },
    ]
    return {"machine": {"device": device}, "results": rows}


def test_targets_on_gpu(tmp_path):
    _write(tmp_path, "step_throughput", _step("NVIDIA H100 80GB HBM3", 3600.0, 1900.0, 1.6))
    _write(
        tmp_path,
        "input_pipeline",
        {
            "machine": {"device": "NVIDIA H100 80GB HBM3"},
            "results": [{"decode": "pil", "workers": 8, "loader_samples_per_s": 6000.0}],
        },
    )
    rows = targets.main(["--results", str(tmp_path), "--no-docs"])
    status = {r["target"]: r["status"] for r in rows}
    assert status == {
        "step tp_geo_co2 samples/s": "PASS",
        "step all samples/s": "FAIL",
        "geossl moco / torchgeo MoCoTask": "PASS",
        "input pipeline / fastest step": "PASS",
        "embedding chips/s": "not measured",
    }
    assert json.loads((tmp_path / "targets.json").read_text())["results"] == rows


def test_cpu_figures_never_pass(tmp_path):
    _write(tmp_path, "step_throughput", _step("CPU (x86_64)", 1e9, 1e9, 9.0))
    rows = targets.check(tmp_path)
    assert {r["status"] for r in rows[:3]} == {"not measured on a GPU"}
