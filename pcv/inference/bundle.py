"""Exported models: a bundle written by ``python -m pcv.export``, loaded with jax, numpy and Pillow only.

An exported model (``python -m pcv.export``) is a folder::

    bundle.json              what the model is: label space, input geometry,
                             post-processing settings, the weights' names, the
                             files' SHA-256, the training config (provenance)
    weights.safetensors      the network's variables
    forward.jax_export       image [1, Hp, Wp, 3] uint8 -> logits  (jax.export,
    postprocess.jax_export   logits -> panoptic maps               StableHLO)
    pcv_portable.py          this loader, as one file

and runs without pcv's model, data or training code, and without Flax::

    model = pcv.load_exported("model_dir")        # or, without pcv installed:
    result = model(image)                         #   sys.path.insert(0, "model_dir")
    result.ids, result.segments_info              #   from pcv_portable import load_exported

It needs nothing of pcv but :mod:`pcv.data.resize` and
:mod:`pcv.inference.segments` (host-side numpy and Pillow code), and the
bundle's ``pcv_portable.py`` is this module with those two pasted in front
(:func:`pcv.inference.export.loader_source`): a complete loader on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import jax
import ml_dtypes  # a dependency of jax
import numpy as np

from pcv.data.resize import resize_and_pad, resized_shape  # portable: inlined
from pcv.inference.segments import Prediction, finish  # portable: inlined

try:  # inside pcv: an expected error, printed in one line by the commands
    from pcv.errors import ExportError
except ImportError:  # the copy in a bundle, without pcv

    class ExportError(ValueError):
        """An exported model bundle is incomplete or does not match its manifest."""


MANIFEST = "bundle.json"
WEIGHTS = "weights.safetensors"
FORWARD = "forward.jax_export"
POSTPROCESS = "postprocess.jax_export"
LOADER = "pcv_portable.py"
FORMAT = "pcv-exported-model"
FORMAT_VERSION = 1

# ----------------------------------------------------------------------------
# Sizes and resizing.
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# From one image's maps to COCO segments.
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# safetensors, read with numpy (the format: 8-byte little-endian header size,
# a JSON header of name -> dtype, shape, data_offsets, then the bytes).
# ----------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, as numpy arrays; a damaged file is an :class:`ExportError` naming it."""
    data = Path(path).read_bytes()
    try:
        (size,) = np.frombuffer(data[:8], "<u8")
        header = json.loads(data[8 : 8 + int(size)])
        body = memoryview(data)[8 + int(size) :]
        out = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            if dtype == "bfloat16":
                dtype = ml_dtypes.bfloat16
            start, end = entry["data_offsets"]
            if end > len(body):
                raise ValueError(f"tensor {name!r} ends at byte {end}, the file has {len(body)}")
            out[name] = np.frombuffer(body[start:end], dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry["shape"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    return out


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------
# Exported models.
# ----------------------------------------------------------------------------


class ExportedModel:
    """A model bundle written by ``python -m pcv.export``, ready to segment images (module docstring).

    Calling it with a uint8 ``[H, W, 3]`` image of any size returns a
    :class:`Prediction`, the same ``ids`` and ``segments_info`` as the
    :class:`pcv.Predictor` it was exported from. ``logits(padded)`` and
    ``postprocess(logits)`` run the two exported stages on their own.

    Attributes:
      manifest: ``bundle.json``.
      categories: the label space's COCO categories, in train-id order.
      platforms: the platforms the computation was exported for.
    """

    def __init__(self, folder: str | os.PathLike):

        self.folder = Path(folder)
        manifest, tensors = read_weights(self.folder)
        self.manifest = manifest
        _check_file(self.folder, manifest, FORWARD)
        _check_file(self.folder, manifest, POSTPROCESS)
        names = manifest["weights"]
        try:
            self._forward = jax.export.deserialize(bytearray((self.folder / FORWARD).read_bytes()))
            self._post = jax.export.deserialize(bytearray((self.folder / POSTPROCESS).read_bytes()))
        except Exception as e:  # noqa: BLE001  (a damaged file fails inside jax's flatbuffer reader in many ways)
            raise ExportError(f"{self.folder}: cannot deserialize the exported computation ({e})") from None
        weight_avals = self._forward.in_avals[: len(names)]
        for name, aval in zip(names, weight_avals):
            t = tensors[name]
            if tuple(t.shape) != tuple(aval.shape) or t.dtype != aval.dtype:
                raise ExportError(
                    f"{self.folder / WEIGHTS}: tensor {name!r} is {t.dtype} {tuple(t.shape)}, "
                    f"the exported network takes {aval.dtype} {tuple(aval.shape)}"
                )
        platform = jax.default_backend()
        platform = "cuda" if platform == "gpu" else platform
        if platform not in self._forward.platforms:
            raise ExportError(
                f"{self.folder}: exported for {', '.join(self._forward.platforms)}, this machine runs {platform}"
            )
        self._weights = [jax.device_put(tensors[n]) for n in names]
        labels = manifest["labels"]
        self.categories = [dict(c) for c in labels["categories"]]
        self.platforms = tuple(self._forward.platforms)
        self._labels = dict(
            category_ids=labels["category_ids"],
            thing_mask=labels["thing_mask"],
            names=labels["names"],
            threshold=manifest["inference"]["threshold"],
            stride=manifest["geometry"]["output_stride"],
        )

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """``(1, Hp, Wp, 3)``: the padded batch the network takes."""
        return tuple(self._forward.in_avals[-1].shape)

    def preprocess(self, image: np.ndarray, image_id=None) -> tuple[np.ndarray, dict]:
        """One uint8 ``[H, W, 3]`` image -> (padded ``[Hp, Wp, 3]``, meta), as the Predictor does."""
        g = self.manifest["geometry"]
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {image_id!r}: expected uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        hw = tuple(int(x) for x in image.shape[:2])
        size = resized_shape(hw, g["short_side"], g["max_size"], tuple(g["fit_size"]))
        padded = resize_and_pad(image, size, tuple(g["pad_shape"]), g["pad_color"], name=f"image {image_id!r}")
        return padded, {"image_id": image_id, "original_size": hw, "valid_size": size}

    def logits(self, padded: np.ndarray) -> dict:
        """The heads' outputs of padded uint8 images ``[1, Hp, Wp, 3]``."""
        return self._forward.call(self._weights, padded)

    def postprocess(self, logits: Mapping) -> dict:
        """Heads' outputs -> the batched raw result (maps at the padded size), as numpy."""
        return jax.device_get(self._post.call(logits["semantic"], logits["votes"]))

    def __call__(self, image: np.ndarray) -> Prediction:
        """Segment one uint8 ``[H, W, 3]`` image of any size."""
        padded, meta = self.preprocess(image)
        raw = self.postprocess(self.logits(padded[None]))
        return finish({k: v[0] for k, v in raw.items()}, meta, **self._labels)

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"ExportedModel({str(self.folder)!r}, step {m.get('step')}, {len(self.categories)} classes, "
            f"input {self.input_shape}, platforms {self.platforms})"
        )


def read_manifest(folder: Path) -> dict:
    """A bundle's ``bundle.json``, checked for the fields a loader needs."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ExportError(f"{folder}: no such folder (an exported model is a folder with {MANIFEST})")
    if not path.is_file():
        raise ExportError(f"{path}: missing; is {folder} a bundle written by python -m pcv.export?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f'{path}: not a pcv exported-model manifest (no "format": "{FORMAT}")')
    if manifest.get("version") != FORMAT_VERSION:
        raise ExportError(f"{path}: format version {manifest.get('version')}, this loader reads {FORMAT_VERSION}")
    for key in ("files", "weights", "labels", "geometry", "inference"):
        if key not in manifest:
            raise ExportError(f"{path}: field {key!r} is missing")
    return manifest


def _check_file(folder: Path, manifest: Mapping, name: str) -> Path:
    """``folder / name``, present and as the manifest recorded it (SHA-256)."""
    path = folder / name
    if not path.is_file():
        raise ExportError(f"{path}: missing; a bundle needs {MANIFEST}, {WEIGHTS}, {FORWARD} and {POSTPROCESS}")
    if sha256(path) != manifest["files"].get(name):
        raise ExportError(f"{path}: does not match {MANIFEST} (SHA-256 differs); the bundle was changed")
    return path


def read_weights(folder: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """``(manifest, {name: array})`` of a bundle, its weights checked against the manifest (names, SHA-256)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    tensors = read_safetensors(_check_file(folder, manifest, WEIGHTS))
    names = manifest["weights"]
    missing = [n for n in names if n not in tensors]
    if missing or len(tensors) != len(names):
        extra = sorted(set(tensors) - set(names))
        raise ExportError(f"{folder / WEIGHTS}: tensors missing {missing[:3]} / unexpected {extra[:3]}")
    return manifest, tensors


def load_exported(folder: str | os.PathLike) -> ExportedModel:
    """The exported model in ``folder`` (written by ``python -m pcv.export``); see :class:`ExportedModel`."""
    return ExportedModel(folder)
