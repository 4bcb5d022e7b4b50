"""A malicious checkpoint for the safety tests: unpickling it would create a marker file."""

from pathlib import Path


class PicklePayload:
    """Unpickling this creates ``marker``: what a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)
