"""python -m pcv.evaluate on a smoke-trained model: export, re-score, reproduce training's PQ."""

import json
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from smoke_model import ROOT

from pcv import evaluate as ev
from pcv.data import SyntheticPanoptic
from pcv.data.transforms import PAD_COLOR
from pcv.evaluation import pq_compute, read_id_png
from pcv.evaluation.pq import main as pq_main


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def run(smoke_workdir):
    return smoke_workdir


@pytest.fixture(scope="module")
def evaluated(run):
    return ev.evaluate_checkpoint(None, run, progress=False, log=quiet)


def as_json(x):
    return json.loads(json.dumps(x))


def test_reproduces_the_pq_training_reported(run, evaluated):
    trained = json.loads((run / "results.json").read_text())
    assert evaluated["step"] == trained["step"] == 4
    assert as_json(evaluated["eval"]) == trained["eval"]
    out = run / "eval" / "val_step4"
    assert json.loads((out / "results.json").read_text()) == as_json(evaluated)
    assert evaluated["num_images"] == 4 and evaluated["flip"] is False


def test_exported_files_rescore_to_the_same_pq(run, evaluated, tmp_path):
    files = evaluated["files"]
    again = pq_compute(files["gt_json"], files["predictions_json"], files["gt_folder"], files["predictions_folder"])
    assert again == evaluated["eval"]
    # And with the COCO-style command line, as a user would.
    output = tmp_path / "pq.json"
    rc = pq_main(["--gt-json", files["gt_json"], "--pred-json", files["predictions_json"],
                  "--pred-folder", files["predictions_folder"], "--output", str(output)])
    assert rc == 0
    assert json.loads(output.read_text()) == as_json(evaluated["eval"])


def test_png_ids_and_json_segments_agree(run, evaluated):
    files = evaluated["files"]
    pred = json.loads(open(files["predictions_json"]).read())
    gt = json.loads(open(files["gt_json"]).read())
    dataset_ids = {c["id"] for c in SyntheticPanoptic.label_space.categories}
    assert {c["id"] for c in pred["categories"]} == dataset_ids
    assert sorted(a["image_id"] for a in pred["annotations"]) == sorted(a["image_id"] for a in gt["annotations"])
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


def test_named_step(run, evaluated):
    r2 = ev.evaluate_checkpoint(None, run, step=2, progress=False, log=quiet)
    assert r2["step"] == 2
    assert (run / "eval" / "val_step2" / "predictions.json").is_file()
    early, late = ev.restore_model(run, step=2), ev.restore_model(run)
    assert (early.step, late.step) == (2, 4)
    diff = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), early.state, late.state)
    assert max(jax.tree.leaves(diff)) > 0
    # The files score what the trainer's in-memory path computes for that checkpoint.
    dataset = ev.eval_dataset(early.config, "val")
    predict_fn = ev.make_predict_fn(early.graphdef, early.config, early.grid, dataset.thing_mask)
    in_memory, _ = ev.evaluate_pq(predict_fn, early.state, dataset, early.config, batch_size=4, progress=False)
    assert in_memory == r2["eval"]


def test_flip_tta_prediction_of_a_mirrored_image_is_mirrored(run):
    model = ev.restore_model(run)
    dataset = ev.eval_dataset(model.config, "val")
    predict_fn = ev.make_predict_fn(model.graphdef, model.config, model.grid, dataset.thing_mask, flip=True)
    image = dataset[0]["image"]
    out = predict_fn(model.state, np.stack([image, image[:, ::-1]]))
    np.testing.assert_array_equal(out["semantic"][1], out["semantic"][0][:, ::-1])
    a, b = out["instance"][0][:, ::-1].ravel(), out["instance"][1].ravel()
    pairs = np.unique(np.stack([a, b]), axis=1)  # same regions, slot numbers may differ
    assert pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))
    # And the flip evaluation runs end to end into its own folder.
    r = ev.evaluate_checkpoint(None, run, flip=True, num_images=2, progress=False, log=quiet)
    assert r["flip"] is True and r["num_images"] == 2
    assert (run / "eval" / "val_step4_flip" / "results.json").is_file()


def test_saved_config_round_trips(run):
    config = ev.load_config(run)
    assert tuple(config.data.image_size) == (64, 64) and config.grid == ((1, 1), (3, 2))
    assert config.steps == 4 and config.checkpoint_every == 2
    labels = ev.load_label_space(run, config)
    assert labels == SyntheticPanoptic.label_space


def test_errors_name_what_is_wrong(run, tmp_path):
    with pytest.raises(ValueError, match="step 3 is not saved.*saved steps: 2, 4"):
        ev.restore_model(run, step=3)
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        ev.restore_model(tmp_path, config=ev.load_config(run))
    with pytest.raises(FileNotFoundError, match="config.json.*--config"):
        ev.load_config(tmp_path)
    with pytest.raises(ValueError, match="split 'test'"):
        ev.eval_dataset(ev.load_config(run), "test")


def test_preprocess_fits_pads_and_maps_back():
    config = ml_collections.ConfigDict({"data": {"image_size": (64, 64)}})
    same = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    padded, meta = ev.preprocess({"image": same, "image_id": 7}, config)
    np.testing.assert_array_equal(padded, same)  # already the trained size: untouched
    assert meta == {"image_id": 7, "original_size": (64, 64), "valid_size": (64, 64)}

    wide = np.zeros((50, 100, 3), np.uint8)
    padded, meta = ev.preprocess({"image": wide}, config)
    assert padded.shape == (64, 64, 3) and meta["valid_size"] == (32, 64)
    assert (padded[32:] == PAD_COLOR).all()
    # A map at the padded size: columns numbered, the padding -1; back at 50 x 100, no padding leaks.
    ids = np.where(np.arange(64)[:, None] < 32, np.arange(64)[None, :], -1)
    back = ev.to_original(ids, meta)
    assert back.shape == (50, 100)
    assert back.min() >= 0 and (np.diff(back[0]) >= 0).all() and back[0, 0] == 0 and back[0, -1] == 63

    with pytest.raises(ValueError, match="uint8 RGB"):
        ev.preprocess({"image": np.zeros((8, 8)), "image_id": "x"}, config)
    with pytest.raises(ValueError, match="smaller than the valid size"):
        ev.to_original(np.zeros((10, 10)), meta)


def test_command_line(run, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "pcv.evaluate", f"--workdir={run}", "--step=2", "--num_images=1", f"--out_dir={out}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PQ" in proc.stdout and "All" in proc.stdout
    assert json.loads((out / "results.json").read_text())["step"] == 2
    bad = subprocess.run(
        [sys.executable, "-m", "pcv.evaluate", f"--workdir={run}", "--step=3"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert bad.returncode == 1 and "saved steps: 2, 4" in bad.stderr
