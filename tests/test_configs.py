"""The config schema and the shipped configs: they load and validate, overrides name bad fields,
and the custom recipe runs end to end on real COCO files."""

import json

import pytest

from pcv import cli
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
    config = config_lib.load(spec)
    if config.data.name == "panoptic" and not config.data.data_dir:
        config = config_lib.override(config, {"data.data_dir": "/prepared/dataset"})
    return config_lib.override(config, overrides)


@pytest.mark.parametrize("name", config_lib.SHIPPED)
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
    assert (config_lib.CONFIG_DIR / "coco_r50.py").is_file()
    by_name = config_lib.load("coco_r50:smoke")
    by_path = config_lib.load(str(config_lib.CONFIG_DIR / "coco_r50.py") + ":smoke")
    assert by_name == by_path
    with pytest.raises(ConfigError, match="unknown variant 'tiny'"):
        config_lib.load("synthetic:tiny")
    with pytest.raises(ConfigError, match="nope.py does not exist"):
        config_lib.load("/nowhere/nope.py")


def test_a_config_file_in_the_older_configdict_form_still_loads(tmp_path):
    # The form the README documented before: get_config() sets fields on default_config() and returns it.
    (tmp_path / "mine.py").write_text(
        "from pcv.config import default_config\n"
        "def get_config(arg=None):\n"
        "    c = default_config()\n"
        "    c.steps = 420\n"
        "    c.data.image_size = (96, 96)\n"
        "    c.grid = ((1, 1), (3, 1))\n"
        "    c.inference.threshold = float(arg or 2)\n"
        "    return c\n"
    )
    config = config_lib.load(f"{tmp_path / 'mine.py'}:3")
    assert isinstance(config, Config)
    assert (config.steps, config.data.image_size, config.grid) == (420, (96, 96), ((1, 1), (3, 1)))
    assert config.inference.threshold == 3.0 and config.model == Config().model
    (tmp_path / "bad.py").write_text(
        "from pcv.config import default_config\n"
        "def get_config(arg=None):\n    c = default_config()\n    c.optimizer.learning_rate = -1.0\n    return c\n"
    )
    with pytest.raises(ConfigError, match=r"config\.optimizer\.learning_rate: must be > 0"):
        config_lib.load(str(tmp_path / "bad.py"))


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


def overridden(spec, pairs, allowed=cli.EVERY_FIELD):
    return config_lib.override(config_lib.load(spec), cli.parse_overrides(pairs, allowed))


def test_overrides_are_typed_and_name_bad_fields():
    typed_config = overridden(
        "synthetic",
        [
            ("steps", "120"),
            ("data.crop_size", "(96, 64)"),
            ("grid", "((1,1),(3,1))"),
            ("model.pretrained", "~/w.safetensors"),
            ("data.hflip", "false"),
        ],
    )
    assert typed_config.steps == 120 and typed_config.data.crop_size == (96, 64)
    assert typed_config.grid == ((1, 1), (3, 1)) and typed_config.model.pretrained.endswith("/w.safetensors")
    assert typed_config.data.hflip is False
    with pytest.raises(ConfigError, match=r"config\.data\.crop_sise: no such field \(did you mean crop_size\?\)"):
        overridden("synthetic", [("data.crop_sise", "(64, 64)")])
    with pytest.raises(ConfigError, match=r"config\.modle\.backbone: no such field \('modle' is not a group"):
        overridden("synthetic", [("modle.backbone", "small")])
    with pytest.raises(ConfigError, match=r"config\.optimizer\.learning_rate: must be > 0"):
        overridden("synthetic", [("optimizer.learning_rate", "0")])
    with pytest.raises(ConfigError, match=r"config\.steps: expected an integer, got 'ten'"):
        overridden("synthetic", [("steps", "ten")])


def test_each_command_changes_only_the_fields_it_declares():
    from pcv import evaluate

    values = cli.parse_overrides([("inference.threshold", "2"), ("data.eval_short_side", "96")], cli.MODEL_SETTINGS)
    assert values == {"inference.threshold": 2.0, "data.eval_short_side": 96}
    for pairs, allowed in (
        ([("model.backbone", "resnet50")], cli.MODEL_SETTINGS),
        ([("steps", "3")], evaluate.OVERRIDES),
    ):
        with pytest.raises(ConfigError, match=rf"config\.{pairs[0][0]}: cannot change here; this command changes only"):
            cli.parse_overrides(pairs, allowed)
    assert cli.parse_overrides([("data.data_dir", "/elsewhere")], evaluate.OVERRIDES) == {"data.data_dir": "/elsewhere"}


def test_a_panoptic_config_without_its_data_is_refused_before_anything_runs(tmp_path):
    from pcv.training.trainer import check_runtime

    with pytest.raises(ConfigError, match=r"config\.data\.data_dir: must name a prepared dataset"):
        check_runtime(config_lib.load("coco_r50:smoke"))


def test_bad_eval_fields_are_named():
    with pytest.raises(ConfigError, match=r"config\.data\.eval_pad_shape"):
        typed("coco_r50", **{"data.eval_pad_shape": (1000, 1344)})
    with pytest.raises(ConfigError, match=r"config\.data\.eval_max_size"):
        typed("coco_r50", **{"data.eval_max_size": 600})
    with pytest.raises(ConfigError, match="eval_pad_shape"):
        DataConfig(eval_short_side=512)


def test_changed_fields_and_which_may_change_on_resume():
    a = typed("synthetic")
    b = config_lib.override(a, {"log_every": 10, "inference.threshold": 2.0, "optimizer.learning_rate": 0.1})
    changes = config_lib.changed_fields(a, b)
    assert [c[0] for c in changes] == ["optimizer.learning_rate", "inference.threshold", "log_every"]
    assert [c[0] for c in changes if c[0] not in config_lib.RESUMABLE] == ["optimizer.learning_rate"]
    assert config_lib.from_json(json.dumps(b.to_dict()), "x") == b


@pytest.mark.photos
def test_custom_recipe_end_to_end(tmp_path):
    """Prepare the real COCO sample, train the custom config's smoke variant, evaluate the checkpoint."""
    source = lambda split: custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images", split=split)  # noqa: E731
    prepared = prepare_panoptic("sample", {"train": source("train"), "val": source("val")}, tmp_path / "data")
    config = config_lib.load(f"custom:smoke:{prepared['path']}")
    changes = {"steps": 2, "checkpoint_every": 2, "optimizer.warmup_steps": 1, "grid": ((1, 1), (3, 1))}
    config = config_lib.override(config, changes)
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
