"""One-line checkpoint errors that name the file: refused pickles, truncated files, mismatches."""

import errno
import io
import pickle
from pathlib import Path

import pytest
import timm
import torch

from geossl.errors import CheckpointError
from geossl.weights.reading import (
    NOT_A_CHECKPOINT,
    UNSAFE_PICKLE,
    check_finetuned_checkpoint,
    load_checkpoint,
    reading_checkpoint,
    state_dict_mismatch,
)
from tests.payload_helpers import PicklePayload


def test_a_pickle_payload_is_refused_without_the_unsafe_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": PicklePayload(marker)}, evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(evil)
    assert not marker.exists()
    assert caught.value.path == str(evil)
    assert caught.value.problem == UNSAFE_PICKLE
    message = str(caught.value)
    assert "\n" not in message
    # torch's message suggests weights_only=False and allow-listing the payload: never repeated.
    assert "weights_only" not in message
    assert "safe_globals" not in message


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut in half: no zip directory
        lambda data: data[:-10],
        lambda data: b"",
        lambda data: b"hello world" * 100,  # not a torch file: the unpickler's KeyError
        lambda data: b"not a checkpoint",  # an unpickling error that is not a refusal
    ],
)
def test_a_damaged_file_is_not_a_complete_checkpoint(tmp_path: Path, damage: object) -> None:
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(4096)}}, path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert caught.value.problem == NOT_A_CHECKPOINT
    assert str(caught.value).startswith(f"{path}: not a complete torch checkpoint")


def test_other_errors_of_the_block_pass_unchanged(tmp_path: Path) -> None:
    # The block may be a whole Trainer.fit: a KeyError of training is a bug, not a bad file.
    with pytest.raises(KeyError), reading_checkpoint(tmp_path / "run.ckpt"):
        raise KeyError("a bug")
    with pytest.raises(FileNotFoundError), reading_checkpoint(tmp_path / "missing.ckpt"):
        torch.load(tmp_path / "missing.ckpt", weights_only=True)
    with pytest.raises(pickle.UnpicklingError), reading_checkpoint(None):  # nothing to resume
        raise pickle.UnpicklingError("Weights only load failed")


class _FullDisk(io.BytesIO):
    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_is_not_a_bad_checkpoint(tmp_path: Path) -> None:
    # Trainer.fit(ckpt_path=...) also saves checkpoints: torch.save's errors are not the file's.
    with pytest.raises(OSError, match="No space left"), reading_checkpoint(tmp_path / "a.ckpt"):
        torch.save({"w": torch.zeros(4)}, _FullDisk())


def test_a_state_dict_of_another_architecture_is_summarised(tmp_path: Path) -> None:
    small = timm.create_model("resnet18", num_classes=0)
    large = timm.create_model("resnet50", num_classes=0)
    path = tmp_path / "r18.ckpt"
    with pytest.raises(CheckpointError) as caught, reading_checkpoint(path):
        large.load_state_dict(small.state_dict())
    message = str(caught.value)
    assert message.startswith(f"{path}: its tensors do not fit the ResNet: ")
    assert "missing (layer1.0.conv3.weight, layer1.0.bn3.weight, layer1.0.bn3.bias, ..." in message
    assert (
        "of another shape, file vs model (layer1.0.conv1.weight 64x64x3x3 vs 64x64x1x1, " in message
    )
    assert message.count("layer") <= 9  # three keys of each kind, not torch's hundreds
    assert len(message) < 700


def test_state_dict_mismatch_of_unexpected_keys() -> None:
    text = 'Error(s) in loading state_dict for Net:\n\tUnexpected key(s) in state_dict: "x", "y". '
    assert state_dict_mismatch(text) == "its tensors do not fit the Net: 2 unexpected (x, y)"


def test_a_pretraining_checkpoint_is_not_a_finetuned_model() -> None:
    saved = {"hyper_parameters": {"losses": {"tp": 1.0}, "backbone": "resnet18"}}
    with pytest.raises(CheckpointError, match=r"^p\.ckpt: a pretraining checkpoint .*finetune"):
        check_finetuned_checkpoint(saved, "p.ckpt")
    check_finetuned_checkpoint({"hyper_parameters": {"num_classes": 62}}, "ft.ckpt")
