import io
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from PIL import Image
from torch.utils.data._utils.pin_memory import pin_memory

from geossl.datasets.fmow import encoded as encoded_module
from geossl.datasets.fmow import read_fmow_image
from geossl.datasets.fmow.encoded import EncodedImages, collate_encoded, decode_encoded


def _jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth gradients plus a block: JPEG keeps them nearly exact, so decoders agree closely."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    channels = [127 + 100 * np.sin(xs / 17 + ys / 23 + p) for p in phase]
    image = np.stack(channels, axis=-1)
    image[height // 4 : height // 2, width // 3 : width // 2] = 30
    return image.round().clip(0, 255).astype(np.uint8)


def test_decode_matches_the_workers_pil_path(tmp_path: Path) -> None:
    # Same files, same context crops: the device path (torchvision decode + antialiased bilinear)
    # against read_fmow_image (PIL, with its DCT-domain draft decode for large crops).
    data, crops, paths = [], [], []
    for k, (height, width, crop) in enumerate(
        [(120, 200, (10, 20, 150, 110)), (300, 260, (0, 0, 260, 300)), (64, 64, (5, 7, 40, 60))]
    ):
        path = tmp_path / f"{k}.jpg"
        path.write_bytes(_jpeg(_smooth_image(height, width, k)))
        data.append(path.read_bytes())
        crops.append(crop)
        paths.append(str(path))
    images, failed = decode_encoded(EncodedImages(data, crops, paths), 48, "cpu")
    assert failed == []
    assert images.shape == (3, 3, 48, 48)
    assert images.dtype == torch.uint8
    for k in range(3):
        expected = read_fmow_image(paths[k], crops[k], 48).float()
        diff = (images[k].float() - expected).abs()
        assert diff.mean() < 1.5, k
        assert diff.max() <= 16, k


def test_bad_files_and_windows_are_reported_not_raised() -> None:
    good = _jpeg(_smooth_image(40, 50, 0))
    encoded = EncodedImages(
        [good, b"\xff\xd8" + bytes(300), good, good[: len(good) // 3]],
        [(0, 0, 50, 40), (0, 0, 10, 10), (60, 0, 90, 40), (0, 0, 50, 40)],  # 3rd misses the image
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
    )
    images, failed = decode_encoded(encoded, 16, "cpu")
    assert failed == [1, 2, 3]
    assert images[0].float().mean() > 20
    assert not images[1:].any()  # failed slots are zero


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    data = [_jpeg(_smooth_image(30 + 7 * k, 40 + 3 * k, k)) for k in range(7)]
    encoded = EncodedImages(data, [(2, 3, 30, 28)] * 7, [f"{k}.jpg" for k in range(7)])
    whole, _ = decode_encoded(encoded, 12, "cpu")
    monkeypatch.setattr(encoded_module, "DECODE_CHUNK", 3)
    chunked, _ = decode_encoded(encoded, 12, "cpu")
    assert torch.equal(whole, chunked)


def test_resize_rounds_to_the_nearest_level() -> None:
    # A flat grey image: every output pixel is exactly that grey, not one level below.
    flat = np.full((32, 32, 3), 201, dtype=np.uint8)
    images, _ = decode_encoded(EncodedImages([_jpeg(flat)], [(0, 0, 32, 32)], ["g.jpg"]), 8, "cpu")
    assert images.unique().tolist() == [201]


def test_collate_joins_pairs_in_order_and_survives_the_transfer() -> None:
    samples = [
        {
            "encoded": EncodedImages(
                [b"a%d" % i, b"b%d" % i], [(i, 0, 1, 1), (i, 1, 2, 2)], [f"a{i}", f"b{i}"]
            ),
            "label": torch.tensor(i),
        }
        for i in range(3)
    ]
    batch = collate_encoded(samples)
    encoded = batch["encoded"]
    assert isinstance(encoded, EncodedImages)
    assert encoded.paths == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert encoded.data[3] == b"b1"
    assert encoded.crops[4] == (2, 0, 1, 1)
    assert torch.equal(batch["label"], torch.arange(3))  # type: ignore[arg-type]
    # Lightning's device transfer and the DataLoader's pinning hand the bytes through untouched.
    assert move_data_to_device(batch, torch.device("cpu"))["encoded"] is encoded
    assert pin_memory({"encoded": encoded})["encoded"] is encoded  # (pinning a tensor needs CUDA)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="one crop and one path per image"):
        EncodedImages([b"x"], [], ["a"])
    with pytest.raises(TypeError, match="EncodedImages under 'encoded'"):
        collate_encoded([{"label": torch.tensor(0)}])
    with pytest.raises(ValueError, match="size must be positive"):
        decode_encoded(EncodedImages(), 0, "cpu")
