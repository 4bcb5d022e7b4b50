"""Evaluation of pretrained backbones: feature extraction and the kNN probe."""

from geossl.evaluation.knn import embed_images, knn_accuracy, knn_predict_labels

__all__ = ["embed_images", "knn_accuracy", "knn_predict_labels"]
