"""The shipped configs: they load and validate, and the custom recipe runs end to end on real COCO files."""

import json

import numpy as np
import pytest

from pcv import evaluate, train
from pcv.config_files import CONFIG_DIR, load_config_file
from pcv.data.coco_panoptic import custom
from pcv.data.tfds_panoptic import prepare_panoptic
from pcv.voting import DEFAULT_GRID, VoteGrid

from shared_data import SAMPLE  # noqa: E402


def load_config(name, arg=None):
    return load_config_file(CONFIG_DIR / f"{name}.py", arg)


@pytest.mark.parametrize("name", ["synthetic", "coco_r50", "cityscapes_r50", "custom"])
def test_config_validates(name):
    config = load_config(name)
    train.validate_config(config)
    if name != "synthetic":
        assert config.data.name == "panoptic" and config.data.data_dir == ""
        short, longest, pad = evaluate.eval_geometry(config)
        assert short > 0 and pad[0] % 32 == 0 and pad[1] % 32 == 0
        assert pad[0] >= min(short, longest) and pad[1] >= min(short, longest)


def test_paper_configs_use_the_paper_grid_and_schedule():
    coco = load_config("coco_r50")
    assert VoteGrid(coco.grid).spec == DEFAULT_GRID.spec and VoteGrid(coco.grid).num_bins == 233
    assert coco.model.backbone == "resnet50" and coco.model.fpn_channels == 256
    assert coco.model.fusion_channels == 128 and coco.model.backbone_norm == "frozen"
    assert evaluate.eval_geometry(coco) == (800, 1333, (1344, 1344))
    city = load_config("cityscapes_r50")
    assert evaluate.eval_geometry(city) == (1024, 2048, (1024, 2048))
    assert VoteGrid(city.grid).num_bins == 233


def test_custom_takes_the_dataset_from_its_argument(tmp_path):
    assert load_config("custom", str(tmp_path)).data.data_dir == str(tmp_path)


def test_bad_eval_fields_are_named():
    config = load_config("coco_r50")
    config.data.eval_pad_shape = (1000, 1344)
    with pytest.raises(ValueError, match="config.data.eval_pad_shape"):
        train.validate_config(config)
    config = load_config("coco_r50")
    config.data.eval_max_size = 600
    with pytest.raises(ValueError, match="config.data.eval_max_size"):
        train.validate_config(config)


@pytest.mark.photos
def test_custom_recipe_end_to_end(tmp_path):
    """Prepare the real COCO sample, train the custom config a few steps, evaluate the checkpoint."""
    source = lambda split: custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images", split=split)  # noqa: E731
    prepared = prepare_panoptic("sample", {"train": source("train"), "val": source("val")}, tmp_path / "data")
    config = load_config("custom", prepared["path"])
    config.data.image_size = (64, 64)
    config.data.crop_size = (64, 64)
    config.data.base_size = 64
    config.data.num_workers = 0
    config.data.eval_short_side = 64
    config.data.eval_max_size = 96
    config.grid = ((1, 1), (3, 1))
    config.model.fpn_channels = 16
    config.model.fusion_channels = 16
    config.batch_size = 8
    config.steps = 2
    config.optimizer.warmup_steps = 1
    config.log_every = 1
    config.checkpoint_every = 2
    config.eval_every = 0
    config.inference.min_stuff_area = 16
    config.num_panel_images = 1
    workdir = tmp_path / "run"
    results = train.train_and_evaluate(config, str(workdir))
    assert results["step"] == 2 and np.isfinite(results["train_loss"])
    # PQ over the sample's real COCO category ids (untrained, so no quality claim).
    coco_ids = {c["id"] for c in json.loads((SAMPLE / "categories.json").read_text())}
    assert set(map(int, results["eval"]["per_class"])) <= coco_ids
    assert results["eval"]["All"]["n"] > 0
    scored = evaluate.evaluate_checkpoint(None, workdir, num_workers=0, progress=False, log=lambda *a: None)
    assert scored["eval"]["All"]["pq"] == pytest.approx(results["eval"]["All"]["pq"], abs=1e-9)
    predictions = json.loads(next(workdir.glob("eval/val_step2/predictions.json")).read_text())
    sizes = {(im["height"], im["width"]) for im in predictions["images"]}
    gt_sizes = {(im["height"], im["width"]) for im in json.loads((SAMPLE / "panoptic.json").read_text())["images"]}
    assert sizes == gt_sizes  # predictions are mapped back to the original image sizes


def test_load_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config_file(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="empty.py has no get_config"):
        load_config_file(tmp_path / "empty.py")
