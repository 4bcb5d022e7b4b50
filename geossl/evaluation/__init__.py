"""Evaluation of pretrained backbones: feature extraction, the kNN and linear probes, reports."""

from geossl.evaluation.knn import embed_images, knn_accuracy, knn_predict_labels
from geossl.evaluation.linear import LinearProbeResult, linear_probe
from geossl.evaluation.probe import probe_features, run_probe
from geossl.evaluation.probe_result import ProbeResult, write_probe_result

__all__ = [
    "LinearProbeResult",
    "ProbeResult",
    "embed_images",
    "knn_accuracy",
    "knn_predict_labels",
    "linear_probe",
    "probe_features",
    "run_probe",
    "write_probe_result",
]
