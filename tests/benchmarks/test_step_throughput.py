import pytest
import torch

from benchmarks import step_throughput

TINY = [
    "--backbone=test_resnet",
    "--crop-size=64",
    "--image-size=72",
    "--batch-size=2",
    "--warmup=0",
    "--steps=1",
    "--proj-hidden-dim=32",
    "--proj-dim=16",
    "--queue-size=32",
    "--num-geo-clusters=4",
    "--no-docs",
]


def test_step_throughput_json_and_torchgeo(tmp_path):
    out = tmp_path / "step.json"
    result = step_throughput.main(
        [
            *TINY,
            "--recipes",
            "moco",
            "all",
            "--modes",
            "channels_last",
            "--max-batch",
            f"--output={out}",
        ]
    )
    assert out.is_file()
    assert set(result) == {"machine", "settings", "notes", "results", "command"}
    assert {"device", "torch", "torchgeo", "timm", "kornia"} <= set(result["machine"])
    assert result["settings"]["batch_size"] == 2
    rows = result["results"]
    cases = {(r["impl"], r["recipe"], r["mode"]) for r in rows}
    assert cases == {
        ("geossl", "moco", "channels_last"),
        ("geossl", "all", "channels_last"),
        ("torchgeo", "moco", "channels_last"),
    }
    for row in rows:
        assert row["status"] == "ok", row
        assert row["samples_per_s"] > 0
        assert row["peak_mem_mb"] > 0
        assert isinstance(row["vs_torchgeo"], float)
        if not torch.cuda.is_available():
            assert row["max_batch"] == "skipped: no GPU"
    assert [r["time_vs_moco"] for r in rows if r["recipe"] == "moco" and r["impl"] == "geossl"] == [
        1.0
    ]


def test_a_failing_case_keeps_the_others(tmp_path):
    # SCRL's boxes need a crop larger than its min_size (32): the "all" row fails, moco stays.
    result = step_throughput.main(
        [
            *TINY,
            "--crop-size=32",
            "--image-size=40",
            "--recipes",
            "moco",
            "all",
            "--modes",
            "eager",
            "--no-torchgeo",
            f"--output={tmp_path / 's.json'}",
        ]
    )
    status = {r["recipe"]: r["status"] for r in result["results"]}
    assert status["moco"] == "ok"
    assert status["all"].startswith("failed: ValueError")
    assert result["results"][1]["vs_torchgeo"] == "-"


def test_profile_finds_the_nan_check_sync(tmp_path):
    out = tmp_path / "profile.json"
    result = step_throughput.main(
        [*TINY, "--profile", "--recipes", "tp_geo", "--modes", "eager", f"--output={out}"]
    )
    kinds = {r["kind"] for r in result["results"]}
    assert "top self CPU time" in kinds
    syncs = [r for r in result["results"] if r["kind"].startswith("host read")]
    assert any("geossl/trainers/pretrain.py" in r["where"] for r in syncs), syncs
    # The meta device tells what would live on a GPU: no recipe reads a device value apart from
    # SCRL's box count.
    meta = {r["kind"].split(":")[0]: r for r in result["results"] if "meta device" in r["kind"]}
    assert set(meta) == set(step_throughput.RECIPES)
    assert {name for name, r in meta.items() if r["op"] != "none"} == {"tp_geo_scrl", "all"}
    assert meta["all"]["op"] == "aten::nonzero (boolean mask)"
    assert meta["all"]["where"].startswith("geossl/transforms/boxes.py")
    counts = {r["op"]: r["calls_per_step"] for r in result["results"] if "dispatched" in r["kind"]}
    assert 0 < counts["GeoSSLAugmentation: one view"] < 400  # kornia's view was ~780
    assert (
        counts["tp_geo: one step (forward, backward, SGD)"] > counts["GeoSSLAugmentation: one view"]
    )


def test_tracer_counts_boolean_mask_indexing():
    x, mask = torch.arange(4.0), torch.tensor([True, False, True, False])
    with step_throughput.SyncTracer() as tracer:
        x[mask]
    assert [op for op, _ in tracer.hits] == ["aten::index (boolean mask)"]


@pytest.mark.parametrize(
    ("capacity", "start", "limit", "expected"),
    [(1000, 256, 8192, 992), (100, 256, 8192, 96), (10, 256, 8192, 0), (10**6, 256, 4096, 4096)],
)
def test_search_max_batch(capacity, start, limit, expected):
    tried: list[int] = []

    def fits(batch: int) -> bool:
        tried.append(batch)
        return bool(batch <= capacity)

    assert step_throughput.search_max_batch(fits, start, limit) == expected
    assert all(b % 32 == 0 for b in tried)


def test_short_frame_names_the_package_file_in_a_checkout_named_geossl() -> None:
    # A clone in a folder called geossl: the path holds "geossl/" twice.
    import traceback

    frame = traceback.FrameSummary("/tmp/ci/geossl/geossl/transforms/boxes.py", 214, "f")
    assert step_throughput._short_frame(frame) == "geossl/transforms/boxes.py:214"
    site = traceback.FrameSummary("/venv/site-packages/kornia/augmentation/base.py", 3, "g")
    assert step_throughput._short_frame(site) == "kornia/augmentation/base.py:3"
