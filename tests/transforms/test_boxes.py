from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
import torch
from torchvision.ops import box_iou, roi_align

from geossl.models import roi_features
from geossl.transforms import GeoSSLAugmentation, ViewParams, box_iou_batched, sample_scrl_boxes

# Geometry only: no colour, no blur (and mean 0 / std 1), so a view pixel holds its source value.
GEOMETRY_ONLY: dict[str, Any] = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}
IDENTITY_STATS: dict[str, Any] = {"mean": [0.0] * 3, "std": [1.0] * 3}


def coordinate_canvas(batch: int, height: int, width: int) -> torch.Tensor:
    """Band 0 holds the source column x / W, band 1 the row y / H, band 2 a constant."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    img = torch.stack([xs / width, ys / height, torch.full_like(xs, 0.5)])
    return img.expand(batch, 3, height, width).clone()


def two_views(
    batch: int, height: int, width: int, size: int, flip_p2: float = 1.0
) -> tuple[torch.Tensor, ViewParams, torch.Tensor, ViewParams]:
    canvas = coordinate_canvas(batch, height, width)
    aug1 = GeoSSLAugmentation(size=size, flip_p=0.5, **GEOMETRY_ONLY, **IDENTITY_STATS)
    aug2 = GeoSSLAugmentation(size=size, flip_p=flip_p2, **GEOMETRY_ONLY, **IDENTITY_STATS)
    view1, params1 = aug1(canvas, return_params=True)
    view2, params2 = aug2(canvas, return_params=True)
    return view1, params1, view2, params2


def manual_params(crops: Sequence[Sequence[float]], size: int, flipped: list[bool]) -> ViewParams:
    """ViewParams of axis-aligned crops (x0, y0, x1, y1 pixel centres) resized to size x size."""
    boxes = torch.tensor(crops, dtype=torch.float32)
    sx = (size - 1) / (boxes[:, 2] - boxes[:, 0])
    sy = (size - 1) / (boxes[:, 3] - boxes[:, 1])
    matrix = torch.zeros(len(crops), 3, 3)
    matrix[:, 0, 0], matrix[:, 0, 2] = sx, -sx * boxes[:, 0]
    matrix[:, 1, 1], matrix[:, 1, 2] = sy, -sy * boxes[:, 1]
    matrix[:, 2, 2] = 1.0
    flip = torch.tensor(flipped)
    matrix[flip, 0] = -matrix[flip, 0]
    matrix[flip, 0, 2] += size - 1
    return ViewParams(matrix, boxes, flip, (128, 128), (size, size))


# --- the geometry guarantee: both boxes of a pair read the same source region -----------------


def test_matched_boxes_read_the_same_source_pixels():
    torch.manual_seed(3)
    height, width, size = 96, 128, 64
    view1, params1, view2, params2 = two_views(8, height, width, size)
    flips1, flips2 = params1.flipped, params2.flipped
    assert flips2.all()  # view 2 is always flipped, view 1 sometimes: both cases are covered
    assert flips1.any()
    assert not flips1.all()

    boxes = sample_scrl_boxes(params1, params2, num_boxes=6, min_size=8)
    assert boxes.num_boxes > 20
    image = boxes.boxes1[:, 0].long()
    assert (~flips1[image]).any()  # boxes in images flipped in one view only

    scale = torch.tensor([width, height], dtype=torch.float32)
    # 1x1 RoIAlign (the SCRL setting) reads the box centre: same source point in both views.
    centre1 = roi_features(view1, boxes.boxes1, size)[:, :2] * scale  # [N, 2] source (x, y)
    centre2 = roi_features(view2, boxes.boxes2, size)[:, :2] * scale
    source_centre = (boxes.source_boxes[:, :2] + boxes.source_boxes[:, 2:]) / 2
    torch.testing.assert_close(centre1, source_centre, atol=0.02, rtol=0)
    torch.testing.assert_close(centre2, source_centre, atol=0.02, rtol=0)

    # 3x3 bins read the box extent too: in a flipped view the bins' columns run right to left.
    def source_bins(view: torch.Tensor, view_boxes: torch.Tensor, flips: torch.Tensor):
        bins = roi_align(view, view_boxes, 3, 1.0, -1, False)[:, :2]  # [N, 2, 3, 3]
        bins = torch.where(flips[image][:, None, None, None], bins.flip(-1), bins)
        return bins * scale[None, :, None, None]  # source (x, y) of each bin, source order

    bins1 = source_bins(view1, boxes.boxes1, flips1)
    bins2 = source_bins(view2, boxes.boxes2, flips2)
    torch.testing.assert_close(bins1, bins2, atol=0.02, rtol=0)
    lo, hi = boxes.source_boxes[:, :2], boxes.source_boxes[:, 2:]
    for row in range(3):
        for col in range(3):
            step = torch.tensor([col + 0.5, row + 0.5]) / 3
            expected = lo + (hi - lo) * step  # [N, 2] the bin's centre in the source
            torch.testing.assert_close(bins1[:, :, row, col], expected, atol=0.02, rtol=0)

    # Control: ignoring the flip (mirroring view 2's box back) reads elsewhere.
    naive = boxes.boxes2.clone()
    naive[:, [1, 3]] = (size - 1) - boxes.boxes2[:, [3, 1]]
    wrong = roi_features(view2, naive, size)[:, :2] * scale
    assert ((wrong - source_centre).abs().amax(dim=1) > 0.5).float().mean() > 0.9


def test_boxes_follow_flip_state_of_each_view():
    torch.manual_seed(4)
    _, params1, _, params2 = two_views(6, 64, 64, 48, flip_p2=0.0)
    boxes = sample_scrl_boxes(params1, params2, min_size=8)
    # view 2 is never flipped: its boxes are the source boxes scaled and shifted, same x order
    image = boxes.boxes2[:, 0].long()
    matrix = params2.transform[image]
    x1 = boxes.source_boxes[:, 0] * matrix[:, 0, 0] + matrix[:, 0, 2]
    torch.testing.assert_close(boxes.boxes2[:, 1], x1, atol=1e-3, rtol=0)


# --- the box rules ----------------------------------------------------------------------------


def test_box_rules_on_real_views():
    torch.manual_seed(0)
    size, min_size = 112, 16.0
    aug = GeoSSLAugmentation(size=size, **GEOMETRY_ONLY)
    x = torch.zeros(32, 3, 128, 160)
    _, params1 = aug(x, return_params=True)
    _, params2 = aug(x, return_params=True)
    boxes = sample_scrl_boxes(params1, params2, num_boxes=10, min_size=min_size)

    assert boxes.boxes1.shape == boxes.boxes2.shape == (boxes.num_boxes, 5)
    assert boxes.valid.shape == (32,)
    assert int(boxes.valid.sum()) == boxes.num_boxes
    assert int(boxes.valid.max()) <= 10
    assert boxes.num_boxes >= 32 * 5  # most images are usable and get several boxes
    image = boxes.boxes1[:, 0].long()
    assert torch.equal(image, boxes.boxes2[:, 0].long())
    assert torch.equal(torch.bincount(image, minlength=32), boxes.valid)
    assert bool((image.diff() >= 0).all())  # image-major rows
    assert bool((boxes.valid[~boxes.usable] == 0).all())

    # inside the intersection of the two crops, in source pixels
    inter = boxes.intersections[image]
    eps = 1e-3
    assert bool((boxes.source_boxes[:, :2] >= inter[:, :2] - eps).all())
    assert bool((boxes.source_boxes[:, 2:] <= inter[:, 2:] + eps).all())
    # sides >= min_size view pixels in both views, boxes inside both views
    for view_boxes in (boxes.boxes1, boxes.boxes2):
        sides = view_boxes[:, 3:] - view_boxes[:, 1:3]
        assert bool((sides >= min_size - eps).all())
        assert bool((view_boxes[:, 1:] >= 0).all())
        assert bool((view_boxes[:, 1:] <= size - 1).all())
    # kept boxes of one image overlap with IoU < 0.5 (in source and in both views)
    for coords in (boxes.source_boxes, boxes.boxes1[:, 1:], boxes.boxes2[:, 1:]):
        iou = box_iou(coords, coords)
        same_image = image[:, None] == image[None, :]
        off_diagonal = ~torch.eye(len(image), dtype=torch.bool)
        assert float(iou[same_image & off_diagonal].max()) < 0.5


def test_too_small_or_disjoint_intersections_give_no_boxes():
    size, min_size = 33, 8.0  # 32 view pixels per crop side; min_size 8
    crops1 = [[0, 0, 64, 64], [0, 0, 30, 30], [0, 0, 64, 64], [0, 0, 64, 64]]
    # image 0: identical crops; 1: disjoint; 2: overlap of 16 source px = exactly 8 view px
    # (not > min_size: skipped); 3: overlap of 18 source px = 9 view px (usable)
    crops2 = [[0, 0, 64, 64], [40, 40, 70, 70], [48, 0, 112, 64], [46, 0, 110, 64]]
    params1 = manual_params(crops1, size, [False, False, True, False])
    params2 = manual_params(crops2, size, [True, False, False, False])
    boxes = sample_scrl_boxes(params1, params2, min_size=min_size)
    assert boxes.usable.tolist() == [True, False, False, True]
    assert boxes.valid[1] == 0
    assert boxes.valid[2] == 0
    assert boxes.valid[0] > 1
    assert boxes.valid[3] >= 1
    assert set(boxes.boxes1[:, 0].long().tolist()) == {0, 3}


def test_sizes_are_measured_at_the_coarser_view():
    size, min_size = 65, 8.0
    params1 = manual_params([[0, 0, 64, 64]], size, [False])  # 1 view px per source px
    params2 = manual_params([[16, 16, 32, 32]], size, [False])  # 4 view px per source px
    boxes = sample_scrl_boxes(params1, params2, num_boxes=50, max_tries=200, min_size=min_size)
    sides1 = boxes.boxes1[:, 3:] - boxes.boxes1[:, 1:3]
    sides2 = boxes.boxes2[:, 3:] - boxes.boxes2[:, 1:3]
    torch.testing.assert_close(sides2, 4 * sides1)
    assert float(sides1.min()) >= min_size - 1e-4  # the coarse view holds the minimum
    assert float(sides1.max()) <= 16 + 1e-4  # the intersection is 16 px wide at the coarse scale
    # an intersection of 8 coarse pixels is not enough although the fine view sees 32
    small = manual_params([[20, 20, 28, 28]], size, [False])
    assert sample_scrl_boxes(params1, small, min_size=min_size).num_boxes == 0


def test_num_boxes_caps_and_iou_threshold_prunes():
    params = manual_params([[0, 0, 99, 99]] * 4, 100, [False] * 4)
    g = torch.Generator().manual_seed(0)
    every = sample_scrl_boxes(params, params, num_boxes=7, min_size=10, iou_threshold=1.0)
    assert every.valid.tolist() == [7] * 4  # IoU < 1 always holds for random boxes: the cap binds
    strict = sample_scrl_boxes(params, params, num_boxes=50, min_size=10, generator=g)
    loose = sample_scrl_boxes(
        params, params, num_boxes=50, min_size=10, iou_threshold=0.9, generator=g
    )
    assert int(strict.valid.sum()) < int(loose.valid.sum())


def test_generator_makes_it_reproducible():
    params1 = manual_params([[0, 0, 80, 80], [10, 10, 99, 99]], 64, [False, True])
    params2 = manual_params([[5, 5, 99, 90], [0, 0, 70, 99]], 64, [True, False])
    a = sample_scrl_boxes(params1, params2, generator=torch.Generator().manual_seed(1), min_size=8)
    b = sample_scrl_boxes(params1, params2, generator=torch.Generator().manual_seed(1), min_size=8)
    c = sample_scrl_boxes(params1, params2, generator=torch.Generator().manual_seed(2), min_size=8)
    torch.testing.assert_close(a.boxes1, b.boxes1)
    assert a.boxes1.shape != c.boxes1.shape or not torch.allclose(a.boxes1, c.boxes1)


def test_box_iou_batched_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(3, 9, 2, generator=g) * 50
    boxes = torch.cat([lo, lo + 1 + torch.rand(3, 9, 2, generator=g) * 40], dim=2)
    iou = box_iou_batched(boxes)
    for b in range(3):
        torch.testing.assert_close(iou[b], box_iou(boxes[b], boxes[b]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_boxes": 0}, "num_boxes"),
        ({"min_size": 0.0}, "min_size"),
        ({"min_size": float("nan")}, "min_size"),
        ({"max_tries": 0}, "max_tries"),
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
    ],
)
def test_invalid_arguments(kwargs, match):
    params = manual_params([[0, 0, 50, 50]], 32, [False])
    with pytest.raises(ValueError, match=match):
        sample_scrl_boxes(params, params, **kwargs)


def test_mismatched_views_are_refused():
    one = manual_params([[0, 0, 50, 50]], 32, [False])
    two = manual_params([[0, 0, 50, 50]] * 2, 32, [False, False])
    with pytest.raises(ValueError, match=r"\[B, 3, 3\]"):
        sample_scrl_boxes(one, two)
    other_source = ViewParams(one.transform, one.crop_boxes, one.flipped, (64, 64), (32, 32))
    with pytest.raises(ValueError, match="same source canvas"):
        sample_scrl_boxes(one, other_source)
    rotated = one.transform.clone()
    rotated[:, 0, 1] = 0.1
    sheared = ViewParams(rotated, one.crop_boxes, one.flipped, (128, 128), (32, 32))
    with pytest.raises(ValueError, match="axis-aligned"):
        sample_scrl_boxes(one, sheared)


def test_axis_aligned_views_are_not_read_back():
    # Views flagged axis-aligned by construction (GeoSSLAugmentation's) skip the check that reads
    # the matrices on the host; on the meta device a read would raise.
    one = manual_params([[0, 0, 50, 50]], 32, [False])
    on_meta = ViewParams(
        one.transform.to("meta"),
        one.crop_boxes.to("meta"),
        one.flipped.to("meta"),
        (128, 128),
        (32, 32),
    )
    with pytest.raises(RuntimeError, match=r"item\(\) cannot be called on meta"):
        sample_scrl_boxes(on_meta, on_meta)
    flagged = replace(on_meta, axis_aligned=True)
    # Past the check: the box selection (a data-dependent count of boxes) is the one read left.
    with pytest.raises(NotImplementedError, match="nonzero"):
        sample_scrl_boxes(flagged, flagged)
