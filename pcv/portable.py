"""The host side of a prediction, and exported models: needs numpy, jax and Pillow, nothing else of pcv.

A prediction has three parts: the image is resized and padded to the one
shape the network was compiled for (:func:`resize_and_pad`, Pillow's
bilinear filter), the network and the post-processing run on the device,
and the answer goes back to the image's size and becomes COCO
``segments_info`` (:func:`finish`, :func:`to_coco_panoptic`). The first and
last parts live here, once, for both :class:`pcv.Predictor` and exported
models.

An exported model (``python -m pcv.export``) is a folder::

    bundle.json              what the model is: label space, input geometry,
                             post-processing settings, the weights' names, the
                             files' SHA-256, the training config (provenance)
    weights.safetensors      the network's variables
    forward.jax_export       image [1, Hp, Wp, 3] uint8 -> logits  (jax.export,
    postprocess.jax_export   logits -> panoptic maps               StableHLO)
    pcv_portable.py          a copy of this file

and runs without pcv's model, data or training code, and without Flax::

    model = pcv.load_exported("model_dir")        # or, without pcv installed:
    result = model(image)                         #   sys.path.insert(0, "model_dir")
    result.ids, result.segments_info              #   from pcv_portable import load_exported

This module imports nothing from pcv at its top, so the copy in a bundle is
a complete loader on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

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


def resize_nearest(ids: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``[H, W, ...]`` map with half-pixel centres.

    Output pixel i samples input pixel ``floor((i + 0.5) * H_in / H_out)``, the
    same rule as :func:`pcv.inference.resize_nearest`.
    """
    ids = np.asarray(ids)
    h, w = ids.shape[:2]
    oh, ow = out_hw
    ys = np.minimum(((np.arange(oh) + 0.5) * h / oh).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(ow) + 0.5) * w / ow).astype(np.int64), w - 1)
    return ids[ys[:, None], xs[None, :]]


def eval_resize_shape(hw: tuple[int, int], short_side: int, max_size: int = 0) -> tuple[int, int]:
    """``(h, w)`` with the shorter side ``short_side`` and the longer at most ``max_size`` (0: no limit).

    ``short_side = 0`` keeps the size.
    """
    h, w = hw
    if short_side <= 0:
        return int(h), int(w)
    scale = short_side / min(h, w)
    if max_size > 0 and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def fit_size(hw: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest ``(h, w)`` of the image's aspect ratio inside ``box`` (at least 1 x 1)."""
    h, w = hw
    scale = min(box[0] / h, box[1] / w)
    return max(1, min(box[0], round(h * scale))), max(1, min(box[1], round(w * scale)))


def resized_shape(hw: tuple[int, int], short_side: int, max_size: int, box: tuple[int, int]) -> tuple[int, int]:
    """The size an image of ``hw`` is resized to before padding: by its short side, or fit into ``box``.

    ``short_side > 0``: :func:`eval_resize_shape`; ``short_side == 0``:
    :func:`fit_size` into ``box`` (the demo's rule).
    """
    if short_side > 0:
        return eval_resize_shape(hw, short_side, max_size)
    return fit_size(hw, box)


def resize_and_pad(
    image: np.ndarray, size: tuple[int, int], pad_shape: tuple[int, int], pad_color, name: str = "image"
) -> np.ndarray:
    """uint8 ``[H, W, 3]`` resized to ``size`` (bilinear, Pillow) and padded bottom / right to ``pad_shape``."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    size = tuple(int(x) for x in size)
    if size[0] > pad_shape[0] or size[1] > pad_shape[1]:
        raise ValueError(f"{name}: resized to {size[0]}x{size[1]}, larger than pad_shape {tuple(pad_shape)}")
    if size != image.shape[:2]:
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size[::-1], Image.BILINEAR))
    out = np.empty((*pad_shape, 3), np.uint8)
    out[...] = np.asarray(pad_color, np.uint8)
    out[: size[0], : size[1]] = image
    return out


def to_original(prediction: np.ndarray, meta: Mapping) -> np.ndarray:
    """A map at the padded evaluation size (``[Hp, Wp, ...]``) -> ``[H, W, ...]`` of the original image.

    Crops the valid region, then resizes with nearest neighbour (ids stay ids).
    """
    h, w = meta["valid_size"]
    prediction = np.asarray(prediction)
    if prediction.shape[0] < h or prediction.shape[1] < w:
        raise ValueError(f"prediction {prediction.shape[:2]} is smaller than the valid size {(h, w)}")
    return resize_nearest(prediction[:h, :w], tuple(meta["original_size"]))


# ----------------------------------------------------------------------------
# From one image's maps to COCO segments.
# ----------------------------------------------------------------------------


def to_coco_panoptic(
    result: Mapping[str, np.ndarray],
    category_ids: Sequence[int],
    thing_mask: Sequence[bool],
    *,
    names: Sequence[str] | None = None,
    threshold: float | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """One image's result -> (id map ``[H, W]`` int32, COCO ``segments_info``).

    Args:
      result: one (unbatched) output of :func:`pcv.inference.panoptic_inference`.
      category_ids: the dataset's category id of each train id.
      thing_mask: C booleans (which train ids are things).
      names: the category name of each train id (adds ``category_name``).
      threshold: the peak threshold the result was made with (for ``score``).
    Returns:
      ``id_map`` with 0 = void and ids 1, 2, ... (write it with
      :func:`pcv.data.id2rgb` for a COCO panoptic PNG), and one
      ``segments_info`` entry per id, in id order (stuff and things sorted by
      train id, then instance slot), with ``id``, ``category_id``,
      ``iscrowd`` (0), ``isthing``, ``area``, ``bbox`` (x, y, w, h) and, for
      instances:

      - ``class_score``: the mean probability of the instance's class over
        the pixels that voted for it;
      - ``peak_heat``: the height of its heatmap peak (votes gathered);
      - ``score`` = ``class_score * peak_heat / (peak_heat + threshold)``:
        confident in both its class and its votes; in [0, 1), the ranking
        score for AP (with no ``threshold``, ``class_score``).
    """
    semantic = np.asarray(result["semantic"])
    instance = np.asarray(result["instance"])
    if semantic.ndim != 2:
        raise ValueError(f"to_coco_panoptic takes one image's result; semantic has shape {semantic.shape}")
    thing_mask = np.asarray(thing_mask, bool)
    # A segment is a (train id, instance slot) pair; stuff has slot 0.
    slots = int(instance.max()) + 2
    key = np.where(semantic >= 0, (semantic.astype(np.int64) + 1) * slots + instance, 0)
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(key.shape)
    has_void = uniq[0] == 0
    id_of = np.arange(len(uniq), dtype=np.int32) + (0 if has_void else 1)  # label j -> id (void stays 0)
    id_map = id_of[inverse]
    h, w = key.shape
    n = len(uniq)
    areas = np.bincount(inverse.ravel(), minlength=n)
    rows = np.bincount((inverse * h + np.arange(h)[:, None]).ravel(), minlength=n * h).reshape(n, h) > 0
    cols = np.bincount((inverse * w + np.arange(w)[None, :]).ravel(), minlength=n * w).reshape(n, w) > 0
    scores = result.get("instance_score")
    class_probs = result.get("instance_class_prob")
    segments = []
    for j, kv in enumerate(uniq.tolist()):
        if kv == 0:
            continue
        train_id, slot = divmod(kv, slots)
        train_id -= 1
        if not 0 <= train_id < len(category_ids):
            raise ValueError(f"train id {train_id} has no category id (got {len(category_ids)} category ids)")
        r, c = np.flatnonzero(rows[j]), np.flatnonzero(cols[j])
        seg = {
            "id": int(id_of[j]),
            "category_id": int(category_ids[train_id]),
            "iscrowd": 0,
            "isthing": int(thing_mask[train_id]),
            "area": int(areas[j]),
            "bbox": [int(c[0]), int(r[0]), int(c[-1] - c[0] + 1), int(r[-1] - r[0] + 1)],
        }
        if names is not None:
            seg["category_name"] = str(names[train_id])
        if slot > 0 and scores is not None and class_probs is not None:
            heat, prob = float(np.asarray(scores)[slot - 1]), float(np.asarray(class_probs)[slot - 1])
            seg["class_score"] = round(prob, 6)
            seg["peak_heat"] = round(heat, 6)
            seg["score"] = round(prob * heat / (heat + threshold) if threshold else prob, 6)
        segments.append(seg)
    return id_map, segments


#: Result maps at the input resolution (mapped back to the original size); the rest live on the heads' map.
IMAGE_MAPS = ("semantic", "instance")


@dataclasses.dataclass
class Prediction:
    """The panoptic answer for one image.

    Attributes:
      ids: int32 ``[H, W]`` panoptic id map at the image's size, 0 = void.
      segments_info: one dict per id (:func:`to_coco_panoptic`: ``id``,
        ``category_id``, ``category_name``, ``isthing``, ``iscrowd``,
        ``area``, ``bbox``; instances also ``score``, ``class_score``,
        ``peak_heat``).
      semantic: int32 ``[H, W]`` train id per pixel, -1 void.
      instance: int32 ``[H, W]``, instance slot + 1, 0 for stuff and void.
      heatmap: ``[h, w]`` vote heatmap on the heads' map of the image (stride 4
        of the resized image, padding cropped off).
      peaks: int32 ``[N, 2]`` (y, x) on that map; boxes int32 ``[N, 4]``;
        instance_valid bool ``[N]``; instance_score ``[N]`` (peak heat).
      scale: ``(sy, sx)`` image pixels per heatmap pixel.
      meta: ``original_size``, ``valid_size`` (the resized image), ``image_id``.
    """

    ids: np.ndarray
    segments_info: list[dict]
    semantic: np.ndarray
    instance: np.ndarray
    heatmap: np.ndarray
    peaks: np.ndarray
    boxes: np.ndarray
    instance_valid: np.ndarray
    instance_score: np.ndarray
    scale: tuple[float, float]
    meta: dict

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.ids.shape)


def finish(
    result: Mapping,
    meta: Mapping,
    *,
    category_ids: Sequence[int],
    thing_mask: Sequence[bool],
    names: Sequence[str],
    threshold: float,
    stride: int,
) -> Prediction:
    """One image's raw result (maps at the padded size) -> its :class:`Prediction` at the original size."""
    maps = {key: to_original(result[key], meta) for key in IMAGE_MAPS}
    ids, segments = to_coco_panoptic({**result, **maps}, category_ids, thing_mask, names=names, threshold=threshold)
    hh, hw = (-(-int(s) // stride) for s in meta["valid_size"])
    oh, ow = meta["original_size"]
    return Prediction(
        ids=ids,
        segments_info=segments,
        semantic=maps["semantic"],
        instance=maps["instance"],
        heatmap=np.asarray(result["heatmap"])[:hh, :hw],
        peaks=np.asarray(result["peaks"]),
        boxes=np.asarray(result["boxes"]),
        instance_valid=np.asarray(result["instance_valid"]),
        instance_score=np.asarray(result["instance_score"]),
        scale=(oh / hh, ow / hw),
        meta=dict(meta),
    )


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
                import ml_dtypes  # a dependency of jax

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
        import jax

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
        import jax

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
