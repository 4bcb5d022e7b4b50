"""geossl: geography-aware self-supervised learning for satellite and aerial imagery."""

__version__ = "0.1.0"
