"""--config.init_from: fine-tuning a trained model onto other label spaces, from a work dir or an exported bundle."""

import jax
import numpy as np
import pytest

from pcv.data.panoptic import LabelSpace
from pcv.data.synthetic import CATEGORIES
from pcv.errors import ConfigError
from pcv.inference.export import export_bundle
from pcv.inference.predictor import Predictor
from pcv.models import build
from pcv.prepare import main as prepare_main
from pcv.runtime.workdir import Workdir
from pcv.training import finetune
from pcv.training.trainer import train_and_evaluate
from pcv.voting import VoteGrid

from shared_data import SAMPLE
from smoke_model import smoke_config

HEAD = "params.semantic_head.kernel"


def fresh_state(config, labels: LabelSpace, grid=None, seed=1):
    """A model state of the config's network for ``labels``, filled with random numbers (no compile)."""
    grid = VoteGrid(grid or config.grid)
    _, abstract = build.abstract_model(config.model, labels.num_classes, grid)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: rng.normal(size=x.shape).astype(x.dtype), abstract)


@pytest.fixture(scope="module")
def source(smoke_workdir):
    return finetune.read_source(str(smoke_workdir))


def test_onto_the_demo_with_classes_removed_and_added(smoke_workdir, source):
    config = Workdir(smoke_workdir).read_config()
    kept = [c for c in CATEGORIES if c["name"] not in ("square", "stripes")]
    labels = LabelSpace([*kept, {"id": 20, "name": "hexagon", "isthing": 1}])
    state = fresh_state(config, labels)
    new, record = finetune.transfer(state, source, labels.names)
    names, leaves, _ = build.named_leaves(new)
    _, old_leaves, _ = build.named_leaves(state)
    fresh = dict(zip(names, old_leaves))
    got = dict(zip(names, leaves))
    # Everything but the semantic head is the trained model's, the vote head included (same grid).
    for name in names:
        if not name.startswith(finetune.SEMANTIC_HEAD):
            np.testing.assert_array_equal(got[name], source.weights[name], err_msg=name)
    # The semantic head class by class, by name; the new class keeps its initialisation.
    for t, name in enumerate(labels.names):
        if name == "hexagon":
            np.testing.assert_array_equal(got[HEAD][..., t], fresh[HEAD][..., t])
        else:
            s = source.class_names.index(name)
            np.testing.assert_array_equal(got[HEAD][..., t], source.weights[HEAD][..., s], err_msg=name)
    assert [a for a, _ in record.mapped] == [n for n in labels.names if n != "hexagon"]
    assert record.unmatched_classes == ["hexagon"] and record.reinitialised == []
    lines = record.lines(source, labels.num_classes)
    assert lines[0] == f"init_from work dir {smoke_workdir} step 4: copied {len(names)} of {len(names)} variables"
    assert lines[1].startswith("  semantic head: 5 of 6 classes mapped by name (disc, triangle, ring,")
    assert lines[1].endswith(", 1 re-initialised; the source's square, stripes not in this label space")


def test_an_exported_bundle_and_another_grid(smoke_workdir, source, tmp_path):
    predictor = Predictor.from_workdir(smoke_workdir)
    export_bundle(predictor, tmp_path / "model", platforms=("cpu",), log=lambda *a: None)
    bundle = finetune.read_source(f"{tmp_path / 'model'}:4")
    assert bundle.class_names == source.class_names and bundle.step == 4
    config = Workdir(smoke_workdir).read_config()
    labels = LabelSpace(CATEGORIES)
    state = fresh_state(config, labels, grid=((1, 1), (3, 1)))
    from_bundle, record = finetune.transfer(state, bundle, labels.names)
    from_workdir, _ = finetune.transfer(state, source, labels.names)
    jax.tree.map(np.testing.assert_array_equal, from_bundle, from_workdir)
    assert sorted(n for n, _ in record.reinitialised) == ["params.vote_head.bias", "params.vote_head.kernel"]
    assert record.lines(bundle, 7)[1] == "  semantic head: all 7 classes, the same names"
    with pytest.raises(ConfigError, match="the bundle holds step 4, not 2"):
        finetune.read_source(f"{tmp_path / 'model'}:2")
    with pytest.raises(ConfigError, match="is neither a trained work dir"):
        finetune.read_source(str(tmp_path))


def test_parse():
    assert finetune.parse("runs/a:200") == ("runs/a", 200)
    assert finetune.parse("gs://bucket/run:20000") == ("gs://bucket/run", 20000)
    assert finetune.parse("gs://bucket/run") == ("gs://bucket/run", None)
    assert finetune.parse("C:/runs/x") == ("C:/runs/x", None)


@pytest.mark.photos
def test_fine_tune_the_demo_model_on_the_coco_sample(smoke_workdir, tmp_path, capsys):
    args = [
        f"--val_json={SAMPLE}/panoptic.json",
        f"--val_png_dir={SAMPLE}/panoptic",
        f"--val_image_dir={SAMPLE}/images",
    ]
    assert prepare_main(["--dataset=custom", "--name=sample", f"--data_dir={tmp_path / 'data'}", *args]) == 0
    prepared = next(
        line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("prepared: ")
    )
    config = smoke_config(
        steps=3,
        init_from=f"{smoke_workdir}:2",
        **{"data.name": "panoptic", "data.data_dir": prepared, "data.train_split": "val", "num_panel_images": 0},
    )
    lines = []
    results = train_and_evaluate(config, str(tmp_path / "run"), log=lambda *a, **k: lines.append(a[0]))
    start = lines.index(next(line for line in lines if line.startswith("init_from")))
    assert lines[start] == f"init_from work dir {smoke_workdir} step 2: copied 137 of 139 variables"
    # No COCO class is called like a demo class ("grass" is "grass-merged" there).
    assert lines[start + 1] == (
        "  semantic head: 0 of 133 classes mapped by name, 133 re-initialised; "
        "the source's disc, square, triangle, ring, grass ... not in this label space"
    )
    assert lines[start + 2].startswith("  re-initialised params.semantic_head.bias: no class of the same name")
    assert results["step"] == 3 and len(Workdir(tmp_path / "run").read_categories()) == 133
    # A restart resumes from the run's own checkpoint and does not read init_from again
    # (results.json removed: as if the run had stopped after its last save).
    (tmp_path / "run" / "results.json").unlink()
    lines.clear()
    train_and_evaluate(config, str(tmp_path / "run"), log=lambda *a, **k: lines.append(a[0]))
    assert not any(line.startswith("init_from") for line in lines) and any("resumed from step 3" in x for x in lines)
