"""Loading checkpoints and weight files with one-line errors that name the file.

torch's errors for a file it cannot load never name it, and the one for a file that holds
Python objects advises reloading it unsafely.
[`reading_checkpoint`][geossl.weights.reading.reading_checkpoint] wraps every place that loads
a file the user gave (``Trainer.fit(ckpt_path=...)``, ``load_from_checkpoint``, ``torch.load``
in `geossl.weights`) and turns those errors into a
[`CheckpointError`][geossl.errors.CheckpointError] that carries the path: refused by the safe
unpickler, truncated or not a torch file, or tensors that do not fit the model (the first few
keys and the counts, not torch's list of hundreds).
"""

import os
import pickle
import re
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from geossl.errors import CheckpointError

__all__ = [
    "NOT_A_CHECKPOINT",
    "UNSAFE_PICKLE",
    "check_finetuned_checkpoint",
    "load_checkpoint",
    "reading_checkpoint",
    "state_dict_mismatch",
]

#: What a file refused by ``torch.load(weights_only=True)`` is told (never to reload it unsafely).
UNSAFE_PICKLE = (
    "refused: it holds pickled Python objects, and loading them would run code from the file; "
    "geossl loads only tensors and plain containers: use a checkpoint written by geossl or a "
    "plain state dict (.pth, .safetensors) from a source you trust"
)

#: What a truncated file or one of another format is told.
NOT_A_CHECKPOINT = (
    "not a complete torch checkpoint (truncated, e.g. by a full disk or an interrupted copy, "
    "or another kind of file); copy it again or pick another one (e.g. checkpoints/last.ckpt)"
)

_MISMATCH_ADVICE = (
    "load it with the model options of the run that wrote it (its config.yaml, next to the "
    "checkpoints folder)"
)

# torch's state-dict error: one line per kind, keys in double quotes.
_MODEL_NAME = re.compile(r"Error\(s\) in loading state_dict for (\w+)")
_QUOTED = re.compile(r'"([^"]+)"')
_SIZE = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from "
    r"checkpoint, the shape in current model is torch\.Size\(\[([^\]]*)\]\)"
)


def _preview(keys: Sequence[str], limit: int = 3) -> str:
    """``a, b, c, ... (+N more)``."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def state_dict_mismatch(message: str) -> str:
    """Summarise torch's ``Error(s) in loading state_dict`` message: counts and the first keys.

    Args:
        message: the ``RuntimeError``'s text from ``load_state_dict``.

    Returns:
        One line with the missing, unexpected and mis-shaped tensors, three keys of each.

    Examples:
        >>> text = 'Error(s) in loading state_dict for Net:' + chr(10) + chr(9)
        >>> text += 'Missing key(s) in state_dict: "a", "b", "c", "d". '
        >>> state_dict_mismatch(text)
        'its tensors do not fit the Net: 4 missing (a, b, c, ... (+1 more))'
    """
    missing: list[str] = []
    unexpected: list[str] = []
    shapes: list[str] = []
    for line in (line.strip() for line in message.splitlines()):
        if line.startswith("Missing key(s)"):
            missing += _QUOTED.findall(line)
        elif line.startswith("Unexpected key(s)"):
            unexpected += _QUOTED.findall(line)
        elif match := _SIZE.match(line):
            key, saved, wanted = (part.replace(", ", "x") for part in match.groups())
            shapes.append(f"{key} {saved} vs {wanted}")
    parts = [
        f"{len(keys)} {kind} ({_preview(keys)})"
        for kind, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("of another shape, file vs model", shapes),
        )
        if keys
    ]
    named = _MODEL_NAME.search(message)
    model = named.group(1) if named else "model"
    return f"its tensors do not fit the {model}: " + ("; ".join(parts) or "unknown difference")


def _raised_by_torch_load(error: BaseException) -> bool:
    """Whether ``error`` was raised inside ``torch.load`` (not ``torch.save``: a full disk)."""
    suffix = os.path.join("torch", "serialization.py")
    return any(
        frame.f_code.co_filename.endswith(suffix) and frame.f_code.co_name == "load"
        for frame, _ in traceback.walk_tb(error.__traceback__)
    )


@contextmanager
def reading_checkpoint(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Turn the errors of loading ``path`` in the block into a one-line `CheckpointError`.

    A file that is missing or cannot be opened keeps its `OSError` (which names it); any other
    error of the block passes unchanged, so the block may be a whole ``Trainer.fit``.

    Args:
        path: the file the block loads; ``None`` (nothing to resume) lets everything pass.

    Yields:
        Nothing: the block runs inside.

    Raises:
        CheckpointError: naming ``path``: `UNSAFE_PICKLE`, `NOT_A_CHECKPOINT` or the
            [`state_dict_mismatch`][geossl.weights.reading.state_dict_mismatch].

    Examples:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "run.ckpt"
        >>> _ = bad.write_bytes(b"not a checkpoint")
        >>> try:
        ...     with reading_checkpoint(bad):
        ...         torch.load(bad, weights_only=True)
        ... except CheckpointError as error:
        ...     print(error.problem.split(" (")[0])
        not a complete torch checkpoint
    """
    if path is None:
        yield
        return
    try:
        yield
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        # The safe unpickler refuses to import the code that would build an object; any other
        # unpickling error ("Unsupported operand", "invalid load key") is a damaged file.
        refused = "Unsupported global" in str(error)
        raise CheckpointError(path, UNSAFE_PICKLE if refused else NOT_A_CHECKPOINT) from error
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as error:
        if isinstance(error, RuntimeError) and str(error).startswith("Error(s) in loading"):
            raise CheckpointError(
                path, state_dict_mismatch(str(error)), _MISMATCH_ADVICE
            ) from error
        if _raised_by_torch_load(error):
            raise CheckpointError(path, NOT_A_CHECKPOINT) from error
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, its errors one line naming ``path``.

    Args:
        path: the checkpoint or weight file.

    Returns:
        What the file holds.

    Raises:
        CheckpointError: as [`reading_checkpoint`][geossl.weights.reading.reading_checkpoint].

    Examples:
        >>> import tempfile
        >>> saved = Path(tempfile.mkdtemp()) / "w.pth"
        >>> torch.save({"w": torch.zeros(2)}, saved)
        >>> load_checkpoint(saved)["w"].shape
        torch.Size([2])
    """
    with reading_checkpoint(path):
        return torch.load(path, map_location="cpu", weights_only=True)


def check_finetuned_checkpoint(saved: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a pretraining checkpoint where a fine-tuned model is needed (``geossl evaluate``).

    Args:
        saved: the loaded checkpoint.
        path: its file, named in the error.

    Raises:
        CheckpointError: if ``saved`` is a [`GeoSSLTask`][geossl.trainers.GeoSSLTask] checkpoint.

    Examples:
        >>> check_finetuned_checkpoint({"hyper_parameters": {"num_classes": 62}}, "ft.ckpt")
    """
    hp = saved.get("hyper_parameters")
    if isinstance(hp, Mapping) and "losses" in hp and "backbone" in hp:
        raise CheckpointError(
            Path(path),
            "a pretraining checkpoint (geossl pretrain), not a fine-tuned model",
            f"fine-tune it first (geossl finetune --task TASK --weights {path}) and evaluate "
            "that run's checkpoint, or score it frozen with geossl probe",
        )
