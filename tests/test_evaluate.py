"""Predictor and Evaluator on a smoke-trained model; python -m pcv.evaluate exports, rescores, reproduces PQ."""

import json

import jax
import numpy as np
import pytest

from pcv.config import DataConfig
from pcv.data import SyntheticPanoptic
from pcv.data.batching import PAD_COLOR
from pcv.data.datasets import make_datasets
from pcv.data.transforms import EvalGeometry, to_original
from pcv.errors import CheckpointError, ConfigError, WorkdirError
from pcv.evaluation import pq_compute, read_id_png
from pcv.evaluation.evaluator import Evaluator
from pcv.evaluation.workdir_eval import evaluate_workdir
from pcv.inference.predictor import Predictor
from pcv.pq import main as pq_main
from pcv.runtime.workdir import Workdir

from smoke_model import run_command


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def run(smoke_workdir):
    return smoke_workdir


@pytest.fixture(scope="module")
def evaluated(run):
    return evaluate_workdir(run, progress=False, log=quiet, num_workers=0)


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.from_workdir(run)


def as_json(x):
    return json.loads(json.dumps(x))


def test_reproduces_the_pq_training_reported(run, evaluated):
    trained = json.loads((run / "results.json").read_text())
    assert evaluated["step"] == trained["step"] == 4
    assert as_json(evaluated["eval"]) == trained["eval"]
    assert evaluated["in_memory_matches_files"] is True
    out = run / "eval" / "val_step4"
    assert json.loads((out / "results.json").read_text()) == as_json(evaluated)
    assert evaluated["num_images"] == 4 and evaluated["flip"] is False


def test_exported_files_rescore_to_the_same_pq(evaluated, tmp_path):
    files = evaluated["files"]
    again = pq_compute(files["gt_json"], files["predictions_json"], files["gt_folder"], files["predictions_folder"])
    assert as_json(again) == as_json({k: evaluated["eval"][k] for k in again})
    assert set(evaluated["eval"]) - set(again) == {"semantic", "instances"}
    # And with the command line, as a user would.
    output = tmp_path / "pq.json"
    rc = pq_main(
        [
            f"--gt_json={files['gt_json']}",
            f"--pred_json={files['predictions_json']}",
            f"--pred_folder={files['predictions_folder']}",
            f"--output={output}",
        ]
    )
    assert rc == 0
    assert json.loads(output.read_text()) == as_json(again)


def test_png_ids_and_json_segments_agree(evaluated):
    files = evaluated["files"]
    pred = json.loads(open(files["predictions_json"]).read())
    gt = json.loads(open(files["gt_json"]).read())
    dataset_ids = {c["id"] for c in SyntheticPanoptic.label_space.categories}
    assert {c["id"] for c in pred["categories"]} == dataset_ids
    assert [a["image_id"] for a in pred["annotations"]] == [a["image_id"] for a in gt["annotations"]]
    sizes = {im["id"]: (im["height"], im["width"]) for im in pred["images"]}
    n_segments = 0
    for ann in pred["annotations"]:
        ids = read_id_png(f"{files['predictions_folder']}/{ann['file_name']}")
        assert ids.shape == sizes[ann["image_id"]] == (64, 64)  # the original image size
        present = set(np.unique(ids).tolist()) - {0}
        assert present == {s["id"] for s in ann["segments_info"]}
        for seg in ann["segments_info"]:
            mask = ids == seg["id"]
            ys, xs = np.nonzero(mask)
            assert seg["area"] == int(mask.sum())
            assert seg["bbox"] == [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
            assert seg["category_id"] in dataset_ids
            n_segments += 1
    assert n_segments > 0


def test_in_memory_evaluator_equals_the_files_at_another_step(run):
    r2 = evaluate_workdir(run, step=2, progress=False, log=quiet, num_workers=0)
    assert r2["step"] == 2 and (run / "eval" / "val_step2" / "predictions.json").is_file()
    early, late = Predictor.from_workdir(run, step=2), Predictor.from_workdir(run)
    assert (early.step, late.step) == (2, 4)
    diff = jax.tree.map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), early.model_state, late.model_state
    )
    assert max(jax.tree.leaves(diff)) > 0
    config = Workdir(run).read_config()
    dataset = make_datasets(config.data, config.seed).val
    in_memory = Evaluator(dataset, batch_size=4, progress=False).run(early)
    assert as_json(in_memory) == as_json(r2["eval"])


def test_predictor_on_one_image_of_any_size(predictor):
    image = np.random.default_rng(0).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    result = predictor(image)
    assert result.ids.shape == (50, 100) and result.ids.dtype == np.int32
    present = set(np.unique(result.ids).tolist()) - {0}
    assert present == {s["id"] for s in result.segments_info}
    names = dict(zip(predictor.label_space.category_ids, predictor.label_space.names))
    for seg in result.segments_info:
        assert seg["category_name"] == names[seg["category_id"]] and seg["area"] == int((result.ids == seg["id"]).sum())
        if seg["isthing"]:
            assert 0 <= seg["score"] < 1 and seg["peak_heat"] >= predictor.inference.threshold
    # The heatmap covers the resized image (64 x 32 in the 64 x 64 input): 16 x 8 map pixels.
    assert result.heatmap.shape == (8, 16) and result.scale == (50 / 8, 100 / 16)
    assert [r.ids.shape for r in predictor.predict_batch([image, image[:20]])] == [(50, 100), (20, 100)]


def test_flip_tta_prediction_of_a_mirrored_image_is_mirrored(run, predictor):
    flipped = predictor.replace(flip=True)
    config = Workdir(run).read_config()
    image = make_datasets(config.data, config.seed).val[0]["image"]
    a, b = flipped.predict_batch([image, image[:, ::-1]])
    np.testing.assert_array_equal(b.semantic, a.semantic[:, ::-1])
    pairs = np.unique(np.stack([a.instance[:, ::-1].ravel(), b.instance.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(a.instance)) == len(np.unique(b.instance))  # same regions
    r = evaluate_workdir(run, flip=True, num_images=2, progress=False, log=quiet, num_workers=0)
    assert r["flip"] is True and r["num_images"] == 2
    assert (run / "eval" / "val_step4_flip" / "results.json").is_file()


def test_post_processing_can_change_when_scoring(run, evaluated):
    strict = evaluate_workdir(
        run,
        overrides={"inference.threshold": 1e6},
        out_dir=run / "eval" / "strict",
        progress=False,
        log=quiet,
        num_workers=0,
    )
    assert strict["inference"]["threshold"] == 1e6 and strict["eval"]["Things"]["rq"] == 0.0
    with pytest.raises(ConfigError, match="config.grid: cannot change"):
        evaluate_workdir(run, overrides={"grid": ((1, 1),)}, log=quiet)


def test_errors_name_what_is_wrong(run, tmp_path):
    with pytest.raises(CheckpointError, match="step 3 is not saved.*saved steps: 2, 4"):
        Predictor.from_workdir(run, step=3)
    with pytest.raises(WorkdirError, match="does not exist"):
        Predictor.from_workdir(tmp_path / "nothing")
    with pytest.raises(WorkdirError, match="config.json not found"):
        Predictor.from_workdir(tmp_path)
    with pytest.raises(ConfigError, match="split 'test'"):
        evaluate_workdir(run, split="test", log=quiet)


def test_geometry_fits_pads_and_maps_back():
    geometry = EvalGeometry.from_config(DataConfig(image_size=(64, 64)))
    same = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    padded, meta = geometry.preprocess(same, 7)
    np.testing.assert_array_equal(padded, same)  # already the trained size: untouched
    assert meta == {"image_id": 7, "original_size": (64, 64), "valid_size": (64, 64)}
    padded, meta = geometry.preprocess(np.zeros((50, 100, 3), np.uint8))
    assert padded.shape == (64, 64, 3) and meta["valid_size"] == (32, 64)
    assert (padded[32:] == PAD_COLOR).all()
    # A map at the padded size: columns numbered, the padding -1; back at 50 x 100, no padding leaks.
    ids = np.where(np.arange(64)[:, None] < 32, np.arange(64)[None, :], -1)
    back = to_original(ids, meta)
    assert back.shape == (50, 100)
    assert back.min() >= 0 and (np.diff(back[0]) >= 0).all() and back[0, 0] == 0 and back[0, -1] == 63
    with pytest.raises(ValueError, match="uint8 RGB"):
        geometry.preprocess(np.zeros((8, 8)), "x")
    with pytest.raises(ValueError, match="smaller than the valid size"):
        to_original(np.zeros((10, 10)), meta)


def test_command_line(run, tmp_path):
    out = tmp_path / "cli"
    proc = run_command(
        "pcv.evaluate",
        f"--workdir={run}",
        "--step=2",
        f"--out_dir={out}",
        "--workers=0",
        "--config.inference.threshold=0.5",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PQ" in proc.stdout and "All" in proc.stdout
    saved = json.loads((out / "results.json").read_text())
    assert saved["step"] == 2 and saved["inference"]["threshold"] == 0.5
    bad = run_command("pcv.evaluate", f"--workdir={run}", "--step=3")
    assert bad.returncode == 1 and "saved steps: 2, 4" in bad.stderr and bad.stderr.count("\n") == 1
