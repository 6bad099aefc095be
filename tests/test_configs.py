"""The config schema and the shipped configs: they load and validate, overrides name bad fields,
and the custom recipe runs end to end on real COCO files."""

import json

import pytest

from pcv import cli, configs
from pcv import config as config_lib
from pcv.config import Config, DataConfig, InferenceConfig
from pcv.data.coco_panoptic import custom
from pcv.data.tfds_panoptic import prepare_panoptic
from pcv.data.transforms import EvalGeometry
from pcv.errors import ConfigError
from pcv.evaluation.workdir_eval import evaluate_workdir
from pcv.training.trainer import train_and_evaluate
from pcv.voting import DEFAULT_GRID, VoteGrid

from shared_data import SAMPLE


def typed(spec, **overrides):
    c = configs.load(spec)
    if c.data.name == "panoptic" and not c.data.data_dir:
        c.data.data_dir = "/prepared/dataset"
    return config_lib.replace(config_lib.from_mapping(c), **overrides)


@pytest.mark.parametrize("name", configs.NAMES)
@pytest.mark.parametrize("variant", ["", ":smoke"])
def test_every_config_and_its_smoke_variant_validates(name, variant):
    spec = name + (variant if name != "custom" else (":smoke:/data" if variant else ":/data"))
    config = typed(spec)
    assert isinstance(config, Config)
    geometry = EvalGeometry.from_config(config.data)
    assert geometry.pad_shape[0] % 32 == 0 and geometry.pad_shape[1] % 32 == 0
    if variant:
        assert config.steps <= 6 and config.model.backbone == "small"


def test_configs_ship_inside_the_package_and_by_path():
    assert (configs.CONFIG_DIR / "coco_r50.py").is_file()
    by_name = configs.load("coco_r50:smoke")
    by_path = configs.load(str(configs.CONFIG_DIR / "coco_r50.py") + ":smoke")
    assert by_name.to_dict() == by_path.to_dict()
    with pytest.raises(ConfigError, match="unknown variant 'tiny'"):
        configs.load("synthetic:tiny")
    with pytest.raises(ConfigError, match="nope.py does not exist"):
        configs.load("/nowhere/nope.py")


def test_paper_configs_use_the_paper_grid_and_schedule():
    coco = typed("coco_r50")
    assert VoteGrid(coco.grid).spec == DEFAULT_GRID.spec and VoteGrid(coco.grid).num_bins == 233
    assert coco.model.backbone == "resnet50" and coco.model.fpn_channels == 256
    assert coco.model.fusion_channels == 128 and coco.model.backbone_norm == "frozen"
    assert coco.inference == InferenceConfig(full_resolution=False)  # the paper's post-processing
    assert EvalGeometry.from_config(coco.data) == EvalGeometry(800, 1333, (1344, 1344))
    city = typed("cityscapes_r50")
    assert EvalGeometry.from_config(city.data) == EvalGeometry(1024, 2048, (1024, 2048))
    assert VoteGrid(city.grid).num_bins == 233 and city.batch_size == 8


def test_every_field_has_a_default_and_a_comment():
    import inspect

    for section in (Config, *config_lib.SECTIONS.values()):
        source = inspect.getsource(section)
        for field in section.__dataclass_fields__:
            line = next(line for line in source.splitlines() if line.strip().startswith(f"{field}:"))
            assert "=" in line and "#" in line, f"{section.__name__}.{field} needs a default and a comment"


def test_overrides_are_typed_and_name_bad_fields():
    c = cli.load_config(
        "synthetic",
        [
            ("steps", "120"),
            ("data.crop_size", "(96, 64)"),
            ("grid", "((1,1),(3,1))"),
            ("model.pretrained", "~/w.safetensors"),
            ("data.hflip", "false"),
        ],
    )
    typed_config = config_lib.from_mapping(c)
    assert typed_config.steps == 120 and typed_config.data.crop_size == (96, 64)
    assert typed_config.grid == ((1, 1), (3, 1)) and typed_config.model.pretrained.endswith("/w.safetensors")
    assert typed_config.data.hflip is False
    with pytest.raises(ConfigError, match=r"config\.data\.crop_sise: no such field \(did you mean crop_size\?\)"):
        config_lib.from_mapping(cli.load_config("synthetic", [("data.crop_sise", "(64, 64)")]))
    with pytest.raises(ConfigError, match=r"config\.optimizer\.learning_rate: must be > 0"):
        config_lib.from_mapping(cli.load_config("synthetic", [("optimizer.learning_rate", "0")]))
    with pytest.raises(ConfigError, match=r"config\.data\.data_dir: must name a prepared dataset"):
        config_lib.from_mapping(configs.load("coco_r50"))


def test_bad_eval_fields_are_named():
    with pytest.raises(ConfigError, match=r"config\.data\.eval_pad_shape"):
        typed("coco_r50", **{"data.eval_pad_shape": (1000, 1344)})
    with pytest.raises(ConfigError, match=r"config\.data\.eval_max_size"):
        typed("coco_r50", **{"data.eval_max_size": 600})
    with pytest.raises(ConfigError, match="eval_pad_shape"):
        DataConfig(eval_short_side=512)


def test_changed_fields_and_which_may_change_on_resume():
    a = typed("synthetic")
    b = config_lib.replace(a, **{"log_every": 10, "inference.threshold": 2.0, "optimizer.learning_rate": 0.1})
    changes = config_lib.changed_fields(a, b)
    assert [c[0] for c in changes] == ["optimizer.learning_rate", "inference.threshold", "log_every"]
    assert [c[0] for c in changes if c[0] not in config_lib.RESUMABLE] == ["optimizer.learning_rate"]
    assert config_lib.from_json(json.dumps(b.to_dict()), "x") == b


@pytest.mark.photos
def test_custom_recipe_end_to_end(tmp_path):
    """Prepare the real COCO sample, train the custom config's smoke variant, evaluate the checkpoint."""
    source = lambda split: custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images", split=split)  # noqa: E731
    prepared = prepare_panoptic("sample", {"train": source("train"), "val": source("val")}, tmp_path / "data")
    config = configs.load(f"custom:smoke:{prepared['path']}")
    config.steps, config.checkpoint_every, config.optimizer.warmup_steps = 2, 2, 1
    config.grid = ((1, 1), (3, 1))
    workdir = tmp_path / "run"
    results = train_and_evaluate(config, str(workdir), log=lambda *a: None)
    assert results["step"] == 2
    # PQ over the sample's real COCO category ids (untrained, so no quality claim).
    coco_ids = {c["id"] for c in json.loads((SAMPLE / "categories.json").read_text())}
    assert set(map(int, results["eval"]["per_class"])) <= coco_ids
    assert results["eval"]["All"]["n"] > 0
    scored = evaluate_workdir(workdir, num_workers=0, progress=False, log=lambda *a: None)
    assert scored["eval"]["All"]["pq"] == pytest.approx(results["eval"]["All"]["pq"], abs=1e-9)
    predictions = json.loads(next(workdir.glob("eval/val_step2/predictions.json")).read_text())
    sizes = {(im["height"], im["width"]) for im in predictions["images"]}
    gt_sizes = {(im["height"], im["width"]) for im in json.loads((SAMPLE / "panoptic.json").read_text())["images"]}
    assert sizes == gt_sizes  # predictions are mapped back to the original image sizes


def test_every_command_prints_its_usage_with_help(capsys):
    import importlib

    for name in ("train", "evaluate", "predict", "prepare", "export", "bench", "pq", "pretrained"):
        module = importlib.import_module(f"pcv.{name}")
        assert module.main(["--help"]) == 0, name
        out = capsys.readouterr().out
        assert out.startswith(module.__doc__.strip().splitlines()[0]) and "\nflags:\n" in out, name
        assert "--[no]debug" in out, name
