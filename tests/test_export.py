"""python -m pcv.export and pcv.load_exported: a bundle that runs without pcv's model, data or training code."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from pcv import export
from pcv.errors import ExportError
from pcv.inference import bundle as bundle_lib
from pcv.inference import export as export_lib
from pcv.inference.export import export_bundle
from pcv.inference.predict_files import read_image
from pcv.runtime.workdir import Workdir

from shared_data import SAMPLE
from smoke_model import voting_predictor

pytestmark = pytest.mark.photos  # runs on the sample photographs (real or stand-in)

PHOTOS = sorted((SAMPLE / "images").glob("*.jpg"))

# What a receiver of a bundle need not have: pcv's model, data, training and
# work-dir code, Flax and the training libraries.
NOT_NEEDED = (
    "flax,optax,orbax,grain,tensorflow,tensorflow_datasets,ml_collections,"
    "pcv.models,pcv.training,pcv.evaluation,pcv.runtime,pcv.voting,pcv.viz,pcv.config,"
    "pcv.inference.predictor,pcv.inference.postprocess,pcv.inference.export,pcv.inference.predict_files,"
    "pcv.data.panoptic,pcv.data.coco_panoptic,pcv.data.tfds_panoptic,pcv.data.synthetic,pcv.data.transforms,"
    "pcv.data.batching,pcv.data.pipeline,pcv.data.targets,pcv.data.datasets,pcv.data.stats,pcv.data.coco_files"
)

CHILD = r"""
import importlib.abc, json, sys
import numpy as np
from PIL import Image

bundle, out, blocked = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
photos = sys.argv[4:]

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Block())
images = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
results = {}

# 1. Without pcv at all: the loader the bundle carries.
blocked.append("pcv")
sys.path.insert(0, bundle)
from pcv_portable import load_exported
model = load_exported(bundle)
results["standalone"] = [model(image) for image in images]

# 2. pcv.load_exported, with pcv's model, data and training code still blocked.
blocked.remove("pcv")
import pcv
model = pcv.load_exported(bundle)
results["pcv"] = [model(image) for image in images]

arrays = {f"{k}_{i}": r.ids for k, rs in results.items() for i, r in enumerate(rs)}
np.savez(out + ".npz", **arrays)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pcv", "flax", "optax", "orbax", "grain"))
segments = {k: [r.segments_info for r in rs] for k, rs in results.items()}
json.dump({"segments": segments, "modules": loaded, "repr": repr(model)}, open(out + ".json", "w"))
"""


@pytest.fixture(scope="module")
def predictor(smoke_workdir):
    return voting_predictor(smoke_workdir)


@pytest.fixture(scope="module")
def bundle(predictor, smoke_workdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    config = Workdir(smoke_workdir).read_config()
    export_bundle(predictor, out, config=config, log=lambda *a: None)
    return out


def test_an_exported_model_gives_the_predictors_answer_without_pcvs_code(predictor, bundle, tmp_path):
    expected = [predictor(read_image(p)) for p in PHOTOS]
    assert all(sum(s["isthing"] for s in r.segments_info) >= 2 for r in expected)  # instances to compare
    out = tmp_path / "child"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(bundle), str(out), NOT_NEEDED, *map(str, PHOTOS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(out.with_suffix(".json").read_text())
    ids = np.load(out.with_suffix(".npz"))
    for way in ("standalone", "pcv"):
        for i, result in enumerate(expected):
            np.testing.assert_array_equal(ids[f"{way}_{i}"], result.ids, err_msg=f"{way}, {PHOTOS[i].name}")
            assert child["segments"][way][i] == result.segments_info
    # Only the loader's modules (and the packages holding them) were imported; no Flax, no training code.
    assert child["modules"] == [
        "pcv",
        "pcv.data",
        "pcv.data.resize",
        "pcv.errors",
        "pcv.inference",
        "pcv.inference.bundle",
        "pcv.inference.segments",
    ]
    assert "platforms ('cpu', 'cuda', 'tpu')" in child["repr"]


def test_the_manifest_says_what_the_model_is(predictor, bundle, smoke_workdir):
    manifest = json.loads((bundle / bundle_lib.MANIFEST).read_text())
    assert manifest["labels"]["names"] == list(predictor.label_space.names)
    assert manifest["inference"]["threshold"] == 1.0 and manifest["step"] == predictor.step
    assert manifest["input"] == {"shape": [1, *predictor.geometry.pad_shape, 3], "dtype": "uint8", "sizes": "fixed"}
    assert manifest["config"] == Workdir(smoke_workdir).read_config().to_dict()
    # The numpy reader of the bundle reads what the safetensors library wrote.
    ours, theirs = bundle_lib.read_safetensors(bundle / bundle_lib.WEIGHTS), load_file(bundle / bundle_lib.WEIGHTS)
    assert list(ours) == manifest["weights"] and set(ours) == set(theirs)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])
    loader = (bundle / bundle_lib.LOADER).read_text()
    assert loader == export_lib.loader_source()
    # One file: the loader with the host-side code it uses pasted in front, and no import of pcv's modules.
    assert all(f"\ndef {name}(" in loader for name in ("resize_and_pad", "to_original", "to_coco_panoptic", "finish"))
    assert "class ExportedModel" in loader and "from pcv.data" not in loader and "from pcv.inference" not in loader


def _damaged(bundle, tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(bundle, copy)
    return copy


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_manifest", r"bundle\.json: missing"),
        ("bad_manifest", r"bundle\.json: not readable JSON"),
        ("other_json", r"bundle\.json: not a pcv exported-model manifest"),
        ("no_forward", r"forward\.jax_export: missing"),
        ("changed_weights", r"weights\.safetensors: does not match bundle\.json"),
        ("wrong_shape", r"tensor .params\.vote_head\.bias. is float32 \(3,\), the exported network takes float32 \(34"),
        ("renamed_tensor", r"weights\.safetensors: tensors missing \['params\.vote_head\.bias'\]"),
        ("not_a_folder", r"no such folder"),
    ],
)
def test_a_damaged_bundle_is_one_clear_error(bundle, tmp_path, damage, message):
    copy = _damaged(bundle, tmp_path, damage)
    weights = copy / bundle_lib.WEIGHTS
    manifest = json.loads((copy / bundle_lib.MANIFEST).read_text())

    def rewrite_weights(tensors):
        save_file(tensors, str(weights))
        manifest["files"][bundle_lib.WEIGHTS] = bundle_lib.sha256(weights)
        (copy / bundle_lib.MANIFEST).write_text(json.dumps(manifest))

    if damage == "no_manifest":
        (copy / bundle_lib.MANIFEST).unlink()
    elif damage == "bad_manifest":
        (copy / bundle_lib.MANIFEST).write_text("{ not json")
    elif damage == "other_json":
        (copy / bundle_lib.MANIFEST).write_text('{"images": []}')
    elif damage == "no_forward":
        (copy / bundle_lib.FORWARD).unlink()
    elif damage == "changed_weights":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "wrong_shape":
        tensors = load_file(weights)
        tensors["params.vote_head.bias"] = np.zeros(3, np.float32)
        rewrite_weights(tensors)
    elif damage == "renamed_tensor":
        tensors = load_file(weights)
        tensors["params.vote_head.offset"] = tensors.pop("params.vote_head.bias")
        rewrite_weights(tensors)
    elif damage == "not_a_folder":
        shutil.rmtree(copy)
    with pytest.raises(ExportError, match=message) as caught:
        bundle_lib.load_exported(copy)
    assert "\n" not in str(caught.value)


def test_the_command_exports_and_refuses_to_overwrite(smoke_workdir, tmp_path, capsys):
    out = tmp_path / "model"
    args = [f"--workdir={smoke_workdir}", f"--out={out}", "--platforms=cpu", "--config.inference.threshold=2.5"]
    assert export.main(args) == 0
    assert "exported step 4 for cpu" in capsys.readouterr().out
    manifest = json.loads((out / bundle_lib.MANIFEST).read_text())
    assert manifest["platforms"] == ["cpu"] and manifest["inference"]["threshold"] == 2.5
    assert export.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {out} already holds an exported model; pass --overwrite to replace it"
    assert export.main([*args, "--config.model.backbone=resnet50"]) == 1
    assert "config.model.backbone: cannot change here; this command changes only inference.*" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left behind
