"""The custom recipe sized from dataset statistics: on datasets unlike the demo, and from the command line."""

import numpy as np
import pytest

from pcv import cli
from pcv.config import Config, load, override
from pcv.data import write_coco_panoptic
from pcv.data.stats import DatasetStats
from pcv.data.synthetic import CATEGORIES, SyntheticConfig, SyntheticPanoptic
from pcv.training import recipe
from pcv.voting import VoteGrid

from test_coco_panoptic import custom


def stats_of(sizes, extents, n=None, stuff_area_rel=0.2, per_image=5, categories=CATEGORIES):
    """Statistics of a made-up dataset: images of ``sizes`` (cycled), square instances of ``extents`` (cycled)."""
    stats = DatasetStats(categories)
    things = [c["id"] for c in categories if c["isthing"]]
    stuff = [c["id"] for c in categories if not c["isthing"]]
    n = n or len(sizes)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        segs = [{"category_id": stuff[0], "area": int(stuff_area_rel * h * w), "bbox": [0, 0, w, h]}]
        for j in range(per_image):
            e = extents[(i * per_image + j) % len(extents)]
            segs.append({"category_id": things[j % len(things)], "area": e * e, "bbox": [0, 0, e, e], "iscrowd": 0})
        stats.add(h, w, segs)
    return stats.result()


def chosen(stats) -> dict:
    choices = recipe.choose(stats)
    config = override(Config(), {"data.name": "panoptic", "data.data_dir": "/nowhere"})
    config = override(config, {field: value for field, value, _ in choices})  # every choice is a valid config
    return {field: value for field, value, _ in choices} | {"config": config}


@pytest.mark.parametrize("side", [160, 352, 640])
def test_images_of_one_size_are_fit_and_the_field_spans_the_large_instances(side):
    extents = list(range(side // 20, side // 3))
    got = chosen(stats_of([(side, side)], extents, n=1000))
    assert got["data.image_size"] == (-(-side // 32) * 32,) * 2 and got["data.eval_short_side"] == 0
    p95 = np.percentile(extents, 95)
    grid = VoteGrid(got["grid"])
    assert 4 * grid.diameter >= p95
    smaller = [g for g in recipe.GRIDS if VoteGrid(g).diameter < grid.diameter]
    assert all(4 * VoteGrid(g).diameter < p95 for g in smaller)  # the smallest that does
    assert got["model.backbone"] == ("small" if side <= 256 else "resnet50")
    assert got["data.calibration_images"] == 50 and got["config"].data.calibration_images == 50


def test_photos_of_many_sizes_are_resized_by_their_shorter_side():
    sizes = [(480, 640), (427, 640), (640, 480), (500, 375), (360, 640)]
    got = chosen(stats_of(sizes, [8, 30, 60, 120, 300], n=5000))
    assert got["data.base_size"] == 427 and got["data.eval_short_side"] == 427  # the median shorter side
    assert got["data.image_size"] == (448, 448)  # crops: the shorter side rounded up to 32, at most 512
    assert got["data.eval_max_size"] == 640  # the median aspect, 640 / 427
    assert VoteGrid(got["grid"]).diameter * 4 >= 300 * 427 / 427
    assert got["steps"] == 3600  # 12 passes over the 4800 images not held out, at 16 per step
    assert got["config"].data.eval_max_size == 640


def test_small_and_large_datasets_and_objects():
    tiny = chosen(stats_of([(96, 128)], [4, 5, 6], n=120, per_image=30))
    assert tiny["grid"] == recipe.GRIDS[0] and tiny["data.calibration_images"] == 0
    assert tiny["steps"] == 700 and tiny["inference.max_instances"] == 45  # 1.5 x 30
    assert tiny["inference.threshold"] == 1.0
    huge = chosen(stats_of([(800, 800)], [700], n=200_000, per_image=1, stuff_area_rel=0.001))
    assert huge["grid"] == recipe.GRIDS[-1] and huge["steps"] == 20_000 and huge["data.calibration_images"] == 200
    assert huge["inference.threshold"] == 4.0 and huge["inference.min_stuff_area"] == 320


def test_more_classes():
    many = [{"id": i, "name": f"t{i}", "isthing": 1} for i in range(1, 41)]
    many += [{"id": 100 + i, "name": f"s{i}", "isthing": 0} for i in range(12)]
    stats = stats_of([(200, 300)], [20, 40], n=400, per_image=40, categories=many)
    assert len(stats["per_class"]) == 52 and stats["per_class"]["t40"]["segments"] == 400
    got = chosen(stats)
    assert got["config"].data.image_size == (224, 320)
    assert got["inference.max_instances"] == 60  # 1.5 x the 40 instances of every image
    assert 4 * VoteGrid(got["grid"]).diameter >= 40 > 4 * VoteGrid(recipe.GRIDS[0]).diameter


@pytest.mark.photos
def test_custom_with_only_the_data_path_sizes_itself_and_flags_still_win(tmp_path, capsys):
    """A dataset written with write_coco_panoptic (the demo at 160 x 96), prepared; custom:<dir> sizes from it."""
    from pcv.data.tfds_panoptic import prepare_panoptic

    for split, n in (("train", 12), ("val", 4)):
        ds = SyntheticPanoptic(split, size=(96, 160), num_examples=n, config=SyntheticConfig(num_things=(2, 4)))
        write_coco_panoptic(ds, tmp_path / "raw", split=split)
    sources = {
        s: custom(tmp_path / "raw" / f"panoptic_{s}.json", tmp_path / "raw" / f"panoptic_{s}", tmp_path / "raw" / s)
        for s in ("train", "val")
    }
    path = prepare_panoptic("demo96x160", sources, tmp_path / "data")["path"]
    capsys.readouterr()
    config = override(load(f"custom:{path}"), cli.parse_overrides([("steps", "800")], cli.EVERY_FIELD))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"custom recipe sized from {path} (train split):"
    assert "  data.image_size = (96, 160): every image is 96x160: fit into 96x160 (multiples of 32)" in printed
    assert config.data.image_size == (96, 160) and config.steps == 800  # the flag wins over the recipe's 700
    assert load(f"custom:smoke:{path}").data.image_size == (64, 64)  # smoke shrinks after the recipe
