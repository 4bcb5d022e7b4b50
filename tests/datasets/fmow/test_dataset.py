import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from geossl.datasets.errors import BadDatasetError, InvalidSampleError
from geossl.datasets.fmow import (
    FMOW_CATEGORIES,
    FMoW,
    FMoWLocations,
    FMoWTemporalPairs,
    fmow_context_box,
    fmow_meta_from_dict,
    parse_fmow_json,
    read_fmow_image,
)
from geossl.datasets.fmow.encoded import EncodedImages

GOOD: dict[str, Any] = {
    "gsd": 0.5,
    "img_width": 1000,
    "img_height": 800,
    "country_code": "USA",
    "cloud_cover": 12,
    "timestamp": "2015-03-14T15:52:02Z",
    "utm": "18S",
    "raw_location": "POLYGON ((-77 39, -76 39, -76 38, -77 38, -77 39))",
    "bounding_boxes": [
        {"box": [100, 200, 300, 150], "category": "airport", "ID": 7},
        {"box": [1, 2, 3, 4], "category": "zoo", "ID": 8},
    ],
}


def _write(tmp_path: Path, data: Any, name: str = "x_0_rgb.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _with(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


# --------------------------------------------------------------------------- JSON parsing


def test_parse_good_json(tmp_path: Path) -> None:
    meta = parse_fmow_json(_write(tmp_path, GOOD))
    assert meta.timestamp == 1426348322
    assert meta.lat == pytest.approx(38.5)
    assert meta.lon == pytest.approx(-76.5)
    assert not meta.approx_location
    assert meta.gsd == 0.5
    assert meta.cloud_cover == 12.0
    assert (meta.img_width, meta.img_height) == (1000, 800)
    assert meta.box == (100, 200, 300, 150)  # the first box is the target
    assert meta.category == "airport"
    assert meta.country_code == "USA"
    assert len(FMOW_CATEGORIES) == 62


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2015-03-14T15:52:02Z", 1426348322),
        ("2015-03-14T15:52:02.999Z", 1426348322),
        ("2015-03-14T17:52:02+02:00", 1426348322),
        ("2015-03-14T15:52:02", 1426348322),  # naive means UTC
        (" 1969-12-31T23:59:59.5Z", -1),
    ],
)
def test_timestamps(value: str, expected: int) -> None:
    assert fmow_meta_from_dict(_with(timestamp=value)).timestamp == expected


def test_optional_fields_may_be_missing() -> None:
    data = _with(gsd=None, cloud_cover="cloudy", country_code=None)
    data["bounding_boxes"] = [{"box": [1.0, 2.0, 30.0, 40.0]}]  # test/seq boxes have no category
    meta = fmow_meta_from_dict(data)
    assert math.isnan(meta.gsd)
    assert math.isnan(meta.cloud_cover)
    assert meta.country_code == ""
    assert meta.category == ""
    assert meta.box == (1, 2, 30, 40)


def test_antimeridian_footprint() -> None:
    wkt = "POLYGON ((179.9 -17, -179.9 -17, -179.9 -17.2, 179.9 -17.2, 179.9 -17))"
    meta = fmow_meta_from_dict(_with(raw_location=wkt))
    assert abs(meta.lon) == pytest.approx(180.0)
    assert meta.lat == pytest.approx(-17.1)
    unwrapped = "POLYGON ((179.9 -17, 180.1 -17, 180.1 -17.2, 179.9 -17.2, 179.9 -17))"
    assert fmow_meta_from_dict(_with(raw_location=unwrapped)).lon == pytest.approx(-180.0)


def test_other_wkt_geometries_through_shapely() -> None:
    wkt = "MULTIPOLYGON (((10 20, 12 20, 12 22, 10 22, 10 20)))"
    meta = fmow_meta_from_dict(_with(raw_location=wkt))
    assert (meta.lon, meta.lat) == pytest.approx((11.0, 21.0))


@pytest.mark.parametrize(
    ("utm", "lon", "lat"),
    [("18S", -75.0, 36.0), ("31X", 3.0, 78.0), ("1C", -177.0, -76.0), ("60k", 177.0, -20.0)],
)
def test_utm_fallback(utm: str, lon: float, lat: float) -> None:
    for raw_location in (None, "POLYGON ((garbage))", 42):
        meta = fmow_meta_from_dict(_with(raw_location=raw_location, utm=utm))
        assert meta.approx_location
        assert (meta.lon, meta.lat) == (lon, lat)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"timestamp": None}, "invalid timestamp"),
        ({"timestamp": "yesterday"}, "invalid timestamp"),
        ({"timestamp": 1426348322}, "invalid timestamp"),
        ({"raw_location": None, "utm": None}, "invalid location"),
        ({"raw_location": None, "utm": "99Z"}, "invalid location"),
        ({"raw_location": "POLYGON ((0 95, 1 95, 1 96, 0 95))", "utm": None}, "invalid location"),
        ({"img_width": None}, "invalid image size"),
        ({"img_height": 0}, "invalid image size"),
        ({"img_width": True}, "invalid image size"),
        ({"bounding_boxes": None}, "invalid box"),
        ({"bounding_boxes": []}, "invalid box"),
        ({"bounding_boxes": [{"box": [1, 2, 3]}]}, "invalid box"),
        ({"bounding_boxes": [{"box": [1, 2, "3", 4]}]}, "invalid box"),
        ({"bounding_boxes": ["box"]}, "invalid box"),
    ],
)
def test_invalid_essential_fields(tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    path = _write(tmp_path, _with(**changes))
    with pytest.raises(InvalidSampleError) as info:
        parse_fmow_json(path)
    assert info.value.reason == reason
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"timestamp": "2015', "malformed json"),
        ("[1, 2]", "malformed json"),
        ("", "malformed json"),
    ],
)
def test_malformed_json(tmp_path: Path, content: str, reason: str) -> None:
    with pytest.raises(InvalidSampleError) as info:
        parse_fmow_json(_write(tmp_path, content))
    assert info.value.reason == reason


def test_missing_json(tmp_path: Path) -> None:
    with pytest.raises(InvalidSampleError) as info:
        parse_fmow_json(tmp_path / "absent.json")
    assert info.value.reason == "missing json"


def test_invalid_sample_error_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(InvalidSampleError("a.json", "invalid box", "[1]")))
    assert (err.path, err.reason, err.detail) == ("a.json", "invalid box", "[1]")


# --------------------------------------------------------------------------- the context rule


@pytest.mark.parametrize(
    ("box", "image", "expected"),
    [
        # ratio >= 0.5: 0.15 -> buffer int(600 * 0.15 / 2) = 45
        ((100, 100, 600, 600), (1000, 1000), (55, 55, 745, 745)),
        # 0.4 <= ratio < 0.5: 0.2 -> 45
        ((100, 100, 450, 450), (1000, 1000), (55, 55, 595, 595)),
        # 0.3 <= ratio < 0.4: 0.3 -> int(52.5) = 52
        ((100, 100, 350, 350), (1000, 1000), (48, 48, 502, 502)),
        # 0.2 <= ratio < 0.3: 0.5 -> int(62.5) = 62
        ((100, 100, 250, 250), (1000, 1000), (38, 38, 412, 412)),
        # 0.1 <= ratio < 0.2: 1 -> 75
        ((300, 300, 150, 150), (1000, 1000), (225, 225, 525, 525)),
        # ratio < 0.1: 2 -> 50
        ((300, 300, 50, 50), (1000, 1000), (250, 250, 400, 400)),
        # width and height get their own multiplier (2 and 0.15); clipped at the bottom
        ((400, 400, 50, 600), (1000, 1000), (350, 355, 500, 1000)),
        # 0.1 <= ratio < 0.2: buffer 50, clipped at the top-left corner
        ((10, 5, 100, 100), (1000, 1000), (0, 0, 160, 155)),
        # width is compared with the width (the baseline would use the height: 300/500 -> 0.15)
        ((800, 200, 300, 100), (2000, 500), (650, 175, 1250, 325)),
    ],
)
def test_context_box(
    box: tuple[int, int, int, int], image: tuple[int, int], expected: tuple[int, int, int, int]
) -> None:
    assert fmow_context_box(box, *image) == expected


@pytest.mark.parametrize(
    "box",
    [(10, 10, 2, 50), (10, 10, 50, 2), (10, 10, 0, 0), (10, 10, -5, 20), (1200, 10, 50, 50)],
)
def test_context_box_degenerate(box: tuple[int, int, int, int]) -> None:
    assert fmow_context_box(box, 1000, 1000) is None


def test_context_box_just_above_two_pixels() -> None:
    assert fmow_context_box((0, 0, 3, 3), 100, 100) == (0, 0, 6, 6)  # mult 2: buffer 3


# --------------------------------------------------------------------------- image reading

RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 40), (30, 40, 210), (240, 240, 240)


def _quadrants(path: Path, width: int = 1600, height: int = 1200) -> Path:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[: height // 2, : width // 2] = RED
    array[: height // 2, width // 2 :] = GREEN
    array[height // 2 :, : width // 2] = BLUE
    array[height // 2 :, width // 2 :] = WHITE
    Image.fromarray(array).save(path, quality=92)
    return path


def test_jpeg_crop_is_decoded_in_draft_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import JpegImagePlugin

    path = _quadrants(tmp_path / "q.jpg")
    sizes: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: Any, mode: Any, size: Any) -> Any:
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    # The crop spans the red/green border at x = 800: left half red, right half green.
    image = read_fmow_image(path, (400, 0, 1200, 560), 64)
    assert image.dtype == torch.uint8
    assert image.shape == (3, 64, 64)
    assert sizes == [(200, 150)]  # decoded at 1/8 scale: the crop is 100 x 70 px >= 64
    left = image[:, :, 4:28].float().mean(dim=(1, 2))
    right = image[:, :, 36:60].float().mean(dim=(1, 2))
    torch.testing.assert_close(left, torch.tensor(RED, dtype=torch.float32), atol=8.0, rtol=0)
    torch.testing.assert_close(right, torch.tensor(GREEN, dtype=torch.float32), atol=8.0, rtol=0)


def test_jpeg_matches_full_decode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (30, 40, 3)), np.ones((40, 40, 1))).astype(np.uint8)
    path = tmp_path / "smooth.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    crop = (200, 160, 1400, 1000)
    fast = read_fmow_image(path, crop, 96).float()
    with Image.open(path) as img:
        reference = img.convert("RGB").resize((96, 96), Image.Resampling.BILINEAR, box=crop)
    expected = torch.from_numpy(np.array(reference)).permute(2, 0, 1).float()
    assert (fast - expected).abs().mean() < 6.0


def test_jpeg_small_crop_is_upsampled(tmp_path: Path) -> None:
    path = _quadrants(tmp_path / "q.jpg", 160, 120)
    image = read_fmow_image(path, (10, 10, 30, 40), 64)
    assert image.shape == (3, 64, 64)
    torch.testing.assert_close(
        image.float().mean(dim=(1, 2)), torch.tensor(RED, dtype=torch.float32), atol=8.0, rtol=0
    )
    whole = read_fmow_image(path, None, 32, bands=[3])
    assert whole.shape == (1, 32, 32)


def test_read_rejects_bad_arguments(tmp_path: Path) -> None:
    path = _quadrants(tmp_path / "q.jpg", 64, 64)
    with pytest.raises(ValueError, match="3 bands"):
        read_fmow_image(path, None, 8, bands=[4])
    with pytest.raises(ValueError, match="empty crop"):
        read_fmow_image(path, (5, 5, 5, 9), 8)
    with pytest.raises(ValueError, match="size"):
        read_fmow_image(path, None, 0)


def _write_tif(path: Path, data: np.ndarray) -> Path:
    import rasterio

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype.name,
    ) as dst:
        dst.write(data)
    return path


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_tiff_bands_and_scale(tmp_path: Path) -> None:
    data = np.zeros((8, 100, 120), dtype=np.uint16)
    data[0] = 2047
    data[4, :, 40:] = 1000  # (bilinear resampling reads a few pixels beyond the window)
    path = _write_tif(tmp_path / "x_ms.tif", data)
    image = read_fmow_image(path, (60, 0, 120, 100), 16, bands=[1, 5, 2])
    assert image.dtype == torch.float32
    assert image.shape == (3, 16, 16)
    torch.testing.assert_close(image[0], torch.ones(16, 16))
    torch.testing.assert_close(image[1], torch.full((16, 16), 1000 / 2047))
    torch.testing.assert_close(image[2], torch.zeros(16, 16))
    assert read_fmow_image(path, None, 8).shape == (8, 8, 8)
    assert read_fmow_image(path, None, 8, bands=[5], scale=1.0).max() == 1.0  # clipped

    rgb = _write_tif(tmp_path / "x_rgb.tif", np.full((3, 20, 20), 255, dtype=np.uint8))
    torch.testing.assert_close(read_fmow_image(rgb, (0, 0, 10, 10), 4), torch.ones(3, 4, 4))


# --------------------------------------------------------------------------- datasets


def _rows(tmp_path: Path, bad: frozenset[int] = frozenset()) -> pd.DataFrame:
    """Three locations (2, 1 and 2 images) of 64 x 48 JPEGs of solid colours (but one pixel)."""
    colours = [RED, GREEN, BLUE, WHITE, (120, 120, 0)]
    locations = [0, 0, 1, 2, 2]
    records = []
    for row, (colour, loc) in enumerate(zip(colours, locations, strict=True)):
        name = f"loc{loc}_{row}_rgb.jpg"
        if row in bad:
            (tmp_path / name).write_bytes(b"\xff\xd8 not really a jpeg")
        else:
            image = Image.new("RGB", (64, 48), colour)
            image.putpixel((0, 0), (0, 0, 0))  # one dark corner: not a blank (flat) image
            image.save(tmp_path / name)
        records.append(
            {
                "path": name,
                "label": loc,
                "geo_label": 10 + loc,
                "lat": 1.5 * loc,
                "lon": -2.0 * loc,
                "timestamp": 1000 * row,
                "location_id": loc,
                "crop_x0": 0,
                "crop_y0": 0,
                "crop_x1": 64,
                "crop_y1": 48,
            }
        )
    return pd.DataFrame.from_records(records)


def test_fmow_sample_dict(tmp_path: Path) -> None:
    dataset = FMoW(tmp_path, _rows(tmp_path), image_size=32)
    assert len(dataset) == 5
    sample = dataset[3]
    assert set(sample) == {"image", "label", "geo_label", "lat", "lon", "time", "location", "index"}
    assert sample["image"].shape == (3, 32, 32)
    assert sample["image"].dtype == torch.uint8
    for key in ("label", "geo_label", "time", "location", "index"):
        assert sample[key].dtype == torch.int64
        assert sample[key].shape == ()
    for key in ("lat", "lon"):
        assert sample[key].dtype == torch.float32
    assert [sample[k].item() for k in ("label", "geo_label", "location")] == [2, 12, 2]
    assert [sample[k].item() for k in ("time", "index")] == [3000, 3]
    assert sample["lat"] == pytest.approx(3.0)
    torch.testing.assert_close(
        sample["image"].float().mean(dim=(1, 2)),
        torch.tensor(WHITE, dtype=torch.float32),
        atol=3.0,
        rtol=0,
    )
    assert dataset[-1]["index"] == 4
    with pytest.raises(IndexError):
        dataset[5]


def test_fmow_transforms_and_bands(tmp_path: Path) -> None:
    def flip(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**sample, "image": sample["image"].flip(-1)}

    dataset = FMoW(tmp_path, _rows(tmp_path), image_size=16, bands=[1], transforms=flip)
    assert dataset[0]["image"].shape == (1, 16, 16)


def test_fmow_requires_index_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="geo_label"):
        FMoW(tmp_path, _rows(tmp_path).drop(columns=["geo_label"]))


def test_temporal_pairs(tmp_path: Path) -> None:
    dataset = FMoWTemporalPairs(tmp_path, _rows(tmp_path), image_size=24)
    sample = dataset[(0, 1)]
    assert sample["image"].shape == (2, 3, 24, 24)
    assert sample["image"].dtype == torch.uint8
    assert sample["time"].tolist() == [0, 1000]
    assert sample["index"].tolist() == [0, 1]
    assert sample["label"].shape == ()
    assert sample["location"] == 0
    assert dataset[(2, 2)]["index"].tolist() == [2, 2]
    with pytest.raises(TypeError, match="TemporalPairSampler"):
        dataset[0]  # type: ignore[index]


def test_unreadable_image_is_replaced(tmp_path: Path) -> None:
    dataset = FMoW(tmp_path, _rows(tmp_path, bad=frozenset({0})), image_size=16)
    with pytest.warns(RuntimeWarning, match=r"loc0_0_rgb\.jpg: cannot read image"):
        sample = dataset[0]
    # replaced by the first image of the next location (row 2), whose metadata is returned
    assert sample["index"] == 2
    assert sample["location"] == 1
    assert dataset.num_load_failures == 1
    assert dataset[2]["index"] == 2

    pairs = FMoWTemporalPairs(tmp_path, _rows(tmp_path, bad=frozenset({0, 4})), image_size=16)
    with pytest.warns(RuntimeWarning, match="loc0_0"):
        assert pairs[(1, 0)]["index"].tolist() == [1, 1]  # view 1 repeats the anchor
    assert pairs[(0, 1)]["index"].tolist() == [1, 1]  # the partner becomes the anchor
    with pytest.warns(RuntimeWarning, match="loc2_4"):
        sample = pairs[(4, 4)]
    # both views unreadable: the first readable image of the following locations, twice
    assert sample["index"].tolist() == [2, 2]
    assert pairs.num_load_failures == 2


def test_blank_image_is_counted_and_replaced(tmp_path: Path) -> None:
    # A JPEG whose every pixel is one grey (a zeroed or blank export) trained as grey garbage.
    rows = _rows(tmp_path)
    Image.new("RGB", (64, 48), (128, 128, 128)).save(tmp_path / rows["path"][0])
    dataset = FMoW(tmp_path, rows, image_size=16)
    with pytest.warns(RuntimeWarning, match=r"loc0_0_rgb\.jpg: blank image; a replacement"):
        sample = dataset[0]
    assert sample["index"] == 2  # the first image of the next location, as for unreadable ones
    assert dataset.load_failures.by_reason == {"blank image": 1}
    assert dataset.num_load_failures == 1


def test_too_many_load_failures(tmp_path: Path) -> None:
    dataset = FMoW(
        tmp_path, _rows(tmp_path, bad=frozenset({0, 2, 3})), image_size=16, max_load_failures=2
    )
    with pytest.warns(RuntimeWarning), pytest.raises(BadDatasetError) as info:
        dataset[0]
    message = str(info.value)
    assert message.startswith(str(tmp_path))
    assert "max_load_failures=2" in message
    assert "\n" not in message


def test_encoded_pairs_carry_the_files_and_crops(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    rows.loc[1, ["crop_x0", "crop_y0", "crop_x1", "crop_y1"]] = [4, 2, 60, 40]
    dataset = FMoWTemporalPairs(tmp_path, rows, image_size=24, encoded=True)
    sample = dataset[(0, 1)]
    assert "image" not in sample
    encoded = sample["encoded"]
    assert isinstance(encoded, EncodedImages)
    assert encoded.data == [(tmp_path / p).read_bytes() for p in rows["path"][:2]]
    assert encoded.crops == [(0, 0, 64, 48), (4, 2, 60, 40)]
    assert encoded.paths == [str(tmp_path / p) for p in rows["path"][:2]]
    assert sample["time"].tolist() == [0, 1000]
    assert sample["index"].tolist() == [0, 1]
    assert sample["location"] == 0


def test_encoded_pairs_replace_unreadable_files(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    (tmp_path / rows["path"][0]).unlink()
    (tmp_path / rows["path"][4]).write_bytes(b"GIF89a")  # not a JPEG
    pairs = FMoWTemporalPairs(tmp_path, rows, image_size=16, encoded=True)
    with pytest.warns(RuntimeWarning, match=r"loc0_0_rgb\.jpg: cannot read image"):
        assert pairs[(1, 0)]["index"].tolist() == [1, 1]  # view 1 repeats the anchor
    with pytest.warns(RuntimeWarning, match=r"loc2_4_rgb\.jpg: cannot read image \(not a JPEG"):
        sample = pairs[(4, 4)]
    assert sample["index"].tolist() == [2, 2]  # the next location's first image, twice
    assert sample["encoded"].paths == [str(tmp_path / rows["path"][2])] * 2
    assert pairs.num_load_failures == 2


def test_encoded_pairs_need_jpegs_on_their_own_canvas(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    with pytest.raises(ValueError, match="shared canvas"):
        FMoWTemporalPairs(tmp_path, rows, encoded=True, shared_canvas=True)
    rows.loc[3, "path"] = "loc2_3_ms.tif"
    with pytest.raises(ValueError, match=r"^loc2_3_ms\.tif: encoded=True reads JPEG images only"):
        FMoWTemporalPairs(tmp_path, rows, encoded=True)


# --------------------------------------------------------------------------- shared canvas


def _target_image(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """A black image with the white target box ``(x, y, w, h)`` (PNG-exact colours via JPEG q95)."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    x, y, w, h = box
    pixels[y : y + h, x : x + w] = 255
    Image.fromarray(pixels).save(path, quality=95)


def _canvas_rows(tmp_path: Path) -> pd.DataFrame:
    # Two acquisitions of one target: different image sizes, box sizes and positions (the second
    # box near the bottom-right corner, so the anchor's margins reach past that image).
    specs = [((200, 160), (50, 40, 60, 50)), ((300, 260), (210, 190, 80, 60))]
    records = []
    for row, (size, box) in enumerate(specs):
        name = f"t_{row}_rgb.jpg"
        _target_image(tmp_path / name, size, box)
        crop = fmow_context_box(box, *size)
        assert crop is not None
        records.append(
            {
                "path": name,
                "label": 0,
                "geo_label": 0,
                "lat": 0.0,
                "lon": 0.0,
                "timestamp": row,
                "location_id": 0,
                "crop_x0": crop[0],
                "crop_y0": crop[1],
                "crop_x1": crop[2],
                "crop_y1": crop[3],
                "box_x": box[0],
                "box_y": box[1],
                "box_w": box[2],
                "box_h": box[3],
            }
        )
    return pd.DataFrame.from_records(records)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_shared_canvas_lines_up_the_target(tmp_path: Path) -> None:
    rows = _canvas_rows(tmp_path)
    shared = FMoWTemporalPairs(tmp_path, rows, image_size=64, shared_canvas=True)
    window = shared.canvas_window(0, 1)
    # anchor: 60 x 50 box in 200 x 160 px, context multiplier 0.3 -> margins of 9 and 7 px, i.e.
    # 0.15 box widths and 0.14 box heights; applied to the other image's 80 x 60 box at (210, 190):
    # (210 - 12, 190 - 8.4, 290 + 12, 250 + 8.4), rounded outwards
    assert window == (198, 181, 302, 259)
    sample = shared[(0, 1)]
    assert sample["index"].tolist() == [0, 1]
    masks = sample["image"][:, 0] > 127  # [2, 64, 64] where the white target is
    assert masks[0].any()
    assert _iou(masks[0], masks[1]) > 0.9  # the target is at the same canvas pixels

    # Control: each image on its own context crop puts the targets elsewhere on the canvas.
    own = FMoWTemporalPairs(tmp_path, rows, image_size=64)[(0, 1)]["image"][:, 0] > 127
    assert _iou(own[0], own[1]) < 0.8
    torch.testing.assert_close(own[0], masks[0])  # the anchor view is the same either way


def test_shared_canvas_window_past_the_image_is_zero(tmp_path: Path) -> None:
    rows = _canvas_rows(tmp_path)
    rows.loc[1, ["box_x", "box_y"]] = [220, 200]  # the box at the corner: window past the image
    dataset = FMoWTemporalPairs(tmp_path, rows, image_size=64, shared_canvas=True)
    x0, _y0, x1, y1 = dataset.canvas_window(0, 1)
    assert x1 > 300
    assert y1 > 260
    view = dataset[(0, 1)]["image"][1]
    # canvas columns beyond the image's right edge are exactly zero
    first_outside = math.ceil((300 - x0) * 64 / (x1 - x0))
    assert view[:, :, first_outside:].eq(0).all()
    assert view[:, :, : first_outside - 2].gt(0).any()


def test_shared_canvas_needs_the_box_columns(tmp_path: Path) -> None:
    rows = _canvas_rows(tmp_path).drop(columns=["box_w"])
    with pytest.raises(ValueError, match="box_w"):
        FMoWTemporalPairs(tmp_path, rows, shared_canvas=True)
    with pytest.raises(RuntimeError, match="shared_canvas"):
        FMoWTemporalPairs(tmp_path, rows).canvas_window(0, 1)


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_boundless_read_maps_the_window_linearly(tmp_path: Path, suffix: str) -> None:
    gradient = np.tile(np.linspace(0, 250, 100, dtype=np.float32), (80, 1)).astype(np.uint8)
    path = tmp_path / f"g{suffix}"
    if suffix == ".jpg":
        Image.fromarray(np.stack([gradient] * 3, axis=-1)).save(path, quality=100)
    else:
        import rasterio

        profile = {"driver": "GTiff", "width": 100, "height": 80, "count": 1, "dtype": "uint8"}
        transform = rasterio.Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 4_000_000.0)
        with rasterio.open(path, "w", **profile, crs="EPSG:32618", transform=transform) as dst:
            dst.write(gradient, 1)
    # window [-50, 50) x [0, 80): the left half of the output is outside, the right half is the
    # image's left half (the inside read of [0, 50) x [0, 80) at 32 x 64 px)
    padded = read_fmow_image(path, (-50, 0, 50, 80), 64, boundless=True).float()
    inside = read_fmow_image(path, (0, 0, 50, 80), 64).float()
    assert padded[:, :, :32].eq(0).all()
    expected = torch.nn.functional.interpolate(inside[None], size=(64, 32), mode="area")[0]
    torch.testing.assert_close(
        padded[:, :, 32:], expected, atol=6.0 / 255 * float(padded.max()), rtol=0
    )
    # a window inside the image reads exactly as without boundless
    torch.testing.assert_close(
        read_fmow_image(path, (0, 0, 50, 80), 64, boundless=True),
        read_fmow_image(path, (0, 0, 50, 80), 64),
    )
    with pytest.raises(ValueError, match="does not overlap"):
        read_fmow_image(path, (-90, 0, -10, 80), 16, boundless=True)


def test_locations_stack_acquisitions_in_time_order(tmp_path: Path) -> None:
    dataset = FMoWLocations(tmp_path, _rows(tmp_path), image_size=16, max_views=3)
    assert len(dataset) == 3  # locations, not images
    sample = dataset[0]
    assert sample["image"].shape == (3, 3, 16, 16)
    assert sample["views"].tolist() == [True, True, False]
    assert sample["index"].tolist() == [0, 1, -1]
    assert sample["time"].tolist() == [0, 1000, 0]
    assert sample["label"] == 0
    assert not sample["image"][2].any()  # the empty slot is zero
    red, green = (sample["image"][i].float().mean(dim=(1, 2)) for i in range(2))
    torch.testing.assert_close(red, torch.tensor(RED, dtype=torch.float32), atol=3.0, rtol=0)
    torch.testing.assert_close(green, torch.tensor(GREEN, dtype=torch.float32), atol=3.0, rtol=0)
    assert dataset[1]["views"].tolist() == [True, False, False]
    with pytest.raises(IndexError):
        dataset[3]
    with pytest.raises(ValueError, match="max_views"):
        FMoWLocations(tmp_path, _rows(tmp_path), max_views=0)


def test_locations_subsample_views(tmp_path: Path) -> None:
    first = FMoWLocations(tmp_path, _rows(tmp_path), image_size=8, max_views=1)
    assert [first[i]["index"].tolist() for i in range(3)] == [[0], [2], [3]]  # earliest image
    random = FMoWLocations(tmp_path, _rows(tmp_path), image_size=8, max_views=1, random_views=True)
    torch.manual_seed(0)
    drawn = {random[0]["index"].item() for _ in range(20)}
    assert drawn == {0, 1}


def test_locations_skip_unreadable_images(tmp_path: Path) -> None:
    dataset = FMoWLocations(tmp_path, _rows(tmp_path, bad=frozenset({0, 2})), image_size=8)
    with pytest.warns(RuntimeWarning, match="loc0_0"):
        sample = dataset[0]
    assert sample["index"].tolist() == [1, -1, -1, -1]  # the readable image moves up
    with pytest.warns(RuntimeWarning, match="loc1_2"):
        sample = dataset[1]
    assert sample["location"] == 2  # nothing readable: the next location
