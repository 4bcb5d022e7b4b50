r"""Spatially matched box pairs for SCRL, sampled on the device for a whole batch at once.

SCRL (Roh et al., "Spatially Consistent Representation Learning", CVPR 2021,
https://arxiv.org/abs/2103.06122) compares RoI features of the *same* region of an image seen in
two augmented views. [`sample_scrl_boxes`][geossl.transforms.boxes.sample_scrl_boxes] finds such
regions from the views' geometry ([`ViewParams`][geossl.transforms.ViewParams]): the crop windows of
the two views in source pixels, their intersection, random boxes inside it, and each box mapped into
both views (scale, offset and horizontal flip, through the views' 3x3 matrices).

Coordinates follow [`ViewParams`][geossl.transforms.ViewParams]: pixel centres, ``x`` the column.
These are exactly the coordinates of ``torchvision.ops.roi_align(..., aligned=False)`` (a box
coordinate ``u`` reads the pixel whose centre is ``u``), the setting SCRL uses.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from geossl.utils.checks import check_at_least, check_range

from .augmentation import ViewParams

__all__ = ["ScrlBoxes", "box_iou_batched", "sample_scrl_boxes"]


@dataclass(frozen=True)
class ScrlBoxes:
    """Matched boxes of a batch of view pairs, ready for ``torchvision.ops.roi_align``.

    Boxes of one image are consecutive rows, images in batch order, and the ``k``-th row of
    ``boxes1`` and of ``boxes2`` is the same source region.

    Attributes:
        boxes1: ``[N, 5]`` float32 ``(batch index, x1, y1, x2, y2)`` in view-1 pixels.
        boxes2: ``[N, 5]`` float32, the same regions in view-2 pixels (same batch indices).
        valid: ``[B]`` int64 number of boxes of each image (0 for a skipped image);
            ``valid.sum() == N``.
        source_boxes: ``[N, 4]`` float32 ``(x1, y1, x2, y2)`` of the regions in source pixels.
        intersections: ``[B, 4]`` float32 intersection of the two crop windows in source pixels
            (``x1 > x2`` or ``y1 > y2`` when the crops are disjoint).
        usable: ``[B]`` bool, whether the intersection was large enough to sample boxes in.
    """

    boxes1: Tensor
    boxes2: Tensor
    valid: Tensor
    source_boxes: Tensor
    intersections: Tensor
    usable: Tensor

    @property
    def num_boxes(self) -> int:
        """Total number of box pairs ``N`` in the batch."""
        return int(self.boxes1.shape[0])


def box_iou_batched(boxes: Tensor) -> Tensor:
    """Pairwise IoU of the boxes of every image of a batch.

    Args:
        boxes: ``[B, T, 4]`` ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2``.

    Returns:
        ``[B, T, T]`` IoU in ``[0, 1]`` (0 where both boxes are empty).
    """
    lo = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])  # [B, T, T, 2]
    hi = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])  # [B, T, T, 2]
    inter = (hi - lo).clamp(min=0).prod(dim=-1)  # [B, T, T]
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(dim=-1)  # [B, T]
    union = area[:, :, None] + area[:, None, :] - inter  # [B, T, T]
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(boxes.dtype).tiny), 0.0)


def _check_pair(params1: ViewParams, params2: ViewParams) -> None:
    """Check that two `ViewParams` describe two views of the same source batch.

    Args:
        params1: geometry of view 1.
        params2: geometry of view 2.

    Raises:
        ValueError: if batch sizes, source sizes or devices differ, or a view is rotated/sheared
            (read from the matrices unless both geometries are ``axis_aligned`` by construction).
    """
    t1, t2 = params1.transform, params2.transform
    if t1.ndim != 3 or t1.shape[1:] != (3, 3) or t2.shape != t1.shape:
        raise ValueError(
            f"params1.transform and params2.transform must both be [B, 3, 3], got "
            f"{tuple(t1.shape)} and {tuple(t2.shape)}"
        )
    if params1.source_size != params2.source_size:
        raise ValueError(
            "params1 and params2 must describe views of the same source canvas, got source "
            f"sizes {params1.source_size} and {params2.source_size}"
        )
    if t1.device != t2.device:
        raise ValueError(f"params1 and params2 are on {t1.device} and {t2.device}")
    if params1.axis_aligned and params2.axis_aligned:
        return  # by construction: reading the matrices would be a host sync every step
    off_diagonal = torch.cat([t1[:, :2, :2], t2[:, :2, :2]]).flip(-1).diagonal(dim1=-2, dim2=-1)
    if bool((off_diagonal.abs() > 1e-6).any()):
        raise ValueError("params1/params2: SCRL boxes need axis-aligned views (crop, scale, flip)")


@torch.no_grad()
def sample_scrl_boxes(
    params1: ViewParams,
    params2: ViewParams,
    num_boxes: int = 10,
    min_size: float = 32.0,
    max_tries: int = 50,
    iou_threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> ScrlBoxes:
    r"""Sample SCRL's spatially matched box pairs for a batch of two-view pairs.

    ``params1`` and ``params2`` describe two augmentations of the *same* source images (e.g. the
    ``"query"`` and ``"same"`` views of [`GeoSSLTask`][geossl.trainers.GeoSSLTask]). For each image
    ``b``, following SCRL's box generator (``grid_based_box_gen: True``, kakaobrain/scrl
    ``models/box_generator.py``):

    1. Intersection $I_b$ of the two crop windows in source pixels. With $s_k$ the
       view-per-source scale of view $k$ along an axis (from the 3x3 matrix), sizes are
       measured at the *coarser* view's scale $s = \min(s_1, s_2)$: the side
       $S = s\,|I_b|$. The image is skipped (no boxes) when $S \le$ ``min_size`` on
       either axis.
    2. ``max_tries`` candidates, each drawn on a random grid (per axis): a number of cells
       $n \sim U\{1, \dots, \lfloor S / m \rfloor\}$ ($m$ = ``min_size``), a cell
       $i \sim U\{0, \dots, n - 1\}$ of side $c = S / n \ge m$, a box side
       $w \sim U[m, c]$ and its position uniformly inside the cell; converted to source
       pixels by dividing by $s$. Every box lies inside $I_b$ and its sides are
       $\ge m$ pixels in both views.
    3. Greedy selection in draw order: a candidate is kept when fewer than ``num_boxes`` are kept
       and its IoU with every kept box is $<$ ``iou_threshold`` (IoU is the same in source
       and in both views: per-axis scales, offsets and flips preserve it).
    4. The kept boxes are mapped into both views through their matrices (flips swap ``x1`` and
       ``x2``), so ``roi_align`` at ``boxes1[k]`` in view 1 and at ``boxes2[k]`` in view 2 reads
       the same source region.

    Everything is batched: one ``[B, T, T]`` IoU matrix and a loop over the ``T = max_tries``
    draw positions (not over images or boxes).

    Differences from the reference code, on purpose: sizes are continuous (no integer rounding);
    the ``max_tries`` candidates are shared by all the boxes of an image (the reference gives every
    box 50 tries and keeps the last try even when it overlaps; geossl drops it, so an image may
    yield fewer than ``num_boxes`` boxes, never overlapping ones).

    Args:
        params1: geometry of view 1 (``transform`` ``[B, 3, 3]``, ``crop_boxes`` ``[B, 4]``).
        params2: geometry of view 2 of the same source images.
        num_boxes: most boxes per image (10, SCRL's ``num_patches_per_image``).
        min_size: smallest box side and the intersection side to beat, in view pixels at the
            coarser view's scale (32, SCRL's ``min_size`` at 224 px: one C5 cell of a ResNet).
        max_tries: candidates drawn per image (50, SCRL's tries).
        iou_threshold: a kept box overlaps every earlier kept box of its image with IoU below
            this (0.5, SCRL's ``iou_threshold``).
        generator: random generator on the parameters' device; torch's global one if ``None``.

    Returns:
        The matched boxes ([`ScrlBoxes`][geossl.transforms.boxes.ScrlBoxes]).

    Raises:
        ValueError: if an argument is out of range or the two geometries do not fit together.
    """
    _check_box_arguments(num_boxes, min_size, max_tries, iou_threshold)
    _check_pair(params1, params2)
    device = params1.transform.device
    inter, scale = _intersection(params1, params2)
    side = (inter[:, 2:] - inter[:, :2]) * scale  # [B, 2] coarse-view px, < 0 when disjoint
    usable = (side > min_size).all(dim=1)  # [B]
    lo, hi = _grid_candidates(inter, scale, side, min_size, max_tries, generator, device)
    candidates = torch.cat([lo, hi], dim=2)  # [B, T, 4] source (x1, y1, x2, y2)
    keep, count = _greedy_keep(candidates, usable, num_boxes, iou_threshold, device)
    image, draw, boxes1, boxes2 = _kept_view_boxes(params1, params2, lo, hi, keep)
    return ScrlBoxes(
        boxes1=boxes1,
        boxes2=boxes2,
        valid=count,
        source_boxes=candidates[image, draw],
        intersections=inter,
        usable=usable,
    )


def _check_box_arguments(
    num_boxes: int, min_size: float, max_tries: int, iou_threshold: float
) -> None:
    """Refuse out-of-range arguments of `sample_scrl_boxes`."""
    check_at_least("num_boxes", num_boxes, 1)
    # Not check_positive: it would let an infinite min_size through.
    if not (math.isfinite(min_size) and min_size > 0):
        raise ValueError(f"min_size must be > 0, got {min_size}")
    check_at_least("max_tries", max_tries, 1)
    check_range("iou_threshold", iou_threshold, low=0, high=1, low_open=True)


def _intersection(params1: ViewParams, params2: ViewParams) -> tuple[Tensor, Tensor]:
    """Step 1: the crop windows' intersection and the coarser view's per-axis scale.

    Returns:
        ``[B, 4]`` source ``(x1, y1, x2, y2)`` and ``[B, 2]`` view px per source px.
    """
    m1, m2 = params1.transform.float(), params2.transform.float()  # [B, 3, 3]
    c1, c2 = params1.crop_boxes.float(), params2.crop_boxes.float()  # [B, 4]
    inter = torch.cat(
        [torch.maximum(c1[:, :2], c2[:, :2]), torch.minimum(c1[:, 2:], c2[:, 2:])], dim=1
    )  # [B, 4] source (x1, y1, x2, y2)
    scale1 = torch.stack([m1[:, 0, 0], m1[:, 1, 1]], dim=1).abs()  # [B, 2] view px / source px
    scale2 = torch.stack([m2[:, 0, 0], m2[:, 1, 1]], dim=1).abs()  # [B, 2]
    return inter, torch.minimum(scale1, scale2)


def _grid_candidates(
    inter: Tensor,
    scale: Tensor,
    side: Tensor,
    min_size: float,
    max_tries: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Step 2: grid-based candidates, all images and tries at once.

    Returns:
        ``[B, T, 2]`` source ``(x1, y1)`` and ``(x2, y2)`` of the ``T = max_tries`` candidates.
    """
    b, t = inter.shape[0], max_tries
    side_c = side.clamp(min=min_size)[:, None, :]  # [B, 1, 2], finite for skipped images too
    max_cells = torch.floor(side_c / min_size).clamp(min=1)  # [B, 1, 2]
    u = torch.rand((4, b, t, 2), generator=generator, device=device)  # [4, B, T, 2]
    cells = torch.minimum(1 + torch.floor(u[0] * max_cells), max_cells)  # [B, T, 2] in 1..n
    cell = side_c / cells  # [B, T, 2] cell side >= min_size
    index = torch.minimum(torch.floor(u[1] * cells), cells - 1)  # [B, T, 2] in 0..n-1
    size = min_size + u[2] * (cell - min_size)  # [B, T, 2] box side in [m, cell]
    offset = index * cell + u[3] * (cell - size)  # [B, T, 2] from the intersection's corner
    lo = inter[:, None, :2] + offset / scale[:, None, :]  # [B, T, 2] source px
    hi = torch.minimum(lo + size / scale[:, None, :], inter[:, None, 2:])  # [B, T, 2]
    return lo, hi


def _greedy_keep(
    candidates: Tensor,
    usable: Tensor,
    num_boxes: int,
    iou_threshold: float,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Step 3: greedy selection over the draw order, vectorised over the batch.

    Returns:
        ``[B, T]`` kept mask and ``[B]`` number of kept boxes per image.
    """
    b, t = candidates.shape[:2]
    clash = box_iou_batched(candidates) >= iou_threshold  # [B, T, T]
    keep = torch.zeros((b, t), dtype=torch.bool, device=device)  # [B, T]
    count = torch.zeros(b, dtype=torch.long, device=device)  # [B]
    for j in range(t):
        blocked = (clash[:, j] & keep).any(dim=1)  # [B] overlaps an earlier kept box
        take = usable & (count < num_boxes) & ~blocked  # [B]
        keep[:, j] = take
        count += take
    return keep, count


def _kept_view_boxes(
    params1: ViewParams, params2: ViewParams, lo: Tensor, hi: Tensor, keep: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Step 4: map into both views and gather the kept boxes (image-major, draw order).

    Returns:
        The ``[N]`` image and draw index of each kept box, and its ``[N, 5]`` roi_align boxes
        ``(b, x1, y1, x2, y2)`` in view 1 and in view 2.
    """
    # N depends on the data: finding the kept positions is the one host sync of SCRL; the
    # gathers reuse them.
    image, draw = keep.nonzero(as_tuple=True)  # [N] each
    batch_column = image.to(torch.float32)[:, None]  # [N, 1]
    boxes1 = torch.cat([batch_column, _to_view(params1, lo, hi)[image, draw]], dim=1)  # [N, 5]
    boxes2 = torch.cat([batch_column, _to_view(params2, lo, hi)[image, draw]], dim=1)  # [N, 5]
    return image, draw, boxes1, boxes2


def _to_view(params: ViewParams, lo: Tensor, hi: Tensor) -> Tensor:
    """Map source boxes into a view's pixels, clipped to the view.

    Args:
        params: the view's geometry.
        lo: ``[B, T, 2]`` source ``(x1, y1)``.
        hi: ``[B, T, 2]`` source ``(x2, y2)``.

    Returns:
        ``[B, T, 4]`` view ``(x1, y1, x2, y2)`` (``x1 <= x2`` also for flipped views).
    """
    b, t = lo.shape[:2]
    corners = torch.stack([lo, hi], dim=2).reshape(b, 2 * t, 2)  # [B, 2T, 2]
    mapped = params.map_points(corners).reshape(b, t, 2, 2)  # [B, T, corner, xy]
    view_h, view_w = params.view_size
    top = torch.tensor([view_w - 1.0, view_h - 1.0], device=lo.device)  # last pixel centre
    v_lo = torch.minimum(mapped.amin(dim=2).clamp(min=0), top)  # [B, T, 2]
    v_hi = torch.minimum(mapped.amax(dim=2).clamp(min=0), top)  # [B, T, 2]
    return torch.cat([v_lo, v_hi], dim=2)
