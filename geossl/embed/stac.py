"""STAC input of ``geossl embed``: the items of an ItemCollection (or a STAC API search) as rasters.

[`stac_rasters`][geossl.embed.stac.stac_rasters] reads the items (pystac), opens the chosen assets
of each one through GDAL ([`gdal_path`][geossl.embed.stac.gdal_path]: local paths, ``/vsicurl/``
for ``http(s)://``, ``/vsis3/`` for ``s3://``, ``/vsigs/``, ``/vsiaz/``...; relative hrefs resolved
against the ItemCollection's location) and writes one VRT per item into a temporary folder
([`stack_vrt`][geossl.embed.stac_vrt.stack_vrt]): the assets' bands stacked in the order given, so
``--assets red,green,blue`` makes a 3-band raster of three single-band assets and ``--assets
visual`` one of a 3-band asset. The rest of the pipeline reads these VRTs like any raster: one
raster per item, each in its own CRS, its rows carrying the item's id (the ``item_id`` column), its
datetime and the assets' hrefs (the ``source`` column).

``--stac`` takes a local ItemCollection (or Item) JSON file, the URL of one (``http(s)://...json``),
or a STAC API search URL (its ``/search`` endpoint with the search in the query string, e.g.
``.../search?collections=sentinel-2-l2a&bbox=2.2,48.8,2.5,48.9&datetime=2024-06&max_items=10``),
which needs the optional ``pystac-client`` (``pip install 'geossl[stac]'``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit
from urllib.request import url2pathname

from geossl.embed.stac_vrt import AssetLayer, read_layer, stack_vrt

if TYPE_CHECKING:
    import pystac

__all__ = [
    "StacRasters",
    "absolute_href",
    "gdal_path",
    "parse_assets",
    "read_items",
    "stac_rasters",
]

#: The query parameters of a STAC API search URL, as pystac-client's ``ItemSearch`` names them.
_SEARCH_PARAMETERS = {
    "bbox": "bbox",
    "datetime": "datetime",
    "collections": "collections",
    "ids": "ids",
    "intersects": "intersects",
    "query": "query",
    "filter": "filter",
    "filter-lang": "filter_lang",
    "filter_lang": "filter_lang",
    "sortby": "sortby",
    "limit": "limit",
    "max_items": "max_items",
}

#: Asset headers read at once (remote assets: one HTTP round trip each).
_HEADER_THREADS = 8

#: GDAL's virtual file systems of remote hrefs.
_REMOTE_PREFIXES = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/")


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in ("http", "https")


def absolute_href(href: str, base: str | None) -> str:
    """An asset href made absolute: a relative one is resolved against ``base``.

    Args:
        href: the asset's href.
        base: the folder of the ItemCollection file, or its URL; None leaves relative hrefs as
            they are.

    Returns:
        The href, absolute when ``base`` is given.

    Example:
        >>> absolute_href("b04.tif", "/data/items")
        '/data/items/b04.tif'
        >>> absolute_href("../b04.tif", "https://example.com/stac/items.json")
        'https://example.com/b04.tif'
        >>> absolute_href("s3://bucket/b04.tif", "/data/items")
        's3://bucket/b04.tif'
    """
    scheme = urlsplit(href).scheme
    # A one-letter scheme is a Windows drive ("C:\..."), not a URL.
    if base is None or len(scheme) > 1 or href.startswith("/") or os.path.isabs(href):
        return href
    if _is_url(base):
        return urljoin(base, href)
    return os.path.normpath(os.path.join(base, href))


def gdal_path(href: str) -> str:
    """The path GDAL opens for an absolute asset href.

    Args:
        href: a local path, a ``file://``, ``http(s)://``, ``ftp://``, ``s3://``, ``gs://`` or
            ``az://`` URL, or a GDAL ``/vsi...`` path.

    Returns:
        The GDAL path: ``/vsicurl/`` for http(s) and ftp, ``/vsis3/`` for S3, ``/vsigs/`` for
        Google Cloud Storage, ``/vsiaz/`` for Azure Blob Storage (``az://``), the local path for
        ``file://``; a local path or a ``/vsi...`` path unchanged.

    Raises:
        ValueError: for a URL scheme GDAL has no virtual file system for here.

    Example:
        >>> gdal_path("https://example.com/b04.tif")
        '/vsicurl/https://example.com/b04.tif'
        >>> gdal_path("s3://sentinel-cogs/tiles/B04.tif")
        '/vsis3/sentinel-cogs/tiles/B04.tif'
        >>> gdal_path("file:///data/b04.tif"), gdal_path("/data/b04.tif")
        ('/data/b04.tif', '/data/b04.tif')
    """
    parts = urlsplit(href)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https", "ftp"):
        return f"/vsicurl/{href}"
    if scheme in ("s3", "gs", "az"):
        return f"/vsi{scheme}/{parts.netloc}{parts.path}"
    if scheme == "file":
        return url2pathname(parts.path)
    if len(scheme) > 1:
        raise ValueError(
            f"{href}: no GDAL path for {scheme}:// hrefs; geossl reads local paths and http(s)://, "
            "ftp://, s3://, gs:// and az:// hrefs"
        )
    return href


def parse_assets(text: str) -> tuple[str, ...]:
    """``"red,green,blue"`` -> ``("red", "green", "blue")`` for ``--assets``.

    Example:
        >>> parse_assets("red, green,blue")
        ('red', 'green', 'blue')
    """
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ValueError(
            f"--assets takes asset names separated by commas, e.g. red,green,blue; got {text!r}"
        )
    return names


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_json(stac: str) -> Any:
    """The JSON document of a local or http(s) ItemCollection, with one-line errors."""
    if _is_url(stac):
        import pystac

        try:
            text = pystac.StacIO.default().read_text(stac)
        except Exception as err:  # urllib's errors, whatever the network does
            raise ValueError(f"--stac {stac}: cannot read it ({_first_line(err)})") from None
    else:
        path = Path(stac)
        if not path.is_file():
            raise FileNotFoundError(f"--stac {stac}: no such file")
        text = path.read_text(encoding="utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{stac}: not valid JSON ({err})") from None


def _parse_items(stac: str, document: Any) -> list[pystac.Item]:
    """The STAC items of an ItemCollection (or of a single Item) document."""
    import pystac

    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "Feature":
        features: Any = [document]
    elif kind == "FeatureCollection":
        features = document.get("features")
    else:
        features = None
    if not isinstance(features, list):
        raise ValueError(
            f"{stac}: not a STAC ItemCollection (a GeoJSON FeatureCollection of STAC items)"
        )
    items = []
    for k, feature in enumerate(features):
        item_id = feature.get("id", f"#{k}") if isinstance(feature, dict) else f"#{k}"
        properties = feature.get("properties") if isinstance(feature, dict) else None
        if isinstance(properties, dict) and properties.get("datetime") is None:
            raise _no_datetime(stac, item_id)
        try:
            items.append(pystac.Item.from_dict(feature, preserve_dict=False))
        except Exception as err:  # pystac raises STACError, KeyError, TypeError... on bad items
            raise ValueError(
                f"{stac}: item {item_id!r} is not a STAC item ({_first_line(err)})"
            ) from None
    return items


def _no_datetime(stac: str, item_id: str) -> ValueError:
    return ValueError(
        f"{stac}: item {item_id!r} has no datetime (an interval with start_datetime/end_datetime "
        "is not one time); give each item its acquisition time"
    )


def _search(url: str) -> list[pystac.Item]:
    """The items of a STAC API search URL, through pystac-client."""
    try:
        import pystac_client
    except ImportError:
        raise ValueError(
            f"--stac {url}: a STAC API search needs pystac-client (pip install 'geossl[stac]'), "
            "or save the search's ItemCollection as a JSON file and pass that"
        ) from None
    parts = urlsplit(url)
    if not parts.path.rstrip("/").endswith("/search"):
        raise ValueError(
            f"--stac {url}: a STAC API search URL ends with /search (the search in its query "
            "string); an ItemCollection URL ends with .json"
        )
    arguments: dict[str, Any] = {}
    for key, values in parse_qs(parts.query).items():
        if key not in _SEARCH_PARAMETERS:
            raise ValueError(
                f"--stac {url}: unknown search parameter {key!r}; "
                f"use {', '.join(sorted(_SEARCH_PARAMETERS))}"
            )
        value: Any = values[-1]
        if key in ("limit", "max_items"):
            value = int(value)
        elif key in ("intersects", "query", "filter") and value.lstrip().startswith("{"):
            value = json.loads(value)
        arguments[_SEARCH_PARAMETERS[key]] = value
    endpoint = urlunsplit(parts._replace(query="", fragment=""))
    try:
        return list(pystac_client.ItemSearch(endpoint, **arguments).items())
    except Exception as err:  # pystac-client's APIError, urllib's errors, the network's
        raise ValueError(f"--stac {url}: the STAC API search failed ({_first_line(err)})") from None


def read_items(stac: str | os.PathLike[str]) -> tuple[list[pystac.Item], str | None]:
    """The items behind ``--stac``, and the base that their relative hrefs are resolved against.

    Args:
        stac: an ItemCollection (or Item) JSON file or URL, or a STAC API search URL.

    Returns:
        ``(items, base)``: the items in the collection's order; the file's folder or URL.

    Raises:
        FileNotFoundError: for a file that does not exist.
        ValueError: for a file that is not JSON or not STAC, an item without datetime, a search
            without pystac-client; the message names the file (or URL) and the item.
    """
    text = os.fspath(stac)
    if _is_url(text) and not urlsplit(text).path.lower().endswith((".json", ".geojson")):
        items, base = _search(text), text
    else:
        items = _parse_items(text, _read_json(text))
        base = text if _is_url(text) else str(Path(text).resolve().parent)
    if not items:
        raise ValueError(f"{text}: the ItemCollection has no items")
    for item in items:
        if item.datetime is None:
            raise _no_datetime(text, item.id)
    return items, base


def _item_layers(
    stac: str, item: pystac.Item, assets: Sequence[str], base: str | None
) -> tuple[list[AssetLayer], list[str]]:
    """The headers of ``assets`` of ``item`` and their absolute hrefs."""
    from rasterio.errors import RasterioError

    layers, hrefs = [], []
    for name in assets:
        asset = item.assets.get(name)
        if asset is None:
            raise ValueError(
                f"{stac}: item {item.id!r} has no asset {name!r}; its assets: "
                f"{', '.join(item.assets) or 'none'}"
            )
        href = absolute_href(asset.href, base)
        path = gdal_path(href)
        if path.startswith(_REMOTE_PREFIXES):
            # Without it GDAL lists the asset's folder (an S3 LIST, HTTP index pages) and probes
            # sidecar files (.msk, .aux.xml, .ovr) on every open; a setting of the user's wins.
            os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
        try:
            layers.append(read_layer(name, path))
        except (RasterioError, ValueError) as err:
            raise ValueError(
                f"{stac}: item {item.id!r}, asset {name!r}: GDAL cannot read {path} as a "
                f"georeferenced raster ({_first_line(err)})"
            ) from None
        hrefs.append(href)
    return layers, hrefs


def _item_vrt(stac: str, item: pystac.Item, assets: Sequence[str], base: str | None) -> str:
    """The XML of the VRT stacking ``assets`` of ``item``."""
    layers, hrefs = _item_layers(stac, item, assets, base)
    moment = item.datetime
    assert moment is not None  # read_items refuses items without one
    if moment.tzinfo is None:  # STAC times are UTC (RFC 3339); pystac keeps a missing zone naive
        moment = moment.replace(tzinfo=UTC)
    try:
        return stack_vrt(
            layers,
            tags={"ACQUISITIONDATETIME": moment.astimezone(UTC).isoformat()},
            stac={"ITEM_ID": item.id, "SOURCE": ",".join(hrefs)},
        )
    except ValueError as err:
        raise ValueError(f"{stac}: item {item.id!r}: {err}") from None


class StacRasters:
    """The VRTs of a run's STAC items, in a temporary folder that lives until `close`.

    Use it as a context manager (``with stac_rasters(...) as paths:``), or keep it referenced for
    as long as the VRTs are read: the folder is also removed when it is garbage-collected.

    Args:
        folder: the temporary folder holding the VRTs.
        paths: the VRT files, one per item, in the items' order.
    """

    def __init__(self, folder: tempfile.TemporaryDirectory[str] | None, paths: list[Path]) -> None:
        self._folder = folder
        self.paths = paths

    def __enter__(self) -> list[Path]:
        return self.paths

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths)

    def close(self) -> None:
        """Remove the VRTs."""
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def _file_name(item_id: str, taken: set[str]) -> str:
    """A file name for the item's VRT: its id, with only safe characters, unique in the run."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._") or "item"
    name, k = stem, 1
    while name in taken:
        k += 1
        name = f"{stem}-{k}"
    taken.add(name)
    return f"{name}.vrt"


def stac_rasters(stac: str | os.PathLike[str] | None, assets: Sequence[str] | None) -> StacRasters:
    """One raster (a VRT of the chosen assets) per STAC item, for ``embed_rasters``'s inputs.

    Every asset of every item is opened (header only) first, so a missing asset or an href GDAL
    cannot read stops the run before anything is embedded, with a one-line error naming the item.

    Args:
        stac: an ItemCollection (or Item) JSON file or URL, or a STAC API search URL; None gives
            no rasters (``assets`` must then be None too).
        assets: the asset names, stacked in this order as the raster's bands.

    Returns:
        The [`StacRasters`][geossl.embed.stac.StacRasters]; its VRTs are named after the items.

    Raises:
        FileNotFoundError: for an ItemCollection file that does not exist.
        ValueError: for bad STAC, an item without datetime or without one of the assets, an href
            GDAL cannot open, assets in different CRSs; the message names the file and the item.

    Example:
        >>> import json, tempfile, numpy as np, rasterio
        >>> from rasterio.transform import from_origin
        >>> folder = Path(tempfile.mkdtemp())
        >>> with rasterio.open(folder / "visual.tif", "w", driver="GTiff", width=8, height=8,
        ...                    count=3, dtype="uint8", crs="EPSG:32631",
        ...                    transform=from_origin(500_000, 5_000_000, 10, 10)) as dst:
        ...     dst.write(np.zeros((3, 8, 8), np.uint8))
        >>> item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2A_31UDQ", "links": [],
        ...         "geometry": None, "properties": {"datetime": "2024-06-01T10:56:21Z"},
        ...         "assets": {"visual": {"href": "visual.tif"}}}
        >>> collection = {"type": "FeatureCollection", "features": [item]}
        >>> _ = (folder / "items.json").write_text(json.dumps(collection))
        >>> with stac_rasters(folder / "items.json", ["visual"]) as paths:
        ...     with rasterio.open(paths[0]) as raster:
        ...         print(paths[0].name, raster.count, raster.tags()["ACQUISITIONDATETIME"])
        S2A_31UDQ.vrt 3 2024-06-01T10:56:21+00:00
    """
    if stac is None:
        if assets is not None:
            raise ValueError("--assets picks the assets of --stac items; give --stac too")
        return StacRasters(None, [])
    text = os.fspath(stac)
    items, base = read_items(text)
    if not assets:
        raise ValueError(
            f"--stac {text}: choose the assets to read with --assets, e.g. --assets red,green,blue "
            f"(item {items[0].id!r} has {', '.join(items[0].assets) or 'no assets'})"
        )
    with ThreadPoolExecutor(min(_HEADER_THREADS, len(items))) as pool:
        vrts = list(pool.map(lambda item: _item_vrt(text, item, assets, base), items))
    folder = tempfile.TemporaryDirectory(prefix="geossl-stac-")
    taken: set[str] = set()
    paths = []
    for item, xml in zip(items, vrts, strict=True):
        path = Path(folder.name) / _file_name(item.id, taken)
        path.write_text(xml, encoding="utf-8")
        paths.append(path)
    return StacRasters(folder, paths)
