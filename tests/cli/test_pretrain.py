"""``geossl pretrain --help``: the presets and the common flags, without loading torch."""

import pytest

from geossl.cli import main
from geossl.cli.pretrain import preset_lines
from geossl.configs import list_presets, preset_summary


def test_help_lists_every_preset_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert "--dataset NAME" in out
    lines = out.splitlines()
    for name in list_presets():
        shown = name.replace("_", "-")
        matching = [line for line in lines if line.split()[:1] == [shown]]
        assert len(matching) == 1, shown
        assert preset_summary(name) in matching[0]
    # Where the options are listed: all of them, and the data module's.
    assert "geossl pretrain --dataset NAME --help" in out
    data_lines = [line for line in lines if "--data.help" in line]
    assert any("FMoWDataModule" in line and "fmow-sentinel" in line for line in data_lines)
    assert any("RasterTimeSeriesDataModule" in line and "rasters" in line for line in data_lines)


def test_preset_lines_cover_the_presets_users_name() -> None:
    names = [line.split()[0] for line in preset_lines()]
    assert {"fmow", "fmow-sentinel", "rasters", "fmow-demo"} <= set(names)


def test_help_with_a_preset_is_lightningclis(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["pretrain", "--dataset", "fmow-demo", "--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert "--data CONFIG | CLASS_PATH_OR_NAME" in out
    assert "--model.losses" in out


def test_data_help_lists_the_data_options(capsys: pytest.CaptureFixture[str]) -> None:
    # The command that --help names for the data options works and lists them.
    with pytest.raises(SystemExit) as excinfo:
        main(["pretrain", "--data.help", "FMoWDataModule"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert "--data.root ROOT" in out
    assert "--data.num_geo_clusters" in out
