"""geossl.datasets."""
