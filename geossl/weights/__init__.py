"""geossl.weights: reading, loading, resolving and exporting pretrained backbone weights.

One home for weights: [`read_weights`][geossl.weights.readers.read_weights] reads any supported file
into a timm state dict and a [`WeightsMeta`][geossl.weights.meta.WeightsMeta];
[`load_state_dict_strict`][geossl.weights.loading.load_state_dict_strict] is the one strict loader;
[`resolve_init_weights`][geossl.weights.resolve.resolve_init_weights] is the one resolver of
``random`` / ``imagenet`` / torchgeo names / files;
[`GeoSSLWeights`][geossl.weights.hub.GeoSSLWeights] and [`resnet18`][geossl.weights.hub.resnet18] /
[`resnet50`][geossl.weights.hub.resnet50] mirror torchgeo's API;
[`export_weights`][geossl.weights.export.export_weights] writes a checkpoint's backbone for torchgeo
and timm.

Example:
    >>> from geossl.weights import resolve_init_weights
    >>> init = resolve_init_weights("random", backbone="resnet18", in_chans=4)
    >>> init.kind, init.backbone, init.in_chans, init.state_dict is None
    ('random', 'resnet18', 4, True)
"""

from .checkpoint import pretrain_method
from .export import ExportedWeights, LoadedBackbone, export_weights, load_backbone
from .hub import GeoSSLWeights, LocalWeights, LocalWeightsEnum, resnet18, resnet50
from .loading import (
    check_backbone_weights,
    check_state_dict,
    classifier_prefixes,
    load_state_dict_strict,
    state_dict_bytes,
)
from .meta import WeightsMeta, build_transforms
from .readers import read_weights
from .resolve import (
    InitWeights,
    LoadedInitWeights,
    adapt_first_conv,
    load_init_weights,
    resolve_init_weights,
)

__all__ = [
    "ExportedWeights",
    "GeoSSLWeights",
    "InitWeights",
    "LoadedBackbone",
    "LoadedInitWeights",
    "LocalWeights",
    "LocalWeightsEnum",
    "WeightsMeta",
    "adapt_first_conv",
    "build_transforms",
    "check_backbone_weights",
    "check_state_dict",
    "classifier_prefixes",
    "export_weights",
    "load_backbone",
    "load_init_weights",
    "load_state_dict_strict",
    "pretrain_method",
    "read_weights",
    "resnet18",
    "resnet50",
    "resolve_init_weights",
    "state_dict_bytes",
]
