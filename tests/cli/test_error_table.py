"""docs/errors.md's table of bad inputs, kept in step: every row is run and its line checked.

A case is a function registered with ``@case("name")``, the name of its row: it runs the
command on a tiny input and returns what the user saw. ``run_error`` runs ``geossl`` in-process
and returns its one error line (asserting exit 2 and no traceback).
"""

import errno
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.cli import main
from geossl.synthetic.rasters import generate_raster_timeseries_sample
from tests.embed.embed_helpers import write_raster
from tests.payload_helpers import PicklePayload
from tests.pretrain_helpers import shared_tiny_checkpoint
from tests.raster_helpers import cut_tiles

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "docs" / "errors.md"
TINY = REPO / "tests" / "conf" / "fmow_tiny.yaml"
RASTERS_TINY = REPO / "tests" / "conf" / "rasters_tiny.yaml"

#: A table row: ``| `name` | what was wrong | `what you see` | what to do |``.
_ROW = re.compile(r"^\|\s*`(?P<name>[a-z0-9-]+)`\s*\|[^|]*\|\s*`(?P<seen>[^`]*)`[^|]*\|")
#: Placeholders of the "what you see" column: ``<path>`` (any text) and ``...`` (the rest).
_PLACEHOLDER = re.compile(r"(<[a-z ]+>|\.\.\.)")


def table_rows() -> dict[str, str]:
    """Row name -> the line the table says the user sees."""
    rows: dict[str, str] = {}
    for line in TABLE.read_text().splitlines():
        if match := _ROW.match(line):
            assert match["name"] not in rows, f"two rows named {match['name']}"
            rows[match["name"]] = match["seen"]
    return rows


def pattern_of(seen: str) -> re.Pattern[str]:
    """The regular expression of a "what you see" cell (placeholders match anything)."""
    parts = _PLACEHOLDER.split(seen)
    return re.compile(
        "".join(".+?" if p.startswith("<") else ".*" if p == "..." else re.escape(p) for p in parts)
    )


@dataclass
class CaseInputs:
    """What a case may use: a private folder, the shared fMoW sample and pytest's fixtures."""

    tmp: Path
    fmow: Path
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    tmp_path_factory: pytest.TempPathFactory

    def pretrained(self) -> Path:
        """A tiny pretraining checkpoint (trained once per session, read-only)."""
        return shared_tiny_checkpoint(self.fmow, self.tmp_path_factory)

    def pretrain_args(self, *extra: str) -> list[str]:
        """``geossl pretrain`` on the tiny CPU config and the fMoW sample."""
        return [
            "pretrain",
            *("--config", str(TINY), "--data.root", str(self.fmow)),
            *("--data.cache_dir", str(self.tmp / "index")),
            *("--trainer.logger.init_args.save_dir", str(self.tmp / "runs")),
            *extra,
        ]

    def run_error(self, argv: list[str]) -> str:
        """Run ``geossl ARGV``; return its error line (exit 2, one line, no traceback)."""
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = self.capsys.readouterr().err
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("geossl: error: "), err
        return last


Case = Callable[[CaseInputs], str]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    """Register a case under the name of its table row."""

    def register(run: Case) -> Case:
        assert name not in CASES, f"two cases named {name}"
        CASES[name] = run
        return run

    return register


def _evil(inputs: CaseInputs) -> Path:
    path = inputs.tmp / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": PicklePayload(inputs.tmp / "pwned")}, path)
    return path


def _truncated(inputs: CaseInputs) -> Path:
    path = inputs.tmp / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(4096)}}, path)
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _weights(inputs: CaseInputs) -> Path:
    import timm

    path = inputs.tmp / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    return path


def _embed_args(inputs: CaseInputs, source: Path, output: Path) -> list[str]:
    weights = ["--weights", str(_weights(inputs)), "--backbone", "test_resnet"]
    return ["embed", *weights, str(source), "--output", str(output), "--workers", "1"]


@case("unknown-preset")
def _unknown_preset(inputs: CaseInputs) -> str:
    return inputs.run_error(["pretrain", "--dataset", "nope"])


@case("unknown-task")
def _unknown_task(inputs: CaseInputs) -> str:
    return inputs.run_error(["finetune", "--task", "seg"])


@case("data-root-missing")
def _data_root_missing(inputs: CaseInputs) -> str:
    return inputs.run_error([*inputs.pretrain_args(), "--data.root", str(inputs.tmp / "nowhere")])


@case("task-missing")
def _task_missing(inputs: CaseInputs) -> str:
    return inputs.run_error(["finetune", "--weights", "random"])


@case("unknown-backbone")
def _unknown_backbone(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--model.backbone", "resnet5000"))


@case("too-many-geo-clusters")
def _too_many_geo_clusters(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--data.num_geo_clusters", "500"))


@case("fmow-sentinel-split")
def _fmow_sentinel_split(inputs: CaseInputs) -> str:
    args = ["datasets", "index", "fmow", "--root", str(inputs.tmp), "--product", "sentinel"]
    return inputs.run_error([*args, "--splits", "seq"])


@case("config-value")
def _config_value(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--model.queue_size", "-5"))


@case("option-type")
def _option_type(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--data.batch_size", "abc"))


@case("option-unknown")
def _option_unknown(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--data.batchsize", "4"))


@case("config-missing")
def _config_missing(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--config", str(inputs.tmp / "missing.yaml")))


@case("option-not-accepted")
def _option_not_accepted(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--foo", "1"))


@case("config-yaml")
def _config_yaml(inputs: CaseInputs) -> str:
    config = inputs.tmp / "run.yaml"
    config.write_text("trainer:\n  max_steps: 4\n bad: [\n")
    return inputs.run_error(inputs.pretrain_args("--config", str(config)))


@case("fmow-samples-skipped")
def _fmow_samples_skipped(inputs: CaseInputs) -> str:
    root = inputs.tmp / "fmow"
    shutil.copytree(inputs.fmow, root)
    sorted((root / "train").rglob("*_rgb.json"))[0].write_text("{not json")
    main(["datasets", "index", "fmow", "--root", str(root), "--num-geo-clusters", "4"])
    printed = inputs.capsys.readouterr()
    return printed.err + printed.out


@case("non-finite-loss")
def _non_finite_loss(inputs: CaseInputs) -> str:
    # A learning rate this high makes the weights, then the loss, overflow at step 1.
    return inputs.run_error(inputs.pretrain_args("--model.lr", "1e30"))


@case("output-exists")
def _output_exists(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "scene.tif", np.zeros((3, 8, 8), np.uint8))
    out = inputs.tmp / "e.parquet"
    out.write_bytes(b"an earlier run")
    return inputs.run_error(_embed_args(inputs, raster, out))


@case("output-is-input")
def _output_is_input(inputs: CaseInputs) -> str:
    folder = inputs.tmp / "scenes"
    folder.mkdir()
    write_raster(folder / "scene.tif", np.zeros((3, 8, 8), np.uint8))
    return inputs.run_error([*_embed_args(inputs, folder, folder), "--format", "geotiff"])


@case("output-not-a-folder")
def _output_not_a_folder(inputs: CaseInputs) -> str:
    blocker = inputs.tmp / "file"
    blocker.write_text("")
    return inputs.run_error(["datasets", "sample", "rasters", "--output", str(blocker / "out")])


def _refuse_writes(inputs: CaseInputs, code: int) -> None:
    """Make every file write fail with ``code`` (chmod does not stop root; a full disk is rare)."""

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(code, "simulated")

    inputs.monkeypatch.setattr(Path, "write_bytes", refuse)


@case("output-permission")
def _output_permission(inputs: CaseInputs) -> str:
    ckpt = inputs.pretrained()
    _refuse_writes(inputs, errno.EACCES)
    return inputs.run_error(["export", "weights", str(ckpt), "--output", str(inputs.tmp / "out")])


@case("output-disk-full")
def _output_disk_full(inputs: CaseInputs) -> str:
    ckpt = inputs.pretrained()
    _refuse_writes(inputs, errno.ENOSPC)
    return inputs.run_error(["export", "weights", str(ckpt), "--output", str(inputs.tmp / "out")])


@case("bad-raster")
def _bad_raster(inputs: CaseInputs) -> str:
    text = inputs.tmp / "notes.tif"
    text.write_text("not a raster")
    return inputs.run_error(_embed_args(inputs, text, inputs.tmp / "e.parquet"))


@case("raster-bands-mismatch")
def _raster_bands_mismatch(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "four.tif", np.zeros((4, 8, 8), np.uint16))
    return inputs.run_error(_embed_args(inputs, raster, inputs.tmp / "e.parquet"))


@case("raster-no-crs")
def _raster_no_crs(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "nocrs.tif", np.zeros((3, 8, 8), np.uint8), crs=None)
    return inputs.run_error(_embed_args(inputs, raster, inputs.tmp / "e.parquet"))


@case("bands-option")
def _bands_option(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "rgb.tif", np.zeros((3, 8, 8), np.uint8))
    return inputs.run_error(
        [*_embed_args(inputs, raster, inputs.tmp / "e.parquet"), "--bands", "3,x"]
    )


@case("weights-need-backbone")
def _weights_need_backbone(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "rgb.tif", np.zeros((3, 8, 8), np.uint8))
    args = [
        "--weights",
        str(_weights(inputs)),
        str(raster),
        "--output",
        str(inputs.tmp / "e.parquet"),
    ]
    return inputs.run_error(["embed", *args])


@case("weights-sha-mismatch")
def _weights_sha_mismatch(inputs: CaseInputs) -> str:
    exported = inputs.tmp / "export"
    main(["export", "weights", str(inputs.pretrained()), "--output", str(exported)])
    (pth,) = exported.glob("*.pth")
    state = torch.load(pth, weights_only=True)
    state["conv1.weight"] = state["conv1.weight"] + 1  # another file under the export's name
    torch.save(state, pth)
    raster = write_raster(inputs.tmp / "rgb.tif", np.zeros((3, 8, 8), np.uint8))
    args = ["--weights", str(pth), str(raster), "--output", str(inputs.tmp / "e.parquet")]
    return inputs.run_error(["embed", *args])


@case("weights-need-metadata")
def _weights_need_metadata(inputs: CaseInputs) -> str:
    import timm

    weights = inputs.tmp / "resnet18_13band.pth"
    torch.save(timm.create_model("resnet18", in_chans=13, num_classes=0).state_dict(), weights)
    args = ["--weights", str(weights), "--backbone", "resnet18", "--workers", "1"]
    raster = write_raster(inputs.tmp / "rgb.tif", np.zeros((3, 8, 8), np.uint8))
    return inputs.run_error(
        ["embed", *args, str(raster), "--output", str(inputs.tmp / "e.parquet")]
    )


@case("weights-missing")
def _weights_missing(inputs: CaseInputs) -> str:
    missing = inputs.tmp / "missing.ckpt"
    return inputs.run_error(["export", "weights", str(missing), "--output", str(inputs.tmp)])


@case("checkpoint-missing")
def _checkpoint_missing(inputs: CaseInputs) -> str:
    return inputs.run_error(["evaluate", str(inputs.tmp / "missing.ckpt")])


@case("weights-not-pretraining")
def _weights_not_pretraining(inputs: CaseInputs) -> str:
    weights = _weights(inputs)
    path = inputs.tmp / "ft.ckpt"
    state = {f"model.{k}": v for k, v in torch.load(weights, weights_only=True).items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": "test_resnet"}}, path)
    return inputs.run_error(["export", "weights", str(path), "--output", str(inputs.tmp / "out")])


@case("resume-missing")
def _resume_missing(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--ckpt_path", str(inputs.tmp / "missing.ckpt")))


@case("checkpoint-unsafe")
def _checkpoint_unsafe(inputs: CaseInputs) -> str:
    line = inputs.run_error(["evaluate", str(_evil(inputs))])
    assert not (inputs.tmp / "pwned").exists()
    return line


@case("checkpoint-unsafe-resume")
def _checkpoint_unsafe_resume(inputs: CaseInputs) -> str:
    line = inputs.run_error(inputs.pretrain_args("--ckpt_path", str(_evil(inputs))))
    assert not (inputs.tmp / "pwned").exists()
    return line


@case("weights-unsafe")
def _weights_unsafe(inputs: CaseInputs) -> str:
    out = inputs.tmp / "out"
    line = inputs.run_error(["export", "weights", str(_evil(inputs)), "--output", str(out)])
    assert not (inputs.tmp / "pwned").exists()
    return line


@case("checkpoint-truncated")
def _checkpoint_truncated(inputs: CaseInputs) -> str:
    return inputs.run_error(["evaluate", str(_truncated(inputs))])


@case("checkpoint-truncated-resume")
def _checkpoint_truncated_resume(inputs: CaseInputs) -> str:
    return inputs.run_error(inputs.pretrain_args("--ckpt_path", str(_truncated(inputs))))


@case("checkpoint-other-model")
def _checkpoint_other_model(inputs: CaseInputs) -> str:
    ckpt = str(inputs.pretrained())
    args = ("--ckpt_path", ckpt, "--model.backbone", "resnet50", "--trainer.max_steps", "5")
    return inputs.run_error(inputs.pretrain_args(*args))


@case("evaluate-pretraining")
def _evaluate_pretraining(inputs: CaseInputs) -> str:
    return inputs.run_error(["evaluate", str(inputs.pretrained()), "--task", "fmow-cls"])


@case("embed-chip-size")
def _embed_chip_size(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "rgb.tif", np.zeros((3, 16, 16), np.uint8))
    args = _embed_args(inputs, raster, inputs.tmp / "e.parquet")
    return inputs.run_error([*args, "--chip-size", "0"])


@case("embed-pca-too-large")
def _embed_pca_too_large(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "rgb.tif", np.zeros((3, 16, 16), np.uint8))
    args = _embed_args(inputs, raster, inputs.tmp / "grid")
    return inputs.run_error([*args, "--format", "geotiff", "--pca", "600"])


@case("embed-all-nodata")
def _embed_all_nodata(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "ocean.tif", np.zeros((3, 16, 16), np.uint8), nodata=0)
    args = _embed_args(inputs, raster, inputs.tmp / "e.parquet")
    return inputs.run_error([*args, "--chip-size", "8", "--workers", "0"])


def _dataset_args(inputs: CaseInputs, *extra: str) -> list[str]:
    raster = inputs.tmp / "rgb.tif"
    if not raster.exists():
        write_raster(raster, np.full((3, 16, 16), 9, np.uint8))
    args = _embed_args(inputs, raster, inputs.tmp / "dataset")
    return [*args, "--chip-size", "8", "--workers", "0", "--no-preview", *extra]


@case("dataset-other-settings")
def _dataset_other_settings(inputs: CaseInputs) -> str:
    main(_dataset_args(inputs))
    # _weights draws new random weights: their SHA-256 differs too.
    return inputs.run_error(_dataset_args(inputs, "--stride", "4"))


@case("dataset-foreign-folder")
def _dataset_foreign_folder(inputs: CaseInputs) -> str:
    (inputs.tmp / "dataset").mkdir()
    (inputs.tmp / "dataset" / "notes.txt").write_text("mine")
    return inputs.run_error(_dataset_args(inputs))


@case("shard-needs-dataset")
def _shard_needs_dataset(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "rgb.tif", np.zeros((3, 16, 16), np.uint8))
    args = _embed_args(inputs, raster, inputs.tmp / "e.parquet")
    return inputs.run_error([*args, "--shard", "0/2"])


@case("shard-bad")
def _shard_bad(inputs: CaseInputs) -> str:
    return inputs.run_error(_dataset_args(inputs, "--shard", "2/2"))


@case("grid-other-settings")
def _grid_other_settings(inputs: CaseInputs) -> str:
    raster = write_raster(inputs.tmp / "rgb.tif", np.full((3, 16, 16), 9, np.uint8))
    args = [*_embed_args(inputs, raster, inputs.tmp / "grid"), "--format", "geotiff"]
    main([*args, "--chip-size", "8", "--no-preview"])
    return inputs.run_error([*args, "--chip-size", "4", "--no-preview"])


def _stac_items(inputs: CaseInputs, assets: dict[str, str], moment: str | None) -> Path:
    item: dict[str, object] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "S2A_T31",
        "geometry": None,
        "links": [],
        "properties": {"datetime": moment},
        "assets": {name: {"href": href, "type": "image/tiff"} for name, href in assets.items()},
    }
    path = inputs.tmp / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    return path


def _stac_args(inputs: CaseInputs, items: Path, assets: str) -> list[str]:
    weights = ["--weights", str(_weights(inputs)), "--backbone", "test_resnet"]
    out = str(inputs.tmp / "e.parquet")
    return ["embed", *weights, "--stac", str(items), "--assets", assets, "--output", out]


@case("stac-asset-missing")
def _stac_asset_missing(inputs: CaseInputs) -> str:
    write_raster(inputs.tmp / "visual.tif", np.zeros((3, 16, 16), np.uint8))
    items = _stac_items(inputs, {"visual": "visual.tif"}, "2024-06-02T10:00:00Z")
    return inputs.run_error(_stac_args(inputs, items, "red,green,blue"))


@case("stac-no-datetime")
def _stac_no_datetime(inputs: CaseInputs) -> str:
    write_raster(inputs.tmp / "visual.tif", np.zeros((3, 16, 16), np.uint8))
    items = _stac_items(inputs, {"visual": "visual.tif"}, None)
    return inputs.run_error(_stac_args(inputs, items, "visual"))


@case("stac-not-stac")
def _stac_not_stac(inputs: CaseInputs) -> str:
    items = inputs.tmp / "items.json"
    items.write_text(json.dumps({"type": "Polygon", "coordinates": []}))
    return inputs.run_error(_stac_args(inputs, items, "visual"))


@case("evaluate-metrics-exist")
def _evaluate_metrics_exist(inputs: CaseInputs) -> str:
    # With --output the check comes before the checkpoint is read: any file shows it.
    out = inputs.tmp / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    return inputs.run_error(["evaluate", str(inputs.pretrained()), "--output", str(out)])


def _raster_stack(inputs: CaseInputs, cut: int) -> list[str]:
    """``geossl pretrain`` on a 4-date raster stack whose first ``cut`` files are truncated."""
    stack = generate_raster_timeseries_sample(inputs.tmp / "stack", num_dates=4)
    for path in sorted(Path(stack.root).rglob("*.tif"))[:cut]:
        cut_tiles(path)
    save_dir = str(inputs.tmp / "runs")
    return [
        *("pretrain", "--config", str(RASTERS_TINY), "--data.paths", str(stack.root)),
        *("--trainer.logger.init_args.save_dir", save_dir),
    ]


@case("rasters-too-many-bad")
def _rasters_too_many_bad(inputs: CaseInputs) -> str:
    return inputs.run_error([*_raster_stack(inputs, 1), "--data.max_bad_fraction", "0.2"])


@case("rasters-none-readable")
def _rasters_none_readable(inputs: CaseInputs) -> str:
    return inputs.run_error(_raster_stack(inputs, 4))


def test_every_row_has_a_case_and_every_case_a_row() -> None:
    rows = table_rows()
    assert len(rows) >= 20
    assert sorted(rows) == sorted(CASES)


def test_a_pattern_matches_its_placeholders() -> None:
    pattern = pattern_of("geossl: error: <path>: refused: ...")
    assert pattern.search("geossl: error: /a/b.ckpt: refused: it holds pickled objects")
    assert not pattern.search("geossl: error: /a/b.ckpt: not a complete torch checkpoint")


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_table_shows_what_the_case_prints(
    name: str,
    tmp_path: Path,
    fmow_sample: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    inputs = CaseInputs(tmp_path, fmow_sample, capsys, monkeypatch, tmp_path_factory)
    printed = CASES[name](inputs)
    seen = table_rows()[name]
    assert pattern_of(seen).search(printed), f"docs/errors.md row {name!r}: {seen!r} vs {printed!r}"
