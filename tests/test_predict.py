"""python -m pcv.predict on real photos of any size, with a corrupt file among them."""

import json

import numpy as np
import pytest
from PIL import Image

from pcv.errors import DataError
from pcv.evaluation import read_id_png
from pcv.inference.predict_files import collect_images, predict_paths, read_image
from pcv.inference.predictor import Predictor

from shared_data import SAMPLE
from smoke_model import run_command

pytestmark = pytest.mark.photos  # reads the sample photographs (real or stand-in)

IMAGES = SAMPLE / "images"


@pytest.fixture(scope="module")
def run(smoke_workdir):
    return smoke_workdir


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.from_workdir(run)


@pytest.fixture()
def corrupt(tmp_path):
    path = tmp_path / "inputs" / "broken.jpg"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return path


def quiet(*args, **kwargs):
    pass


def test_sample_photos_and_a_corrupt_file(predictor, corrupt, tmp_path):
    out = tmp_path / "out"
    warnings = []
    summary = predict_paths(predictor, [IMAGES, corrupt], out, heatmap=True, log=quiet, warn=warnings.append)
    photos = sorted(IMAGES.glob("*.jpg"))
    assert [p["file"] for p in summary["predicted"]] == [str(p) for p in photos]
    assert [p for p, _ in summary["skipped"]] == [str(corrupt)]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]
    names = {c["id"]: c["name"] for c in predictor.label_space.categories}
    coco = json.loads((out / "predictions.json").read_text())
    assert len(coco["annotations"]) == 2 and {c["id"] for c in coco["categories"]} == set(names)
    for photo, ann in zip(photos, coco["annotations"]):
        stem = photo.stem
        with Image.open(photo) as im:
            w, h = im.size
        ids = read_id_png(out / f"{stem}.png")
        assert ids.shape == (h, w)  # mapped back to the photo's own size
        record = json.loads((out / f"{stem}.json").read_text())
        assert (record["height"], record["width"]) == (h, w)
        assert record["segments_info"] == ann["segments_info"]
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in record["segments_info"]}
        for seg in record["segments_info"]:
            assert seg["area"] == int((ids == seg["id"]).sum())
            assert seg["category_name"] == names[seg["category_id"]]
        for suffix in ("_overlay.png", "_heatmap.png"):
            with Image.open(out / f"{stem}{suffix}") as im:
                assert im.size[0] > 100 and im.size[1] > 100


def test_odd_sizes_grey_alpha_and_16_bit_images(predictor, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 101), dtype=np.uint8), "L").save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (90, 20, 4), dtype=np.uint8), "RGBA").save(folder / "tall.PNG")
    deep = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(deep).save(folder / "wide16.png")  # mode I;16
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    summary = predict_paths(predictor, [folder], tmp_path / "out", log=quiet, warn=quiet)
    assert [(p["height"], p["width"]) for p in summary["predicted"]] == [(37, 101), (90, 20), (48, 64)]
    assert summary["skipped"] == []
    assert read_id_png(tmp_path / "out" / "tall.png").shape == (90, 20)
    # 16-bit values are scaled to 8 bits, not clipped (clipping would turn almost all of them white).
    rgb = read_image(folder / "wide16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    np.testing.assert_allclose(rgb[..., 0].astype(float), deep * 255.0 / 65535.0, atol=0.51)
    assert (rgb == 255).mean() < 0.01


def test_same_names_in_two_folders_do_not_overwrite(predictor, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / sub / "x.png")
    summary = predict_paths(predictor, [tmp_path / "a", tmp_path / "b"], tmp_path / "out", log=quiet, warn=quiet)
    assert [p["stem"] for p in summary["predicted"]] == ["x", "x_1"]


def test_read_image_and_collect_name_the_problem(corrupt, tmp_path):
    with pytest.raises(DataError, match="broken.jpg"):
        read_image(corrupt)
    files, problems = collect_images([tmp_path / "missing.jpg", tmp_path / "inputs"])
    assert files == [corrupt]
    assert problems == [(str(tmp_path / "missing.jpg"), "no such file or folder")]


def test_command_line_exit_codes(run, corrupt, tmp_path):
    args = [f"--workdir={run}", f"--out_dir={tmp_path / 'out'}"]
    ok = run_command("pcv.predict", *args, "--config.inference.threshold=0.5", IMAGES / "000000142238.jpg", corrupt)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "broken.jpg" in ok.stderr and "skipped 1" in ok.stderr
    assert (tmp_path / "out" / "000000142238_overlay.png").is_file()
    nothing = run_command("pcv.predict", *args, corrupt)
    assert nothing.returncode == 1
    assert "broken.jpg" in nothing.stderr and "predicted 0 image(s)" in nothing.stderr
    wrong = run_command("pcv.predict", *args, "--config.grid=((1,1),)", corrupt)
    assert (
        wrong.returncode == 1
        and "config.grid: cannot change here; this command changes only inference.*" in wrong.stderr
    )


def test_instances_carry_their_scores_into_the_json(run, tmp_path):
    from smoke_model import voting_predictor

    photo = sorted(IMAGES.glob("*.jpg"))[0]
    summary = predict_paths(voting_predictor(run), [photo], tmp_path, log=quiet)
    segments = json.loads((tmp_path / f"{photo.stem}.json").read_text())["segments_info"]
    assert segments == summary["predicted"][0]["segments_info"]
    things = [s for s in segments if s["isthing"]]
    assert len(things) >= 2
    for s in things:
        assert 0 < s["score"] < 1 and s["score"] <= s["class_score"] and s["peak_heat"] >= 1.0  # threshold 1.0
    assert all("score" not in s for s in segments if not s["isthing"])
