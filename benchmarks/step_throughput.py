"""Pretraining step throughput per recipe and mode, side by side with torchgeo's MoCoTask.

Times ``GeoSSLTask.training_step`` + backward + SGD step (momentum 0.9, weight decay 1e-4) on a
fixed random uint8 batch of temporal pairs ``[B, 2, 3, image_size, image_size]`` (no data
loading: the input pipeline is ``benchmarks/input_pipeline.py``), for each recipe of
``configs/pretrain/ablations/`` and each mode:

* ``eager``: NCHW;
* ``channels_last``: ``model.channels_last=true``;
* ``compile``: ``model.channels_last=true`` and ``model.compile=true`` (the encoders through
  ``torch.compile``; the warm-up steps compile, they are not timed);

at the given precision (``bf16``: ``torch.autocast``, as Lightning's ``bf16-mixed``). In the same
run, torchgeo's ``MoCoTask`` (version 2, MoCo-v2: the same backbone, projection head sizes, queue /
memory bank size, crop size, batch, precision and memory format, its input the same pairs as
``[B, 2C, H, W]`` floats) gives the baseline of the ``vs_torchgeo`` column (geossl samples/s over
torchgeo's at the same mode and precision).

Rates are taken over ``--steps`` consecutive steps with one device synchronisation at each end
(the CPU may queue step ``n + 1`` while the GPU runs step ``n``, as in training). Memory: on CUDA
the peak allocated by the timed steps (``torch.cuda.max_memory_allocated``) and, with
``--max-batch``, the largest batch that fits (doubling, then bisection, on
``torch.OutOfMemoryError``; ``channels_last`` mode); on the CPU the peak resident set size of the
process sampled during the case, and no search.

``--profile`` runs ``torch.profiler`` over a few steps of one recipe instead and writes
``benchmarks/results/step_profile.json``: the operators with the largest self time and every
operator that makes the host wait for the device (``.item()``, ``.tolist()``, ``nonzero``,
boolean-mask indexing), with the geossl line that calls it.

    python -m benchmarks.step_throughput                        # resnet18, 64 px, batch 8, CPU
    python -m benchmarks.step_throughput --device cuda --backbone resnet50 --crop-size 224 \\
        --image-size 448 --batch-size 256 --precision bf16 --queue-size 65536 --max-batch
    python -m benchmarks.step_throughput --profile --recipes all
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.embed_throughput import RSSSampler
from benchmarks.update_docs import main as update_docs
from geossl import __version__
from geossl.trainers import GeoSSLTask

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "configs" / "pretrain" / "ablations"
RESULTS = REPO / "benchmarks" / "results"
#: The recipes of the issue (MoCo, +TP+Geo, +CO2, +SCRL, all), in table order.
RECIPES = ["moco", "tp_geo", "tp_geo_co2", "tp_geo_scrl", "all"]
#: Every recipe that ``--recipes`` accepts (the ablation configs).
ALL_RECIPES = sorted(p.stem for p in ABLATIONS.glob("*.yaml"))
MODES = ["eager", "channels_last", "compile"]
#: Operators that copy a device value to the host (the CPU waits for the device queue to drain).
SYNC_OPS = (
    "aten::_local_scalar_dense",
    "aten::item",
    "aten::nonzero",
    "aten::masked_select",
    "aten::is_nonzero",
    "aten::_assert_async",
)

StepFn = Callable[[dict[str, Tensor], int], Tensor]


@dataclass(frozen=True)
class Settings:
    """What every case of one run shares (the JSON's ``settings``)."""

    backbone: str = "resnet18"
    crop_size: int = 64
    image_size: int = 80
    batch_size: int = 8
    device: str = "cpu"
    precision: str = "fp32"
    queue_size: int = 4096
    proj_hidden_dim: int = 2048
    proj_dim: int = 128
    num_geo_clusters: int = 100
    warmup: int = 1
    steps: int = 3
    nan_check_every_n_steps: int = 1


def machine_info(device: str) -> dict[str, Any]:
    """The device name and the versions the figures were taken with."""
    import kornia
    import lightning
    import timm
    import torchvision

    dev = torch.device(device)
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()})",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "kornia": kornia.__version__,
        "lightning": lightning.__version__,
        "geossl": __version__,
    }
    try:
        import torchgeo

        info["torchgeo"] = torchgeo.__version__
    except ImportError:  # pragma: no cover - torchgeo is a dependency
        info["torchgeo"] = None
    return {k: v for k, v in info.items() if v is not None}


def recipe_model(recipe: str) -> dict[str, Any]:
    """The ``model`` section of ``configs/pretrain/ablations/<recipe>.yaml``."""
    model: dict[str, Any] = yaml.safe_load((ABLATIONS / f"{recipe}.yaml").read_text())["model"]
    return model


def make_batch(settings: Settings, batch_size: int | None = None) -> dict[str, Tensor]:
    """A seeded uint8 batch of pairs and geo labels on the device."""
    g = torch.Generator().manual_seed(0)
    b, size = batch_size or settings.batch_size, settings.image_size
    batch = {
        "image": torch.randint(0, 256, (b, 2, 3, size, size), dtype=torch.uint8, generator=g),
        "geo_label": torch.randint(0, settings.num_geo_clusters, (b,), generator=g),
    }
    return {k: v.to(settings.device) for k, v in batch.items()}


def _no_log(*args: object, **kwargs: object) -> None:
    """Stands in for ``LightningModule.log`` outside a Trainer."""


def build_geossl(recipe: str, mode: str, settings: Settings) -> tuple[nn.Module, StepFn]:
    """The recipe's GeoSSLTask in ``mode`` and its step function."""
    task = GeoSSLTask(
        backbone=settings.backbone,
        crop_size=settings.crop_size,
        queue_size=settings.queue_size,
        proj_hidden_dim=settings.proj_hidden_dim,
        proj_dim=settings.proj_dim,
        num_geo_clusters=settings.num_geo_clusters,
        channels_last=mode != "eager",
        compile=mode == "compile",
        nan_check_every_n_steps=settings.nan_check_every_n_steps,
        **recipe_model(recipe),
    ).to(settings.device)
    task.log = _no_log  # type: ignore[method-assign]
    return task, task.training_step


def build_torchgeo(mode: str, settings: Settings) -> tuple[nn.Module, StepFn]:
    """torchgeo's MoCoTask (MoCo-v2) at the same settings, and a step taking our batches.

    MoCo-v2's sizes (2-layer 2048-d projection to 128, memory bank of ``queue_size``,
    ``moco_momentum`` 0.999, temperature 0.02 as GeoSSL). The uint8 pairs become the
    ``[B, 2C, H, W]`` floats in ``[0, 1]`` that its ``training_step`` splits into two views; the
    conversion is timed (GeoSSLTask does it in its augmentation).
    """
    import warnings

    from geossl.utils.torchgeo_tasks import MoCoTask

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MoCoTask's hyper-parameter advice
        task = MoCoTask(
            model=settings.backbone,
            in_channels=3,
            version=2,
            layers=2,
            hidden_dim=settings.proj_hidden_dim,
            output_dim=settings.proj_dim,
            lr=0.03,
            weight_decay=1e-4,
            momentum=0.9,
            temperature=0.02,
            memory_bank_size=settings.queue_size,
            moco_momentum=0.999,
            size=settings.crop_size,
        )
    task = task.to(settings.device)
    task.log = _no_log  # type: ignore[method-assign]
    if mode != "eager":
        for name in ("backbone", "backbone_momentum"):
            getattr(task, name).to(memory_format=torch.channels_last)
    if mode == "compile":
        for name in ("backbone", "backbone_momentum", "projection_head"):
            module = getattr(task, name)
            module.compile()

    def step(batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        image = batch["image"]  # [B, 2, C, H, W] uint8
        x = image.flatten(1, 2).float() / 255.0  # [B, 2C, H, W]
        loss: Tensor = task.training_step({"image": x}, batch_idx)
        return loss

    return task, step


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak memory of the block in MB: CUDA allocations, or the process's sampled RSS."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        with RSSSampler(interval=0.05) as sampler:
            yield out
        out["peak_mem_mb"] = round(sampler.peak / 2**20, 1)


def make_optimizer(task: nn.Module) -> torch.optim.Optimizer:
    """SGD as each task configures it (lr 0.03, momentum 0.9, weight decay 1e-4).

    GeoSSLTask's is fused (one kernel per update), torchgeo's MoCoTask's is PyTorch's default.
    """
    params = [p for p in task.parameters() if p.requires_grad]
    fused = True if isinstance(task, GeoSSLTask) else None
    return torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=1e-4, fused=fused)


def run_steps(
    step: StepFn,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    settings: Settings,
    steps: int,
) -> float:
    """Run ``steps`` optimiser steps; return the seconds they took (synchronised at both ends)."""
    device = torch.device(settings.device)
    bf16 = settings.precision == "bf16"
    _synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step(batch, i)
        torch.autograd.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _synchronize(device)
    return time.perf_counter() - start


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _build(impl: str, recipe: str, mode: str, settings: Settings) -> tuple[nn.Module, StepFn]:
    torch.manual_seed(0)
    if impl == "torchgeo":
        return build_torchgeo(mode, settings)
    return build_geossl(recipe, mode, settings)


def search_max_batch(
    fits: Callable[[int], bool], start: int, limit: int, granularity: int = 32
) -> int:
    """Largest batch (a multiple of ``granularity``, at most ``limit``) for which ``fits`` holds.

    Doubles from ``start`` until ``fits`` fails (or ``limit``), then bisects; 0 if nothing fits.
    """
    if not fits(start):
        lo, hi = 0, start
    else:
        lo, hi = start, start * 2
        while hi <= limit and fits(hi):
            lo, hi = hi, hi * 2
        if hi > limit:
            return lo
    while hi - lo > granularity:
        mid = (lo + hi) // 2 // granularity * granularity
        if mid <= lo:
            break
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def max_batch(impl: str, recipe: str, settings: Settings, start: int, limit: int) -> int:
    """Largest batch whose step fits in GPU memory (two steps per try, ``channels_last``)."""
    device = torch.device(settings.device)

    def fits(b: int) -> bool:
        task: nn.Module | None = None
        try:
            task, step = _build(impl, recipe, "channels_last", settings)
            run_steps(step, make_optimizer(task), make_batch(settings, b), settings, 2)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            del task
            _release(device)

    return search_max_batch(fits, start, limit)


def run_case(
    impl: str, recipe: str, mode: str, settings: Settings, batch: dict[str, Tensor]
) -> dict[str, Any]:
    """Build one case, warm it up, time it; a failure becomes the row's ``status``."""
    device = torch.device(settings.device)
    row: dict[str, Any] = {
        "impl": impl,
        "recipe": recipe,
        "losses": "moco-v2 (lightly NTXent + memory bank)"
        if impl == "torchgeo"
        else ", ".join(f"{k} {v:g}" for k, v in recipe_model(recipe)["losses"].items()),
        "mode": mode,
        "precision": settings.precision,
        "batch_size": settings.batch_size,
    }
    task: nn.Module | None = None
    try:
        task, step = _build(impl, recipe, mode, settings)
        optimizer = make_optimizer(task)
        warm = time.perf_counter()
        run_steps(step, optimizer, batch, settings, settings.warmup)
        row["warmup_s"] = round(time.perf_counter() - warm, 2)
        with _memory(device) as memory:
            seconds = run_steps(step, optimizer, batch, settings, settings.steps)
        row["step_s"] = round(seconds / settings.steps, 4)
        row["samples_per_s"] = round(settings.batch_size * settings.steps / seconds, 2)
        row.update(memory)
        row["status"] = "ok"
    except Exception as err:  # a failed case must not lose the others' figures
        row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    finally:
        del task
        _release(device)
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``vs_torchgeo``: samples/s over torchgeo's; ``time_vs_moco``: step time over MoCo's.

    Both at the same mode and precision.
    """
    base = {
        (r["mode"], r["precision"]): r.get("samples_per_s")
        for r in rows
        if r["impl"] == "torchgeo" and r["status"] == "ok"
    }
    for row in rows:
        ref = base.get((row["mode"], row["precision"]))
        ok = row["status"] == "ok" and ref
        row["vs_torchgeo"] = round(row["samples_per_s"] / ref, 2) if ok else "-"
    moco = {
        (r["mode"], r["precision"]): r.get("samples_per_s")
        for r in rows
        if r["impl"] == "geossl" and r["recipe"] == "moco" and r["status"] == "ok"
    }
    for row in rows:
        ref = moco.get((row["mode"], row["precision"]))
        ok = row["impl"] == "geossl" and row["status"] == "ok" and ref
        row["time_vs_moco"] = round(ref / row["samples_per_s"], 2) if ok else "-"


def profile(
    recipe: str, mode: str, settings: Settings, batch: dict[str, Tensor], top: int = 15
) -> dict[str, Any]:
    """Profile ``settings.steps`` steps of one recipe: top operators and host syncs with callers."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    task, step = _build("geossl", recipe, mode, settings)
    optimizer = make_optimizer(task)
    run_steps(step, optimizer, batch, settings, settings.warmup)
    activities = [ProfilerActivity.CPU]
    if torch.device(settings.device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with torch_profile(activities=activities) as prof:
        run_steps(step, optimizer, batch, settings, settings.steps)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    rows: list[dict[str, Any]] = [
        {
            "kind": "top self CPU time",
            "op": e.key,
            "calls_per_step": round(e.count / settings.steps, 1),
            "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1000 / settings.steps, 2),
            "share": f"{100 * e.self_cpu_time_total / total:.1f}%",
            "where": "",
        }
        for e in ops
    ]
    with SyncTracer() as tracer:
        run_steps(step, optimizer, batch, settings, settings.steps)
    # On a CPU every read is listed; which would be GPU syncs is what the meta rows tell.
    read_kind = (
        "host sync" if tracer.on_device else "host read (CPU run: GPU syncs are the meta rows)"
    )
    for (op, where), count in tracer.hits.most_common():
        rows.append(
            {
                "kind": read_kind,
                "op": op,
                "calls_per_step": round(count / settings.steps, 1),
                "self_cpu_ms_per_step": "",
                "share": "",
                "where": where,
            }
        )
    with OpCounter() as counter:
        run_steps(step, optimizer, batch, settings, 1)
    augment = cast(GeoSSLTask, task).augment
    with OpCounter() as per_view:
        augment(batch["image"][:, 0], return_params=True)
    for what, count in [
        (f"{recipe}: one step (forward, backward, SGD)", counter.count),
        ("GeoSSLAugmentation: one view", per_view.count),
    ]:
        rows.append(
            {
                "kind": "tensor operations dispatched (each a kernel launch on a GPU)",
                "op": what,
                "calls_per_step": count,
                "self_cpu_ms_per_step": "",
                "share": "",
                "where": "",
            }
        )
    rows += [meta_check(name, settings) for name in RECIPES]
    return {"recipe": recipe, "mode": mode, "rows": rows}


class OpCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Count the ATen operations dispatched (the host's launch work on a GPU)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.count = 0

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def meta_check(recipe: str, settings: Settings) -> dict[str, Any]:
    """The first device value one step of ``recipe`` reads on the host, found on the meta device.

    The tracer above cannot tell, on a CPU, a value that would live on the GPU from one drawn on
    the host (kornia's parameters); the meta device can: every tensor the module and the batch
    put on the device is a meta tensor, and reading one on the host raises. The finiteness check
    (a read by design, ``nan_check_every_n_steps``) is off here.
    """
    meta = replace(settings, device="meta", nan_check_every_n_steps=0)
    _, step = build_geossl(recipe, "eager", meta)
    batch = make_batch(meta)
    kind = f"{recipe}: first device value read on the host (meta device)"
    row: dict[str, Any] = {"kind": kind, "op": "none"}
    row |= {"calls_per_step": "", "self_cpu_ms_per_step": "", "share": "", "where": ""}
    try:
        step(batch, 0).backward()  # type: ignore[no-untyped-call]
    except (RuntimeError, NotImplementedError) as error:
        frames = [
            f
            for f in traceback.extract_tb(error.__traceback__)
            if any(r in f.filename for r in SyncTracer.ROOTS)
        ]
        message = str(error)
        if "nonzero" in message:
            row["op"] = "aten::nonzero (boolean mask)"
        elif "item()" in message:
            row["op"] = "aten::_local_scalar_dense (.item() / bool())"
        else:
            row["op"] = message.splitlines()[0][:80]
        row["where"] = " <- ".join(_short_frame(f) for f in frames[::-1][:3])
    return row


# torch's dispatch / function modes are not typed: the calls into them are marked below.
class SyncTracer(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Count the operations that copy a device value to the host, by calling line.

    At the dispatcher: ``_local_scalar_dense`` (``.item()``, ``bool(t)``, ``int(t)``),
    ``nonzero`` / ``masked_select`` and boolean-mask indexing (``x[mask]``: the output size is
    data-dependent),
    ``_assert_async`` and any copy from the device to the CPU (``.cpu()``, ``.tolist()``,
    ``.numpy()``). On a CPU nothing actually waits: every such operation is counted as what
    would be a sync on a GPU, and ``.tolist()`` (which reads CPU memory without dispatching) is
    caught at the Python level. ``where`` is the innermost geossl / lightly / kornia / torchgeo
    frame, with its two callers.
    """

    OPS = frozenset({op.split("::")[1] for op in SYNC_OPS})
    ROOTS = ("geossl/", "lightly/", "kornia/", "torchgeo/")

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.hits: Counter[tuple[str, str]] = Counter()
        self.on_device = False
        self._functions = _ToListTracer(self)

    def __enter__(self) -> SyncTracer:
        self._functions.__enter__()  # type: ignore[no-untyped-call]
        super().__enter__()  # type: ignore[no-untyped-call]
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)  # type: ignore[no-untyped-call]
        self._functions.__exit__(*exc)  # type: ignore[no-untyped-call]

    def record(self, op: str) -> None:
        """Count ``op`` at the current Python stack."""
        frames = [
            f for f in traceback.extract_stack()[:-3] if any(r in f.filename for r in self.ROOTS)
        ]
        where = " <- ".join(_short_frame(f) for f in frames[::-1][:3]) or "(torch / lightning)"
        self.hits[(op, where)] += 1

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        tensors = [a for a in args if isinstance(a, Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")
        if device.type != "cpu":
            self.on_device = True
        to_host = False
        if name == "_to_copy":  # .cpu(), .to("cpu"), .tolist() on the device
            target = torch.device(kwargs.get("device") or device)
            to_host = device.type != "cpu" and target.type == "cpu"
        elif name == "copy_" and len(tensors) > 1:  # copy_(dst on the host, src on the device)
            to_host = tensors[0].device.type == "cpu" and tensors[1].device.type != "cpu"
        elif name in {"index", "index_put", "index_put_"} and len(args) > 1:
            # ``x[mask]``: a boolean index is turned into positions (nonzero) inside the kernel
            masks = [i for i in args[1] if isinstance(i, Tensor) and i.dtype == torch.bool]
            if masks and (masks[0].device.type != "cpu" or not self.on_device):
                self.record(f"aten::{name} (boolean mask)")
                return func(*args, **kwargs)
        if name in self.OPS or to_host:
            self.record(f"aten::{name}")
        return func(*args, **kwargs)


class _ToListTracer(TorchFunctionMode):
    """``Tensor.tolist`` / ``Tensor.numpy`` on CPU tensors (no dispatch) for :class:`SyncTracer`."""

    def __init__(self, owner: SyncTracer) -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if getattr(func, "__name__", "") in {"tolist", "numpy"} and not self.owner.on_device:
            self.owner.record(f"Tensor.{func.__name__}")
        return func(*args, **(kwargs or {}))


def _short_frame(frame: traceback.FrameSummary) -> str:
    """``.../site-packages/kornia/x.py`` line 12 -> ``kornia/x.py:12``.

    The last ``root`` in the path is the package's: a checkout in a folder named ``geossl``
    (``.../geossl/geossl/x.py``) is still ``geossl/x.py``.
    """
    for root in SyncTracer.ROOTS:
        if root in frame.filename:
            return f"{root}{frame.filename.rsplit(root, 1)[1]}:{frame.lineno}"
    return f"{frame.filename}:{frame.lineno}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backbone", default=defaults.backbone)
    parser.add_argument("--crop-size", type=int, default=defaults.crop_size)
    parser.add_argument(
        "--image-size", type=int, default=defaults.image_size, help="side of the uint8 pairs"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=defaults.precision)
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size)
    parser.add_argument("--proj-hidden-dim", type=int, default=defaults.proj_hidden_dim)
    parser.add_argument("--proj-dim", type=int, default=defaults.proj_dim)
    parser.add_argument("--num-geo-clusters", type=int, default=defaults.num_geo_clusters)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument(
        "--nan-check-every-n-steps", type=int, default=defaults.nan_check_every_n_steps
    )
    parser.add_argument("--recipes", nargs="+", default=RECIPES, choices=ALL_RECIPES)
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument(
        "--no-torchgeo", action="store_true", help="skip the torchgeo MoCoTask baseline"
    )
    parser.add_argument(
        "--max-batch",
        action="store_true",
        help="search the largest batch that fits (CUDA; recorded as skipped on a CPU)",
    )
    parser.add_argument("--max-batch-limit", type=int, default=8192)
    parser.add_argument(
        "--profile", action="store_true", help="profile the first recipe and mode instead"
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--no-docs", action="store_true", help="do not re-render the docs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (or the profile), write the JSON, re-render ``docs/benchmarks.md``."""
    args = parse_args(argv)
    settings = Settings(
        backbone=args.backbone,
        crop_size=args.crop_size,
        image_size=args.image_size,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        queue_size=args.queue_size,
        proj_hidden_dim=args.proj_hidden_dim,
        proj_dim=args.proj_dim,
        num_geo_clusters=args.num_geo_clusters,
        warmup=args.warmup,
        steps=args.steps,
        nan_check_every_n_steps=args.nan_check_every_n_steps,
    )
    device = torch.device(settings.device)
    command = "python -m benchmarks.step_throughput " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    batch = make_batch(settings)
    result: dict[str, Any] = {
        "machine": machine_info(settings.device),
        "settings": asdict(settings),
    }
    if args.profile:
        found = profile(args.recipes[0], args.modes[0], settings, batch)
        result["settings"].update(recipe=found["recipe"], mode=found["mode"])
        result["notes"] = [
            "Operators with the largest self CPU time over the profiled steps (on a GPU this is "
            "host time: what the CPU spends launching work), then every operator that copies a "
            "device value to the host, with the first geossl / lightly / kornia frame that calls "
            "it. Findings and fixes: the performance notes at the top of this page."
        ]
        result["results"] = found["rows"]
        output = args.output or RESULTS / "step_profile.json"
        for row in found["rows"]:
            print(
                f"{row['kind']:>18} {row['op']:<40} {row['self_cpu_ms_per_step']:>9} ms/step "
                f"{row['share']:>7} {row['where']}"
            )
    else:
        rows: list[dict[str, Any]] = []
        cases = [("geossl", r, m) for r in args.recipes for m in args.modes]
        if not args.no_torchgeo:
            cases += [("torchgeo", "moco", m) for m in args.modes]
        for impl, recipe, mode in cases:
            row = run_case(impl, recipe, mode, settings, batch)
            rows.append(row)
            rate = row.get("samples_per_s", "-")
            print(f"{impl:>8} {recipe:>12} {mode:>13}: {rate} samples/s ({row['status']})")
        add_ratios(rows)
        searched: dict[str, Any] = {}
        for impl, recipe in dict.fromkeys((i, r) for i, r, _ in cases):
            if not args.max_batch:
                value: Any = "not searched (--max-batch)"
            elif device.type != "cuda":
                value = "skipped: no GPU"
            else:
                value = max_batch(impl, recipe, settings, settings.batch_size, args.max_batch_limit)
            searched[f"{impl}/{recipe}"] = value
        for row in rows:
            row["max_batch"] = searched[f"{row['impl']}/{row['recipe']}"]
        result["notes"] = _notes(settings)
        result["results"] = rows
        output = args.output or RESULTS / "step_throughput.json"
    result["command"] = command
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    if not args.no_docs:
        update_docs()
    return result


def _notes(settings: Settings) -> list[str]:
    notes = [
        "samples_per_s counts pairs (one sample = two acquisitions of a place) through "
        "GeoSSLTask.training_step + backward + SGD on a fixed random uint8 batch, augmentation on "
        "the device included, data loading excluded. compile = channels_last + model.compile. "
        "vs_torchgeo = geossl samples/s / torchgeo MoCoTask (v2) samples/s at the same mode and "
        "precision (same backbone, batch, crop, projection sizes and queue). max_batch: largest "
        "batch whose step fits in GPU memory (channels_last mode); time_vs_moco: step time over "
        "MoCo's at the same mode and precision; peak_mem_mb: CUDA peak "
        "allocated, or on a CPU the process's peak resident set size during the case.",
        "torchgeo's MoCoTask as measured (torchgeo 0.8.1): a host sync every step "
        "(output_std.item()), no shuffle-BN, a key encoder initialised apart from the query "
        "encoder, its memory bank (lightly) not in checkpoints, and a vertical flip that MoCo-v2 "
        "does not have; its step is slightly less work than geossl's MoCo-v2 (no shuffle-BN).",
    ]
    if torch.device(settings.device).type != "cuda":
        notes.append(
            "CPU figures at small sizes validate the harness; they say nothing about the GPU "
            "targets. The GPU figures (ResNet-50, 224 px, bf16, batch 256) are still to be "
            "taken: bash benchmarks/gpu_suite.sh on the GPU machine."
        )
    return notes


if __name__ == "__main__":
    main()
