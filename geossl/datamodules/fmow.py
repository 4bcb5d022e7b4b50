"""Lightning data module for geography-aware pretraining on fMoW."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from geossl.datamodules.fmow_checks import _check_decode_on_device, check_fmow_inputs
from geossl.datamodules.input_block import input_block
from geossl.datamodules.loaders import loader_kwargs
from geossl.datamodules.resumable import ResumableDataLoader
from geossl.datasets.band_stats import (
    BandMoments,
    BandStatistics,
    band_stats_key,
    cached_band_statistics,
    valid_pixels,
)
from geossl.datasets.errors import BadDatasetError
from geossl.datasets.fmow import FMoW, FMoWTemporalPairs
from geossl.datasets.fmow.constants import (
    FMOW_SPLITS,
    product_band_names,
    product_in_chans,
    product_input_scale,
    product_scale,
)
from geossl.datasets.fmow.encoded import EncodedImages, collate_encoded, decode_encoded
from geossl.datasets.fmow.index import FMoWIndex, build_fmow_index
from geossl.datasets.skips import BLANK_IMAGE, blank_images
from geossl.samplers.temporal import TemporalPairSampler
from geossl.utils.checks import check_at_least, check_fraction

__all__ = ["FMoWDataModule"]

#: Images that may fail to decode on the device in one process before the run stops.
MAX_DECODE_FAILURES = 100


class FMoWDataModule(LightningDataModule):
    """fMoW temporal pairs for pretraining (MoCo-v2 + temporal positives + geo-location).

    ``prepare_data`` builds and caches the index
    ([`build_fmow_index`][geossl.datasets.fmow.index.build_fmow_index], once per node); ``setup``
    loads it from the cache and builds [`FMoWTemporalPairs`][geossl.datasets.fmow.FMoWTemporalPairs]
    over ``splits`` with a seeded [`TemporalPairSampler`][geossl.samplers.TemporalPairSampler]. Data
    workers only decode, crop (fMoW context box) and resize to ``image_size``; the random view
    augmentation happens on the device.

    A training batch is ``image: [B, 2, C, image_size, image_size]`` (uint8 for the JPEG products,
    float32 in ``[0, 1]`` for GeoTIFFs), ``label, geo_label, location: int64 [B]``,
    ``lat, lon: float32 [B]``, ``time, index: int64 [B, 2]`` (docs/design.md).

    Per-band normalisation statistics of the training images
    ([`band_statistics`][geossl.datamodules.fmow.FMoWDataModule.band_statistics]) are what
    [`GeoSSLTask`][geossl.trainers.GeoSSLTask] uses when ``model.mean`` / ``model.std`` are not
    given (``product="ms"`` or a band selection other than 3 bands, or ``model.normalization:
    data``).

    Args:
        root: the fMoW root folder.
        splits: splits used for pretraining (default ``["train"]``).
        product: ``"rgb"``, ``"msrgb"``, ``"ms"`` (fMoW-full's 8-band GeoTIFF; 4-band images
            need ``bands`` within 1..4 so that every image has the same channels) or
            ``"sentinel"`` (fMoW-Sentinel: ``root`` holds ``train.csv`` etc. and 13-band
            GeoTIFFs of reflectance x 10,000, scaled by 1e-4; each image is its own crop, so the
            two views of a pair cover the same ground).
        bands: 1-based band indexes to read (rasterio convention), ``None`` for all.
        image_size: side the context crop is resized to in the workers (the model's random resized
            crop makes the 224 px views from it; 448 as in Ayush et al.).
        batch_size: pairs per batch (per process).
        num_workers: DataLoader worker processes.
        num_geo_clusters: geo clusters K (100 in Ayush et al.).
        pair_mode: ``"location"`` (one pair per location per epoch) or ``"image"`` (every image
            once as the anchor).
        seed: seed of the index's k-means and of the pair sampler.
        cache_dir: index cache folder (default ``{root}/.geossl``);
            [`band_statistics`][geossl.datamodules.fmow.FMoWDataModule.band_statistics] caches its
            result there too.
        rebuild_index: rebuild the index even when a cache exists.
        max_bad_fraction: fail when more than this fraction of the samples is bad.
        pin_memory: pin batches (only when CUDA is available).
        persistent_workers: keep workers between epochs (only with ``num_workers > 0``).
        drop_last: drop the last incomplete batch.
        val_split: a split to serve single images from in ``val_dataloader`` (monitoring only).
        shared_canvas: draw the second acquisition of a pair on the anchor's canvas (its target box
            where the anchor's box is; see
            [`FMoWTemporalPairs`][geossl.datasets.fmow.FMoWTemporalPairs]), as the temporal SCRL
            loss (``model.loss_options.scrl.temporal``) needs.
        decode_on_device: JPEG products: the workers only read the files and the training batch
            is decoded where the model runs
            ([`decode_batch`][geossl.datamodules.fmow.FMoWDataModule.decode_batch], nvJPEG on a
            GPU), cropped and resized there (bilinear, antialiased). Real fMoW JPEGs are thousands
            of pixels wide; decoding them in the workers takes dozens of CPU cores per GPU. Images
            that fail to decode are replaced by the other view of their pair (else by another pair
            of the batch) with a warning; more than 100 failures stop the run. Validation batches
            are still decoded in the workers.

    Raises:
        ValueError: for invalid arguments, naming the ``data.<key>`` to fix.
    """

    def __init__(
        self,
        root: str = "data/fmow",
        splits: list[str] | None = None,
        product: str = "rgb",
        bands: list[int] | None = None,
        image_size: int = 448,
        batch_size: int = 256,
        num_workers: int = 8,
        num_geo_clusters: int = 100,
        pair_mode: str = "location",
        seed: int = 0,
        cache_dir: str | None = None,
        rebuild_index: bool = False,
        max_bad_fraction: float = 0.5,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        val_split: str | None = None,
        shared_canvas: bool = False,
        decode_on_device: bool = False,
    ) -> None:
        super().__init__()
        splits = list(splits) if splits is not None else ["train"]
        if not root:
            raise ValueError("data.root must be a folder, got an empty string")
        if (
            not splits
            or any(s not in FMOW_SPLITS for s in splits)
            or len(set(splits)) != len(splits)
        ):
            raise ValueError(
                f"data.splits must be distinct splits of {list(FMOW_SPLITS)}, got {splits}"
            )
        check_fmow_inputs(product, bands, val_split, splits)
        counts = {"image_size": image_size, "batch_size": batch_size}
        counts["num_geo_clusters"] = num_geo_clusters
        for key, value in counts.items():
            check_at_least(f"data.{key}", value, 1)
        check_at_least("data.num_workers", num_workers, 0)
        if pair_mode not in ("location", "image"):
            raise ValueError(f"data.pair_mode must be 'location' or 'image', got {pair_mode!r}")
        check_fraction("data.max_bad_fraction", max_bad_fraction)
        _check_decode_on_device(decode_on_device, product, shared_canvas)
        self.save_hyperparameters()
        self.root = root
        self.splits = splits
        self.product = product
        self.bands = bands
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.num_geo_clusters = num_geo_clusters
        self.pair_mode = pair_mode
        self.seed = seed
        self.cache_dir = cache_dir
        self.rebuild_index = rebuild_index
        self.max_bad_fraction = max_bad_fraction
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        self.val_split = val_split
        self.shared_canvas = shared_canvas
        self.decode_on_device = decode_on_device
        #: Images that failed to decode on the device in this process.
        self.num_decode_failures = 0
        self.index: FMoWIndex | None = None
        self.train_dataset: FMoWTemporalPairs | None = None
        self.train_sampler: TemporalPairSampler | None = None
        self.val_dataset: FMoW | None = None

    @property
    def in_chans(self) -> int:
        """Channels of the images: ``len(bands)``, else 3 (rgb/msrgb), 8 (ms) or 13 (sentinel)."""
        return product_in_chans(self.product, self.bands)

    @property
    def input_block(self) -> dict[str, Any]:
        """What the model's input is (band names, bands, scale): ``model.input_block``."""
        # The product table knows both (FMOW_PRODUCTS); __init__ checked the product.
        names = product_band_names(self.product, self.bands)
        scale = product_input_scale(self.product)
        if names is None or scale is None:  # pragma: no cover
            raise RuntimeError(f"data.product {self.product!r} is not an fMoW product")
        return input_block("fmow", names, scale, self.bands)

    @property
    def pairs_share_canvas(self) -> bool:
        """Whether both views of a pair are drawn on one canvas (``data.shared_canvas``)."""
        return self.shared_canvas

    @property
    def index_splits(self) -> list[str]:
        """Splits the index covers: ``splits`` plus ``val_split``."""
        extra = [self.val_split] if self.val_split and self.val_split not in self.splits else []
        return [*self.splits, *extra]

    def _build_index(self, rebuild: bool, progress: bool) -> FMoWIndex:
        return build_fmow_index(
            self.root,
            splits=self.index_splits,
            product=self.product,
            num_geo_clusters=self.num_geo_clusters,
            seed=self.seed,
            cache_dir=self.cache_dir,
            rebuild=rebuild,
            max_bad_fraction=self.max_bad_fraction,
            progress=progress,
        )

    def prepare_data(self) -> None:
        """Build and cache the index (Lightning runs this on one process per node)."""
        self._build_index(rebuild=self.rebuild_index, progress=True)

    def setup(self, stage: str | None = None) -> None:
        """Load the index (from the cache) and create the datasets and the pair sampler."""
        if self.index is None:
            self.index = self._build_index(rebuild=False, progress=False)
        rows = self.index.split_rows(*self.splits)
        self.train_dataset = FMoWTemporalPairs(
            self.root,
            rows,
            self.image_size,
            self.bands,
            scale=product_scale(self.product),
            shared_canvas=self.shared_canvas,
            encoded=self.decode_on_device,
        )
        self.train_sampler = TemporalPairSampler(
            rows["location_id"].to_numpy(dtype="int64"),
            rows["timestamp"].to_numpy(dtype="int64"),
            mode="image" if self.pair_mode == "image" else "location",
            shuffle=True,
            seed=self.seed,
        )
        if self.val_split is not None:
            val_rows: pd.DataFrame = self.index.split_rows(self.val_split)
            self.val_dataset = FMoW(
                self.root, val_rows, self.image_size, self.bands, scale=product_scale(self.product)
            )

    def band_statistics(self, num_samples: int = 256) -> tuple[list[float], list[float]]:
        r"""Per-band mean and std of the training images on the ``[0, 1]`` scale (cached).

        The sample: ``num_samples`` images of ``splits`` drawn uniformly without replacement
        (``torch.randperm`` seeded with ``seed``; all of them when there are fewer), each read as
        the workers read it (the context crop resized to ``image_size``, ``bands``; uint8 / 255,
        GeoTIFF values times their scale, clipped). fMoW marks no nodata value: pixels whose bands
        are all exactly 0 (the black fill outside orthorectified scenes) are left out. The
        estimator is the pooled population mean and standard deviation of
        [`BandMoments`][geossl.datasets.band_stats.BandMoments]:
        $\mu_c = \frac{1}{N_c}\sum_i x_{c,i}$,
        $\sigma_c = \sqrt{\frac{1}{N_c}\sum_i (x_{c,i} - \mu_c)^2}$.

        Cached as JSON beside the index (``cache_dir``), keyed by the index's cache file (itself
        keyed by a fingerprint of the data), ``splits``, ``product``, ``bands``, ``image_size``,
        ``seed`` and ``num_samples``: a restart reads it back.

        Args:
            num_samples: images to read.

        Returns:
            ``(mean, std)``, one value per band.

        Raises:
            ValueError: if ``num_samples < 1`` or no sampled pixel holds data.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        if self.index is None:
            self.index = self._build_index(rebuild=False, progress=False)
        index = self.index
        parts = {
            "what": "fmow",
            "index": index.cache_path.name,
            "splits": self.splits,
            "product": self.product,
            "bands": self.bands,
            "image_size": self.image_size,
            "seed": self.seed,
            "num_samples": num_samples,
        }
        key = band_stats_key(parts)
        what = f"{num_samples} images of {self.root} ({', '.join(self.splits)})"

        def compute() -> BandStatistics:
            rows = index.split_rows(*self.splits)
            generator = torch.Generator().manual_seed(self.seed)
            picks = torch.randperm(len(rows), generator=generator)[:num_samples]
            sample = rows.iloc[picks.sort().values.numpy()]  # index order: sorted by location
            dataset = FMoW(
                self.root, sample, self.image_size, self.bands, scale=product_scale(self.product)
            )
            moments = BandMoments(self.in_chans)
            for i in range(len(dataset)):
                image = dataset[i]["image"]  # [C, H, W]
                unit = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
                moments.update(unit[:, valid_pixels(unit, 0.0)])  # [C, N]
            return moments.result(what)

        path = index.cache_path.parent / f"band-stats-fmow-{self.product}-{key[:16]}.json"
        description = {"root": self.root, "splits": self.splits, "num_samples": num_samples}
        stats, _ = cached_band_statistics(path, key, compute, description)
        return list(stats.mean), list(stats.std)

    def _loader_kwargs(self) -> dict[str, Any]:
        return loader_kwargs(
            self.batch_size,
            self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Batches of temporal pairs drawn by the seeded `TemporalPairSampler`."""
        if self.train_dataset is None or self.train_sampler is None:
            self.setup("fit")
        if self.train_dataset is None or self.train_sampler is None:  # pragma: no cover
            raise RuntimeError("FMoWDataModule.setup() did not create the training dataset")
        return ResumableDataLoader(
            self.train_dataset,
            sampler=self.train_sampler,
            drop_last=self.drop_last,
            collate_fn=collate_encoded if self.decode_on_device else None,
            seed=self.seed,
            **self._loader_kwargs(),
        )

    def teardown(self, stage: str) -> None:
        """Print the run's image failures (loader workers and device decode), if any."""
        loaded = "" if self.train_dataset is None else self.train_dataset.load_failures.summary()
        if loaded:
            print(loaded, file=sys.stderr)
        if self.num_decode_failures:
            print(
                f"{self.root}: {self.num_decode_failures:,} images failed to decode on the device "
                "(or were blank) and were replaced (each warned, naming its file)",
                file=sys.stderr,
            )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Decode a ``decode_on_device`` batch where it now is (see `decode_batch`)."""
        if isinstance(batch, dict) and isinstance(batch.get("encoded"), EncodedImages):
            return self.decode_batch(batch)
        return batch

    def decode_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Turn a ``decode_on_device`` batch into the usual one, on the device of its tensors.

        ``encoded`` (the ``2 B`` files, pair-major) becomes ``image: uint8 [B, 2, C, S, S]``
        (``S = image_size``, ``C`` the selected bands). A file that does not decode, decodes to one
        flat colour, or whose context crop misses the decoded image, is replaced by the other view
        of its pair (with that view's ``time`` and ``index``), or when both fail by the nearest
        intact pair of the batch (every key); each warns, naming the file.

        Raises:
            BadDatasetError: past 100 failures in this process, or when no pair of a batch
                decodes.
        """
        encoded: EncodedImages = batch.pop("encoded")
        device = batch["index"].device
        images, failed = decode_encoded(encoded, self.image_size, device)
        pairs = images.view(-1, 2, *images.shape[1:])
        # One reduction for the batch: a JPEG with intact markers but zeroed data decodes flat.
        blank = [p for p in blank_images(images).nonzero()[:, 0].tolist() if p not in failed]
        if failed or blank:
            self._replace_failed(batch, pairs, encoded, failed, blank)
        if self.bands is not None:
            pairs = pairs[:, :, [b - 1 for b in self.bands]]
        batch["image"] = pairs
        return batch

    def _replace_failed(
        self,
        batch: dict[str, Any],
        pairs: Tensor,
        encoded: EncodedImages,
        failed: list[int],
        blank: list[int],
    ) -> None:
        self.num_decode_failures += len(failed) + len(blank)
        for position in failed:
            warnings.warn(
                f"{encoded.paths[position]}: cannot decode the image on {pairs.device} (corrupt "
                "JPEG, or its context crop misses the image); a replacement is used",
                RuntimeWarning,
                stacklevel=3,
            )
        for position in blank:
            warnings.warn(
                f"{encoded.paths[position]}: {BLANK_IMAGE} (one flat colour once decoded on "
                f"{pairs.device}); a replacement is used",
                RuntimeWarning,
                stacklevel=3,
            )
        failed = sorted(failed + blank)
        if self.num_decode_failures > MAX_DECODE_FAILURES:
            raise BadDatasetError(
                self.root,
                f"{self.num_decode_failures} images failed to decode on the device (more than "
                f"{MAX_DECODE_FAILURES}), last {encoded.paths[failed[-1]]}",
            )
        bad = [[False, False] for _ in range(pairs.shape[0])]
        for position in failed:
            bad[position // 2][position % 2] = True
        intact = [p for p, views in enumerate(bad) if not any(views)]
        for p, (first_bad, second_bad) in enumerate(bad):
            if first_bad and second_bad:
                if not intact:
                    raise BadDatasetError(
                        self.root,
                        f"no pair of a batch could be decoded, first {encoded.paths[2 * p]}",
                    )
                donor = min(intact, key=lambda q: abs(q - p))
                pairs[p] = pairs[donor]
                for value in batch.values():
                    if isinstance(value, Tensor) and value.ndim > 0:
                        value[p] = value[donor]
            elif first_bad or second_bad:
                good = 1 if first_bad else 0
                pairs[p, 1 - good] = pairs[p, good]
                for key in ("time", "index"):
                    batch[key][p, 1 - good] = batch[key][p, good]

    def val_dataloader(self) -> DataLoader[dict[str, torch.Tensor]] | list[Any]:
        """Single images of ``val_split`` in index order (an empty list when it is not set)."""
        if self.val_split is None:
            return []
        if self.val_dataset is None:
            self.setup("validate")
        if self.val_dataset is None:  # pragma: no cover
            raise RuntimeError("FMoWDataModule.setup() did not create the validation dataset")
        return DataLoader(
            self.val_dataset,
            shuffle=False,
            drop_last=False,
            # Its own generator: the workers' seed never comes from the training step's.
            generator=torch.Generator().manual_seed(self.seed),
            **self._loader_kwargs(),
        )
