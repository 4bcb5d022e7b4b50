"""Where [`GeoSSLTask`][geossl.trainers.GeoSSLTask]'s normalisation comes from, and its checks.

``model.normalization`` picks the source of ``mean`` / ``std`` when they are not given:
ImageNet's (3 bands) or the data's (any band count, estimated by the data module's
``band_statistics``: per-band mean and population std of the valid pixels of a seeded sample of
training patches on the ``[0, 1]`` scale, cached, which ``geossl pretrain`` prints once and
hands to the task's ``set_normalization`` before fit, so checkpoints and exported weights record
the statistics actually used). These helpers
resolve the source, read the data's statistics and warn when ``init_weights`` were trained with
others.
"""

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from geossl.transforms import IMAGENET_MEAN, IMAGENET_STD, GeoSSLAugmentation

__all__ = [
    "build_augmentation",
    "data_band_statistics",
    "normalization_source",
    "resumed_normalization",
    "rounded",
    "warn_on_other_normalization",
]


def rounded(values: Sequence[float]) -> list[float]:
    """Values with 4 significant digits, for messages (the hyper-parameters keep them all).

    Example:
        >>> rounded([0.123456, 2.0])
        [0.1235, 2.0]
    """
    return [float(f"{v:.4g}") for v in values]


def normalization_source(hp: Mapping[str, Any]) -> str:
    """``"given"``, ``"imagenet"`` or ``"data"``: where ``mean`` / ``std`` come from.

    Args:
        hp: the task's hyper-parameters (``mean``, ``std``, ``normalization``, ``in_chans``).

    Returns:
        The source.

    Example:
        >>> hp = {"mean": None, "std": None, "normalization": "auto", "in_chans": 4}
        >>> normalization_source(hp), normalization_source({**hp, "in_chans": 3})
        ('data', 'imagenet')
    """
    if hp["mean"] is not None and hp["std"] is not None:
        return "given"
    if hp["normalization"] == "data" or (hp["normalization"] == "auto" and hp["in_chans"] != 3):
        return "data"
    return "given" if hp["mean"] is not None or hp["std"] is not None else "imagenet"


def data_band_statistics(
    datamodule: object, samples: int, in_chans: int
) -> tuple[str, list[float], list[float]]:
    """The data module's per-band statistics, for `GeoSSLTask.set_normalization`.

    Called by ``geossl pretrain`` before fit, on every process: the data modules cache the
    estimate on disk (written atomically) and draw it from a seeded sample, so every rank gets
    the same values without a collective.

    Args:
        datamodule: the data module (with ``band_statistics(samples)``).
        samples: patches / images to estimate them from.
        in_chans: the model's band count (for the message).

    Returns:
        ``(data module class name, mean, std)``.

    Raises:
        ValueError: naming ``model.mean`` / ``model.std`` when the data module has no
            ``band_statistics``.

    Example:
        >>> class Data:
        ...     def band_statistics(self, n: int) -> tuple[list[float], list[float]]:
        ...         return [0.5] * 4, [0.25] * 4
        >>> data_band_statistics(Data(), 32, 4)
        ('Data', [0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25])
    """
    estimate = getattr(datamodule, "band_statistics", None)
    owner = type(datamodule).__name__ if datamodule is not None else "no data module"
    if not callable(estimate):
        raise ValueError(
            f"model.mean / model.std are not set and the data ({owner}) has no "
            f"band_statistics() to estimate them for model.in_chans={in_chans}:"
            " set model.mean and model.std"
        )
    mean, std = estimate(samples)
    return owner, [float(v) for v in mean], [float(v) for v in std]


def warn_on_other_normalization(
    file_name: str,
    file_norm: tuple[Sequence[float], Sequence[float]],
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """Warn when ``init_weights`` were trained with other statistics than this run's.

    Args:
        file_name: the weight file's name (for the message).
        file_norm: the file's ``(mean, std)``.
        mean: this run's mean.
        std: this run's std.
    """
    file_mean, file_std = file_norm
    close = all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
        for a, b in zip((*file_mean, *file_std), (*mean, *std), strict=True)
    )
    if not close:
        warnings.warn(
            f"model.init_weights: {file_name} was trained on inputs normalised with "
            f"mean={list(file_mean)} std={list(file_std)}, but model.mean={list(mean)} "
            f"model.std={list(std)}",
            UserWarning,
            stacklevel=4,
        )


def resumed_normalization(
    saved: Mapping[str, Any], hp: Mapping[str, Any], *, from_data: bool, pending: bool
) -> tuple[list[float], list[float]] | None:
    """The statistics a resumed run keeps: its checkpoint's, when they came from the data.

    The weights were trained with them; if the data now gives others, a warning says so.

    Args:
        saved: the checkpoint's hyper-parameters.
        hp: the task's hyper-parameters.
        from_data: whether the task's statistics come from the data (``normalization_source``).
        pending: whether the task has no statistics yet.

    Returns:
        ``(mean, std)`` to set, or None when the checkpoint's are not the data's.

    Example:
        >>> hp = {"mean": None, "std": None, "normalization": "data", "in_chans": 3}
        >>> saved = {"mean": [0.5] * 3, "std": [0.2] * 3}
        >>> resumed_normalization(saved, hp, from_data=True, pending=True)
        ([0.5, 0.5, 0.5], [0.2, 0.2, 0.2])
    """
    mean, std = saved.get("mean"), saved.get("std")
    if not from_data or mean is None or std is None:
        return None
    if not pending and (list(mean) != hp["mean"] or list(std) != hp["std"]):
        warnings.warn(
            f"resuming with the checkpoint's model.mean={rounded(list(mean))} "
            f"model.std={rounded(list(std))}; the data now gives "
            f"model.mean={rounded(hp['mean'])} model.std={rounded(hp['std'])}",
            UserWarning,
            stacklevel=3,
        )
    return list(mean), list(std)


def build_augmentation(hp: Mapping[str, Any]) -> tuple[GeoSSLAugmentation, str]:
    """The task's batched augmentation with its normalisation, and where that comes from.

    Args:
        hp: the task's hyper-parameters (``crop_size``, ``min_scale``, ``mean``, ``std``,
            ``normalization``, ``in_chans``, ``compile``).

    Returns:
        The augmentation and
        [`normalization_source`][geossl.trainers.normalization.normalization_source]; for ``"data"``
        its statistics are placeholders until
        `GeoSSLAugmentation.set_normalization` gives the data's.

    Example:
        >>> hp = {"crop_size": 32, "min_scale": 0.2, "mean": None, "std": None,
        ...       "normalization": "auto", "in_chans": 4, "compile": False}
        >>> augment, source = build_augmentation(hp)
        >>> source, augment.mean.flatten().tolist()
        ('data', [0.0, 0.0, 0.0, 0.0])
    """
    source = normalization_source(hp)
    pending = source == "data"
    mean: Sequence[float] | None = hp["mean"]
    std: Sequence[float] | None = hp["std"]
    if source == "imagenet" or (hp["in_chans"] == 3 and not pending):
        mean = IMAGENET_MEAN if mean is None else mean
        std = IMAGENET_STD if std is None else std
    augment = GeoSSLAugmentation(
        size=hp["crop_size"],
        min_scale=hp["min_scale"],
        # Placeholders until setup() takes the data's statistics (the forward refuses them).
        mean=[0.0] * hp["in_chans"] if pending else mean,
        std=[1.0] * hp["in_chans"] if pending else std,
        in_chans=hp["in_chans"],
        compile=hp["compile"],
    )
    return augment, source
