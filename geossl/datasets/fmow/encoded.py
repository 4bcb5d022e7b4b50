"""Undecoded JPEGs that travel from the DataLoader workers to the device, and their decoder.

With ``FMoWDataModule(decode_on_device=True)`` the workers only read each file's bytes; the batch
is decoded where the model runs (nvJPEG through `torchvision.io.decode_jpeg` on a GPU), then
each image's context crop is resized to ``image_size`` there. A real fMoW-rgb JPEG is often
thousands of pixels wide, and decoding it costs far more than reading it: on the CPU the workers
would need dozens of cores to keep one GPU busy.

The bytes are carried by [`EncodedImages`][geossl.datasets.fmow.encoded.EncodedImages], an object
that Lightning's device transfer and the DataLoader's memory pinning leave alone (a list of
``bytes`` would be walked as a sequence).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor
from torch.utils.data import default_collate

__all__ = ["EncodedImages", "collate_encoded", "decode_encoded"]

#: Images decoded per :func:`torchvision.io.decode_jpeg` call: bounds the memory of the full-size
#: decoded images (a 3,000 px fMoW JPEG is 27 MB as RGB) while keeping nvJPEG's batching.
DECODE_CHUNK = 64


class EncodedImages:
    """Encoded images, each with the pixel window to keep from it.

    A plain class on purpose: Lightning's device transfer rebuilds dataclasses and walks the
    sequences inside them, ``bytes`` included, one byte at a time (16 files of 5 MB take 90 s); an
    unknown object is passed through as is.

    Args:
        data: the files' bytes.
        crops: ``(x0, y0, x1, y1)`` window of each image, exclusive ends (clipped to the decoded
            image).
        paths: each file's path, for error messages.

    Raises:
        ValueError: if the three lists differ in length.
    """

    __slots__ = ("crops", "data", "paths")

    def __init__(
        self,
        data: list[bytes] | None = None,
        crops: list[tuple[int, int, int, int]] | None = None,
        paths: list[str] | None = None,
    ) -> None:
        self.data = data if data is not None else []
        self.crops = crops if crops is not None else []
        self.paths = paths if paths is not None else []
        if not len(self.data) == len(self.crops) == len(self.paths):
            raise ValueError(
                f"EncodedImages needs one crop and one path per image, got {len(self.data)} "
                f"images, {len(self.crops)} crops and {len(self.paths)} paths"
            )

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"EncodedImages({len(self)} images, {sum(map(len, self.data))} bytes)"


def collate_encoded(samples: Sequence[dict[str, object]]) -> dict[str, object]:
    """`default_collate`, with the samples' ``encoded`` joined in order.

    Each sample's ``encoded`` ([`EncodedImages`][geossl.datasets.fmow.encoded.EncodedImages]) is
    concatenated sample-major: for pairs, image ``2 b + v`` of the batch is view ``v`` of sample
    ``b``.
    """
    joined = EncodedImages()
    rest = []
    for sample in samples:
        encoded = sample.get("encoded")
        if not isinstance(encoded, EncodedImages):
            raise TypeError("collate_encoded needs an EncodedImages under 'encoded' in each sample")
        joined.data += encoded.data
        joined.crops += encoded.crops
        joined.paths += encoded.paths
        rest.append({k: v for k, v in sample.items() if k != "encoded"})
    batch: dict[str, object] = default_collate(rest)
    batch["encoded"] = joined
    return batch


def _decode(data: list[bytes], device: torch.device) -> list[Tensor | None]:
    """RGB ``uint8 [3, H, W]`` of each JPEG on ``device``; ``None`` for one that does not decode.

    The whole chunk is decoded in one call; when that fails, each image again on its own, to find
    the bad ones.
    """
    buffers = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
    mode = torchvision.io.ImageReadMode.RGB
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs for TorchCodec's; decode_jpeg still is the
        # batched nvJPEG path of the torch stack we support, and this is its only call site.
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        try:
            return list(torchvision.io.decode_jpeg(buffers, mode=mode, device=device))
        except RuntimeError:
            decoded: list[Tensor | None] = []
            for buffer in buffers:
                try:
                    decoded.append(torchvision.io.decode_jpeg(buffer, mode=mode, device=device))
                except RuntimeError:
                    decoded.append(None)
            return decoded


def decode_encoded(
    encoded: EncodedImages, size: int, device: torch.device | str
) -> tuple[Tensor, list[int]]:
    """Decode ``encoded`` on ``device``, crop each image to its window and resize it.

    The resize is bilinear with antialiasing (`torch.nn.functional.interpolate`,
    ``antialias=True``), as PIL's ``resize`` in the workers; the workers' PIL path may first
    decode at 1/2 to 1/8 scale in the DCT domain, so the two agree to a few grey levels, not
    exactly.

    Args:
        encoded: the images and their windows.
        size: output side in pixels.
        device: where to decode (``cuda`` uses nvJPEG).

    Returns:
        ``uint8 [N, 3, size, size]`` on ``device``, and the positions of the images that could
        not be decoded or whose window misses the image (their slots are zero).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    device = torch.device(device)
    out = torch.zeros(len(encoded), 3, size, size, dtype=torch.uint8, device=device)
    failed: list[int] = []
    for start in range(0, len(encoded), DECODE_CHUNK):
        images = _decode(encoded.data[start : start + DECODE_CHUNK], device)
        for offset, image in enumerate(images):
            position = start + offset
            x0, y0, x1, y1 = encoded.crops[position]
            if image is not None:
                height, width = image.shape[-2:]
                x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if image is None or x0 >= x1 or y0 >= y1:
                failed.append(position)
                continue
            window = image[None, :, y0:y1, x0:x1].float()
            resized = F.interpolate(
                window, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            # +0.5 then truncation in the uint8 copy: rounding to the nearest grey level.
            out[position].copy_(resized[0].add_(0.5).clamp_(0.0, 255.0))
    return out, failed
