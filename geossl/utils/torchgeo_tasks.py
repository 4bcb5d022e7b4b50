"""torchgeo's Lightning tasks under either name: ``torchgeo.tasks`` (0.9+) or ``torchgeo.trainers``.

torchgeo 0.9 renamed ``torchgeo.trainers`` to ``torchgeo.tasks`` and keeps the old name as a
deprecated alias. geossl imports the tasks from here only, so that one place follows the rename:
the new name when it exists, else the old one (torchgeo 0.8, which ``pyproject.toml`` pins until
geossl has been run against 0.9+).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy runs against the pinned torchgeo 0.8
    from torchgeo.trainers import (
        ClassificationTask,
        MoCoTask,
        ObjectDetectionTask,
        SemanticSegmentationTask,
    )
    from torchgeo.trainers.detection import BACKBONE_LAT_DIM_MAP
    from torchgeo.trainers.utils import GeneralizedRCNNTransformNoOp
else:
    try:  # torchgeo >= 0.9
        from torchgeo.tasks import (
            ClassificationTask,
            MoCoTask,
            ObjectDetectionTask,
            SemanticSegmentationTask,
        )
        from torchgeo.tasks.detection import BACKBONE_LAT_DIM_MAP
        from torchgeo.tasks.utils import GeneralizedRCNNTransformNoOp
    except ImportError:  # torchgeo 0.8
        from torchgeo.trainers import (
            ClassificationTask,
            MoCoTask,
            ObjectDetectionTask,
            SemanticSegmentationTask,
        )
        from torchgeo.trainers.detection import BACKBONE_LAT_DIM_MAP
        from torchgeo.trainers.utils import GeneralizedRCNNTransformNoOp

__all__ = [
    "BACKBONE_LAT_DIM_MAP",
    "ClassificationTask",
    "GeneralizedRCNNTransformNoOp",
    "MoCoTask",
    "ObjectDetectionTask",
    "SemanticSegmentationTask",
]
