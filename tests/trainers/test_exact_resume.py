"""ExactResume: the global random streams survive a weights_only checkpoint."""

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import lightning
import numpy as np
import torch

from geossl.trainers import GeoSSLTask
from geossl.trainers.exact_resume import ExactResume, random_state, set_random_state


def _draws() -> tuple[list[float], list[float], list[float]]:
    return (
        torch.rand(4).tolist(),
        np.random.random(4).tolist(),  # noqa: NPY002 - the legacy global stream is the point
        [random.random() for _ in range(4)],
    )


def test_every_stream_comes_back_from_a_weights_only_file(tmp_path: Path) -> None:
    np.random.normal()  # noqa: NPY002 - a cached Gaussian is part of NumPy's state
    random.gauss(0, 1)
    path = tmp_path / "state.pt"
    torch.save(random_state(), path)
    expected = _draws()
    _draws()  # move every stream on
    set_random_state(torch.load(path, weights_only=True))
    assert _draws() == expected


def test_the_callback_restores_when_training_starts() -> None:
    callback = ExactResume()
    saved = callback.state_dict()
    expected = _draws()
    callback.load_state_dict(saved)
    assert callback.pending
    # Nothing is set at load time: the sanity check may draw before training starts.
    assert _draws() != expected
    fit_loop = SimpleNamespace(_load_combined_loader_states=lambda: None)
    trainer = cast(lightning.Trainer, SimpleNamespace(fit_loop=fit_loop))
    callback.on_train_start(trainer, cast(Any, None))
    assert _draws() == expected
    assert not callback.pending


def test_the_task_brings_it() -> None:
    task = GeoSSLTask(backbone="resnet18", crop_size=32, queue_size=64)
    assert any(isinstance(c, ExactResume) for c in task.configure_callbacks())
