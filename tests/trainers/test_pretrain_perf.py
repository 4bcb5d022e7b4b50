"""Performance options of GeoSSLTask keep the numerics: channels_last, bf16 autocast, compile."""

from typing import Any

import pytest
import torch

from geossl.trainers import GeoSSLTask, encoders
from geossl.transforms import photometric

TINY: dict[str, Any] = {
    "backbone": "test_resnet",
    "crop_size": 32,
    "queue_size": 64,
    "proj_hidden_dim": 64,
    "proj_dim": 16,
    "num_geo_clusters": 4,
    "losses": {"tp": 1.0, "geo": 1.0, "co2": 10.0},
}


def _loss(precision: str = "fp32", **kwargs: Any) -> torch.Tensor:
    torch.manual_seed(0)
    task = GeoSSLTask(**{**TINY, **kwargs})
    task.log = lambda *args, **kw: None  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(1)
    batch = {
        "image": torch.randint(0, 256, (4, 2, 3, 40, 40), dtype=torch.uint8, generator=g),
        "geo_label": torch.tensor([0, 1, 2, 3]),
    }
    torch.manual_seed(2)  # the same augmentation draws
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = task.training_step(batch, 0)
    loss.backward()
    return loss.detach()


def test_channels_last_and_bf16_keep_the_loss():
    eager = _loss()
    torch.testing.assert_close(_loss(channels_last=True), eager, rtol=1e-4, atol=1e-5)
    bf16 = _loss("bf16")
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, eager, rtol=5e-2, atol=5e-2)


@pytest.fixture
def fresh_compile():
    encoders.compiled_encoder.cache_clear()
    photometric.compiled_color_steps.cache_clear()
    yield
    encoders.compiled_encoder.cache_clear()
    photometric.compiled_color_steps.cache_clear()


def test_compile_traces_the_encoders(monkeypatch, fresh_compile):
    # Dynamo with the eager backend: the encoders are traced (graph breaks would still run), no
    # inductor code generation, so the test stays fast on a CPU.
    calls = []
    compile_ = torch.compile

    def eager_compile(fn, **kwargs):
        calls.append(fn)
        return compile_(fn, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    eager = _loss()
    compiled = _loss(compile=True, channels_last=True)
    # the encoders, and the four colour adjustments of the augmentation
    assert set(calls) == {encoders.run_encoder, *photometric.COLOR_STEPS}
    assert len(calls) == 5
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inductor_compile_keeps_the_loss(fresh_compile):
    # Inductor generates C++ for the CPU: a minute or more on a small machine.
    torch.testing.assert_close(_loss(compile=True), _loss(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "losses",
    [{"moco": 1.0}, {"tp": 1.0, "geo": 1.0}, {"tp": 1.0, "geo": 1.0, "co2": 10.0}],
    ids=["moco", "tp_geo", "tp_geo_co2"],
)
def test_a_step_reads_no_device_value_on_the_host(losses):
    # Every host read of a GPU value makes the CPU wait for all queued work. On the meta device
    # such a read raises, so a forward and backward here prove that none is left in the step
    # (augmentation, encoders, shuffle-BN, queue, loss terms) apart from the finiteness check.
    task = GeoSSLTask(**{**TINY, "losses": losses, "nan_check_every_n_steps": 0}).to("meta")
    task.log = lambda *args, **kw: None  # type: ignore[method-assign]
    batch = {
        "image": torch.empty(4, 2, 3, 40, 40, dtype=torch.uint8, device="meta"),
        "geo_label": torch.zeros(4, dtype=torch.long, device="meta"),
    }
    loss = task.training_step(batch, 0)
    loss.backward()
    assert loss.device.type == "meta"
