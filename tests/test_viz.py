"""pcv.viz: colours, overlay with legend, heatmap with peaks, backprojection, training panel."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from pcv import viz
from pcv.config import InferenceConfig
from pcv.data import SyntheticPanoptic
from pcv.inference.postprocess import panoptic_inference
from pcv.inference.predictor import Prediction
from pcv.inference.segments import to_coco_panoptic
from pcv.viz.overlays import _inner_distance
from pcv.voting import VoteGrid

CATEGORIES = list(SyntheticPanoptic.label_space.categories)
COLOUR = {c["id"]: tuple(c["color"]) for c in CATEGORIES}
GRID = VoteGrid(((1, 1), (3, 1)))  # K = 17, a 9 x 9 field


def scene():
    """A 12 x 16 map: grass (id 1) with two discs (ids 2, 3), a square (4) and a void corner."""
    ids = np.ones((12, 16), np.int32)
    ids[2:5, 2:5] = 2
    ids[6:9, 3:6] = 3
    ids[2:6, 10:14] = 4
    ids[10:, 14:] = 0
    segments = [
        {"id": 1, "category_id": 11, "iscrowd": 0},
        {"id": 2, "category_id": 1, "iscrowd": 0},
        {"id": 3, "category_id": 1, "iscrowd": 0},
        {"id": 4, "category_id": 2, "iscrowd": 0},
    ]
    image = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return image, ids, segments


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_colorize_stuff_by_category_instances_distinct_void_black():
    _, ids, segments = scene()
    rgb = viz.colorize(ids, segments, CATEGORIES)
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == COLOUR[11]  # stuff: the category colour
    assert tuple(rgb[11, 15]) == (0, 0, 0)  # void
    instance_colours = {tuple(rgb[3, 3]), tuple(rgb[7, 4]), tuple(rgb[3, 11])}
    assert len(instance_colours) == 3  # two discs and a square: all different
    many = {viz.instance_colour(k) for k in range(20)}
    assert len(many) == 20
    with pytest.raises(ValueError, match=r"segment ids \[9\]"):
        viz.colorize(np.full((2, 2), 9), segments, CATEGORIES)
    with pytest.raises(ValueError, match="category_id 99"):
        viz.colorize(ids, [{"id": 1, "category_id": 99}], CATEGORIES)


def test_blend_leaves_void_as_the_image_and_marks_borders():
    image, ids, segments = scene()
    out = viz.blend(image, ids, segments, CATEGORIES, edges=False)
    np.testing.assert_array_equal(out[11, 15], image[11, 15])
    assert not np.array_equal(out[0, 0], image[0, 0])
    edged = viz.blend(image, ids, segments, CATEGORIES)
    assert (edged[viz.boundaries(ids)] == 255).all()
    with pytest.raises(ValueError, match="differ in size"):
        viz.blend(image, ids[:5], segments, CATEGORIES)


def test_overlay_legend_lists_the_classes_present():
    image, ids, segments = scene()
    fig = viz.overlay(image, ids, segments, CATEGORIES, title="t")
    assert isinstance(fig, Figure)
    assert sorted(legend_texts(fig)) == ["disc (2)", "grass", "square (1)"]
    array = viz.figure_to_array(fig)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3 and array.std() > 0


def test_heatmap_marks_the_valid_peaks_only():
    image = np.zeros((32, 48, 3), np.uint8)
    heat = np.zeros((8, 12), np.float32)
    heat[2, 3] = heat[5, 9] = 5.0
    fig = viz.heatmap(image, heat, peaks=[[2, 3], [5, 9], [0, 0]], valid=[True, True, False])
    ax = fig.axes[0]
    marks = [line.get_xydata()[0].tolist() for line in ax.get_lines()]
    # Map pixel (y, x) is drawn at the centre of its 4 x 4 image block.
    assert marks == [[14.0, 10.0], [38.0, 22.0]]
    assert [t.get_text() for t in ax.texts] == ["0", "1"]


def test_backprojection_mask_is_the_pixels_that_voted_for_the_region():
    h, w = 10, 12
    peak = (5, 6)
    bins = np.full((h, w), -1, np.int32)
    rng = np.random.default_rng(1)
    members = set()
    for y in range(h):
        for x in range(w):
            r = rng.random()
            if r < 0.5:  # votes for the peak
                b = GRID.bin_of_offset(np.array([peak[0] - y, peak[1] - x]))
                if b >= 0:
                    bins[y, x] = b
            elif r < 0.8:  # votes somewhere else
                bins[y, x] = rng.integers(0, GRID.num_bins)
    box = (5, 6, 5, 6)
    # The obvious reference: the voted cell of the pixel contains the peak.
    for y in range(h):
        for x in range(w):
            if bins[y, x] >= 0:
                cy, cx = GRID.centers[bins[y, x]]
                r = GRID.half_sizes[bins[y, x]]
                if abs(y + cy - peak[0]) <= r and abs(x + cx - peak[1]) <= r:
                    members.add((y, x))
    image = np.full((40, 48, 3), 128, np.uint8)
    fig = viz.backprojection(image, bins, box, peak, GRID)
    got = {tuple(p) for p in np.argwhere(fig.member_mask)}
    assert got == members and len(members) > 10
    ax = fig.axes[0]
    assert len(ax.collections[0].get_paths()) == GRID.num_bins  # one query cell per bin


def test_vote_bins_abstain_is_minus_one():
    logits = np.zeros((2, 3, GRID.num_bins + 1), np.float32)
    logits[0, 0, 4] = 5
    logits[1, 2, GRID.num_bins] = 5
    bins = viz.vote_bins(logits, GRID)
    assert bins[0, 0] == 4 and bins[1, 2] == -1
    with pytest.raises(ValueError, match="K \\+ 1 = 18"):
        viz.vote_bins(logits[..., :5], GRID)


def test_validation_panel_one_row_per_example():
    image, ids, segments = scene()
    example = {
        "image": np.zeros((16, 16, 3), np.uint8),
        "segment_ids": np.pad(ids[:, :16], ((0, 4), (0, 0))),
        "segments_info": segments,
    }
    rng = np.random.default_rng(2)
    thing_mask = SyntheticPanoptic.label_space.thing_mask
    result = panoptic_inference(
        rng.normal(size=(4, 4, 7)),
        rng.normal(size=(4, 4, GRID.num_bins + 1)),
        GRID,
        thing_mask,
        InferenceConfig(threshold=0.5, max_instances=4, min_stuff_area=0),
        output_size=(16, 16),
    )
    result = {k: np.asarray(v) for k, v in result.items()}
    labels = SyntheticPanoptic.label_space
    ids, segs = to_coco_panoptic(result, labels.category_ids, labels.thing_mask)
    prediction = Prediction(
        ids=ids,
        segments_info=segs,
        semantic=result["semantic"],
        instance=result["instance"],
        heatmap=result["heatmap"],
        peaks=result["peaks"],
        boxes=result["boxes"],
        instance_valid=result["instance_valid"],
        instance_score=result["instance_score"],
        scale=(4.0, 4.0),
        meta={},
    )
    one = viz.validation_panel([(example, prediction)], labels)
    two = viz.validation_panel([(example, prediction)] * 2, labels)
    assert one.dtype == np.uint8 and one.shape[1] == two.shape[1] and two.shape[0] > one.shape[0]
    assert viz.validation_panel([], SyntheticPanoptic.label_space).shape == (1, 1, 3)


def test_overlay_labels_each_instance_on_the_picture_with_its_score():
    image, ids, segments = scene()
    segments = [dict(s, isthing=s["category_id"] < 10) for s in segments]
    segments[1]["score"] = 0.873
    fig = viz.overlay(image, ids, segments, CATEGORIES)
    texts = {t.get_text(): t.get_position() for t in fig.axes[0].texts}
    assert sorted(texts) == ["disc", "disc 0.87", "square"]  # instances only, not grass
    for text, (x, y) in texts.items():
        segment = {"disc 0.87": 2, "disc": 3, "square": 4}[text]
        assert ids[int(y), int(x)] == segment  # written on the instance itself
    assert texts["disc 0.87"] == (3, 3)  # the centre of a 3 x 3 disc: deepest inside
    assert not viz.overlay(image, ids, segments, CATEGORIES, labels=False).axes[0].texts


def test_label_points_sit_inside_hollow_and_thin_instances():
    ids = np.zeros((20, 20), np.int32)
    ids[2:18, 2:18] = 1
    ids[5:15, 5:15] = 0  # a ring: its centre of mass is in the hole
    ids[19, :] = 2  # one pixel thick
    segments = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 1}, {"id": 3, "isthing": 1}]
    points = viz.label_points(ids, segments)
    assert [s["id"] for s, _ in points] == [1, 2]  # id 3 has no pixel
    for seg, (y, x) in points:
        assert ids[y, x] == seg["id"]
    depth = _inner_distance(ids == 1)
    assert depth.max() == 2 and depth[2, 2] == 1 and depth[3, 3] == 2 and depth[10, 10] == 0
