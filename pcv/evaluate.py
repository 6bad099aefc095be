r"""Score a trained PCV checkpoint: ``python -m pcv.evaluate --workdir=...``.

    python -m pcv.evaluate --workdir=workdir/synthetic                 # latest checkpoint, val split
    python -m pcv.evaluate --workdir=workdir/synthetic --step=1000 --flip
    python -m pcv.evaluate --config=configs/synthetic.py --workdir=... --out_dir=/tmp/eval

It restores the checkpoint (the latest, or ``--step``), predicts every image
of the split, writes the predictions as COCO panoptic files to a lasting
directory (default ``<workdir>/eval/<split>_step<N>[_flip]/``)::

    panoptic/<stem>.png     segment ids as RGB (id = R + 256 G + 256^2 B)
    predictions.json        COCO panoptic: images (original sizes),
                            annotations with segments_info (the dataset's
                            category ids), categories
    gt/panoptic_<split>.json, gt/panoptic_<split>/   ground truth, written
                            when the dataset has no files of its own
    results.json            {"step", "split", "flip", "num_images", "eval": PQ}

then scores the files it wrote with :func:`pcv.evaluation.pq_compute` (so
what is scored is exactly what was exported), prints the All / Things /
Stuff table and writes ``results.json``. The same files re-score with::

    python -m pcv.evaluation.pq --gt-json <out>/gt/panoptic_val.json \
        --pred-json <out>/predictions.json --pred-folder <out>/panoptic

Training evaluates through the same functions (:func:`make_predict_fn`,
:func:`predict_dataset`, :func:`evaluate_pq`), so a checkpoint scores here
what the trainer reported for it.

The work dir alone describes the run: the trainer saves the resolved config
(``config.json``) and the label space (``categories.json``) next to its
checkpoints; ``--config`` overrides the saved config.

Inputs follow the config (:func:`eval_geometry`): real datasets resize by
the shorter side and pad to one shape (:func:`pcv.data.transforms.eval_transform`,
COCO 800 / 1333 -> 1344 x 1344); the demo fits images into the training size.
:func:`preprocess` does one image, the input pipeline's eval loader
(:func:`pcv.data.pipeline.eval_batches`) reads ahead with it, and
:func:`pcv.data.transforms.to_original` maps predictions back to the
original image size with nearest neighbour.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np
from PIL import Image

from pcv.data import transforms
from pcv.data.batching import normalize_images
from pcv.data.transforms import to_original
from pcv.data.panoptic import LabelSpace, example_stem, write_coco_panoptic
from pcv.inference import InferenceConfig, flip_tta, panoptic_inference, to_coco_panoptic
from pcv.voting import VoteGrid

CONFIG_FILE = "config.json"
CATEGORIES_FILE = "categories.json"
#: Result maps at the input resolution (mapped back to the original size); the rest live on the heads' map.
IMAGE_MAPS = ("semantic", "instance")


# ----------------------------------------------------------------------------
# The run's description in its work dir: config and label space.
# ----------------------------------------------------------------------------


def save_run_info(workdir: str | os.PathLike, config: ml_collections.ConfigDict, categories: Sequence[Mapping]) -> None:
    """Write ``config.json`` and ``categories.json`` so evaluate / predict need only the work dir."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2) + "\n")
    plain = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dict(c).items()} for c in categories]
    (workdir / CATEGORIES_FILE).write_text(json.dumps(plain, indent=1) + "\n")


def _tuples(x):
    """JSON lists back to tuples (configs use tuples: hashable, usable as static jit arguments)."""
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return x


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config the trainer saved in ``workdir`` (``config.json``)."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the work dir has no saved config (trained before configs were saved?); "
            "pass the training config with --config=..."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    return ml_collections.ConfigDict(_tuples(data))


def load_label_space(workdir: str | os.PathLike, config) -> LabelSpace:
    """The run's label space: ``categories.json`` in the work dir, else the config's dataset."""
    path = Path(workdir) / CATEGORIES_FILE
    if path.is_file():
        try:
            return LabelSpace(json.loads(path.read_text()))
        except (json.JSONDecodeError, ValueError) as e:
            raise ValueError(f"{path}: not a list of COCO categories: {e}") from None
    from pcv import data as pcv_data

    return pcv_data.make_datasets(config)[1].label_space


# ----------------------------------------------------------------------------
# Restoring a checkpoint.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class TrainedModel:
    """A restored model: ``graphdef`` + ``state`` (``{"params", "rest"}`` pure dicts) at ``step``."""

    config: ml_collections.ConfigDict
    graphdef: object
    state: dict
    step: int
    grid: VoteGrid
    label_space: LabelSpace


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """The steps saved in ``<workdir>/checkpoints`` (empty if none)."""
    import orbax.checkpoint as ocp

    directory = Path(workdir, "checkpoints").absolute()
    if not directory.is_dir():
        return []
    mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        return sorted(mngr.all_steps())
    finally:
        mngr.close()


def restore_model(
    workdir: str | os.PathLike,
    config: ml_collections.ConfigDict | None = None,
    step: int | None = None,
    *,
    sharding=None,
) -> TrainedModel:
    """Build the network the config describes and load its weights from ``workdir``.

    Only ``params`` and ``rest`` (batch statistics, frozen constants) are read
    from the train state; the optimizer state stays on disk.

    Args:
      workdir: the trainer's work dir (``checkpoints/``, ``config.json``).
      config: overrides the saved ``config.json``.
      step: the checkpoint step; default the latest.
      sharding: where to put the arrays (default: the first device).
    """
    import orbax.checkpoint as ocp
    from flax import nnx

    from pcv.models import PCVNet
    from pcv.train import build_model

    config = load_config(workdir) if config is None else config
    grid = VoteGrid(config.grid)
    label_space = load_label_space(workdir, config)
    steps = checkpoint_steps(workdir)
    directory = Path(workdir, "checkpoints").absolute()
    if not steps:
        raise FileNotFoundError(
            f"no checkpoint in {directory}; train first: python -m pcv.train --workdir={workdir}"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ValueError(f"step {step} is not saved in {directory}; saved steps: {', '.join(map(str, steps))}")

    # The structure only: nothing is initialised, and no pretrained backbone
    # file is read (the checkpoint holds the trained weights).
    structure = config
    if config.model.get("pretrained"):
        structure = config.copy_and_resolve_references()
        structure.model.pretrained = ""
    abstract_model = nnx.eval_shape(lambda: build_model(structure, label_space.num_classes, grid))
    graphdef, params, rest = nnx.split(abstract_model, PCVNet.trainable, ...)
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {"params": nnx.to_pure_dict(params), "rest": nnx.to_pure_dict(rest)}
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), target)
    mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        state = mngr.restore(
            step, args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
        )
    except (ValueError, KeyError) as e:
        raise ValueError(
            f"checkpoint {directory}/{step} does not fit the model of the config "
            f"({config.model.backbone}, {label_space.num_classes} classes, {grid.num_bins} bins): {e}"
        ) from None
    finally:
        mngr.close()
    return TrainedModel(config, graphdef, {"params": state["params"], "rest": state["rest"]}, int(step), grid, label_space)


# ----------------------------------------------------------------------------
# Per-image preprocessing and the way back (one function each: swap for the
# input pipeline's pcv.data.transforms.eval_transform / to_original).
# ----------------------------------------------------------------------------


def eval_geometry(config) -> tuple[int, int, tuple[int, int]]:
    """``(short_side, max_size, pad_shape)`` of evaluation and prediction inputs.

    Configs of real datasets set ``data.eval_short_side`` / ``eval_max_size``
    (COCO: 800 / 1333) and optionally ``data.eval_pad_shape`` (default
    :func:`pcv.data.transforms.eval_pad_shape`, one square shape for both
    orientations). Without them (the synthetic demo) images are fitted into
    ``data.image_size``, the size the model was trained at, rounded up to a
    multiple of 32. One padded shape: one compiled program for every image.
    """
    d = config.data
    short_side, max_size = int(d.get("eval_short_side", 0) or 0), int(d.get("eval_max_size", 0) or 0)
    if short_side > 0:
        pad = tuple(d.get("eval_pad_shape", ()) or ()) or transforms.eval_pad_shape(short_side, max_size)
        return short_side, max_size, tuple(int(x) for x in pad)
    h, w = (int(s) for s in d.image_size)
    return 0, 0, (transforms.round_up(h), transforms.round_up(w))


def input_shape(config) -> tuple[int, int]:
    """``(Hp, Wp)``: the one padded input shape of evaluation and prediction (:func:`eval_geometry`)."""
    return eval_geometry(config)[2]


def fit_size(hw: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest ``(h, w)`` of the image's aspect ratio inside ``box`` (at least 1 x 1)."""
    h, w = hw
    scale = min(box[0] / h, box[1] / w)
    return max(1, min(box[0], round(h * scale))), max(1, min(box[1], round(w * scale)))


def preprocess(example: Mapping, config) -> tuple[np.ndarray, dict]:
    """One image, resized and padded for the network (:func:`eval_geometry`).

    Args:
      example: ``image`` uint8 ``[H, W, 3]`` and optionally ``image_id``.
      config: reads ``data.eval_short_side`` / ``eval_max_size`` /
        ``eval_pad_shape``, or ``data.image_size``.
    Returns:
      ``image`` uint8 ``[Hp, Wp, 3]`` (bilinear resize, padded at the bottom /
      right with the mean colour) and ``meta``: ``image_id``,
      ``original_size`` ``(H, W)``, ``valid_size`` ``(h, w)`` (the resized
      image, top-left of the padded one); :func:`to_original` maps back.
    """
    short_side, max_size, pad_shape = eval_geometry(config)
    image = np.asarray(example["image"])
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image {example.get('image_id', '?')!r}: expected uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    if short_side > 0:
        return transforms.eval_transform(example, short_side=short_side, max_size=max_size, pad_shape=pad_shape)
    return transforms.resize_and_pad(example, fit_size(image.shape[:2], tuple(config.data.image_size)), pad_shape)


def result_to_original(result: Mapping[str, np.ndarray], meta: Mapping) -> dict:
    """One image's inference result with its ``semantic`` / ``instance`` maps at the original size.

    The heads' outputs (``heatmap``, ``boxes``, ``peaks``) stay at map
    resolution of the padded input; ``meta`` is kept under ``"meta"`` to
    relate them to the image (``valid_size`` / stride).
    """
    out = dict(result)
    for key in IMAGE_MAPS:
        out[key] = to_original(result[key], meta)
    out["meta"] = dict(meta)
    return out


# ----------------------------------------------------------------------------
# The prediction path shared by training, evaluate and predict.
# ----------------------------------------------------------------------------


def make_predict_fn(graphdef, config, grid: VoteGrid, thing_mask, *, flip: bool = False, mesh=None):
    """``(model_state, images) -> result``: the network and the panoptic post-processing.

    Args:
      graphdef: the network's NNX graph definition (``nnx.split``).
      config: reads ``inference`` (:class:`pcv.inference.InferenceConfig`).
      grid: the voting grid.
      thing_mask: bool ``[C]`` by train id.
      flip: horizontal-flip test-time augmentation (:func:`pcv.inference.flip_tta`).
      mesh: a mesh with a ``data`` axis to shard the batch over (the batch
        size must then be a multiple of its size); None: one device.
    Returns:
      a function of ``model_state`` (``{"params", "rest"}``) and uint8
      images ``[B, Hp, Wp, 3]`` (Hp, Wp multiples of 32) returning the
      batched :func:`pcv.inference.panoptic_inference` result as numpy, maps
      at ``(Hp, Wp)``.
    """
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P

    infer_config = InferenceConfig(**config.inference.to_dict())
    thing_mask = np.asarray(thing_mask, bool)

    def forward(model_state, images):
        m = nnx.merge(graphdef, model_state["params"], model_state["rest"])
        m.eval()
        if flip:
            return flip_tta(m, images, grid)
        return m(images)

    infer_fn = lambda s, v, hw: panoptic_inference(s, v, grid, thing_mask, infer_config, output_size=hw)  # noqa: E731
    if mesh is not None:
        data, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
        forward_jit = jax.jit(forward, in_shardings=(replicated, data))
        # Inference runs sharded on the batch; its (small) result is gathered to
        # every device, so each host can read all of it, also when the mesh
        # spans several hosts (every host then passes the same images).
        infer = jax.jit(infer_fn, static_argnums=2, out_shardings=replicated)
    else:
        data = None
        forward_jit = jax.jit(forward)
        infer = jax.jit(infer_fn, static_argnums=2)

    def predict(model_state, images):
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images [B, H, W, 3], got {images.dtype} {images.shape}")
        x = normalize_images(images)
        x = jax.device_put(x, data) if data is not None else x
        outputs = forward_jit(model_state, x)
        return jax.device_get(infer(outputs["semantic"], outputs["votes"], tuple(images.shape[1:3])))

    predict.forward = forward_jit  # the logits, for pictures of the raw votes
    return predict


def predict_dataset(
    predict_fn,
    model_state,
    dataset,
    config,
    *,
    batch_size: int,
    num_images: int | None = None,
    progress: bool = False,
) -> Iterator[tuple[int, dict, dict]]:
    """Predict the first ``num_images`` (default all) examples of a dataset in fixed-size batches.

    Reading and :func:`preprocess` run ahead in threads
    (:func:`pcv.data.pipeline.eval_batches`). Yields ``(index, example,
    result)`` in order, ``result`` one image's inference output with maps at
    the example's original size (:func:`result_to_original`). The last batch
    is padded by repeating its last image (one compiled shape).
    """
    import functools

    from pcv import metrics_writer
    from pcv.data import pipeline

    n = len(dataset) if num_images is None else min(int(num_images), len(dataset))
    batches = pipeline.eval_batches(
        dataset,
        batch_size=batch_size,
        num_images=n,
        process_index=0,  # evaluation is single-host (the whole split on this host)
        process_count=1,
        preprocess=functools.partial(preprocess, config=config),
        normalize=False,
    )
    bar = metrics_writer.ProgressBar(n, "eval") if progress else None
    start = 0
    for batch in batches:
        result = predict_fn(model_state, batch["images"])
        count = int(np.sum(batch["valid"]))
        for j in range(count):
            one = jax.tree.map(lambda a: a[j], result)
            yield start + j, batch["examples"][j], result_to_original(one, batch["meta"][j])
        start += count
        if bar:
            bar.update(count)
    if bar:
        bar.close()


def eval_batch_size(config, mesh=None) -> int:
    """``config.batch_size`` (or ``eval_batch_size``) rounded up to a multiple of the mesh size."""
    b = int(config.get("eval_batch_size", 0) or config.batch_size)
    d = 1 if mesh is None else int(mesh.devices.size)
    return -(-b // d) * d


def evaluate_pq(
    predict_fn,
    model_state,
    dataset,
    config,
    *,
    batch_size: int,
    num_images: int | None = None,
    num_shown: int = 0,
    progress: bool = True,
) -> tuple[dict, list]:
    """PQ of the model on ``dataset``, in memory (what training reports).

    Returns the :mod:`pcv.evaluation` result dict and the first ``num_shown``
    ``(example, result)`` pairs (for panels).
    """
    from pcv.evaluation import PQStat, pq_image_stats

    n = len(dataset) if num_images is None else min(num_images, len(dataset))
    stat = PQStat()
    shown = []
    for i, example, result in predict_dataset(
        predict_fn, model_state, dataset, config, batch_size=batch_size, num_images=n, progress=progress
    ):
        id_map, segments = to_coco_panoptic(result, dataset.category_ids, dataset.thing_mask)
        stat += pq_image_stats(
            example["segment_ids"], example["segments_info"], id_map, segments, dataset.categories, image_id=i
        )
        if len(shown) < num_shown:
            shown.append((example, result))
    return stat.results(dataset.categories), shown


# ----------------------------------------------------------------------------
# Export and scoring from files.
# ----------------------------------------------------------------------------


def eval_dataset(config, split: str):
    """The random-access source of ``split`` (``"val"`` or ``"train"``) of the config's dataset."""
    from pcv import data as pcv_data

    train, val = pcv_data.make_datasets(config)
    sources = {"train": train, "val": val}
    if split not in sources:
        raise ValueError(f"split {split!r}: choose one of {', '.join(sources)}")
    return sources[split]


def ground_truth_files(dataset, split: str, indices: Sequence[int], folder: Path) -> tuple[Path, Path]:
    """``(gt JSON, gt PNG folder)`` of the evaluated images, for :func:`pcv.evaluation.pq_compute`.

    A dataset that has COCO panoptic files of its own says so with a
    ``coco_panoptic_files()`` method returning ``{"json", "panoptic_folder"}``;
    they are used when the whole split is evaluated. Otherwise (the synthetic
    data, or a subset) the ground truth is written with
    :func:`pcv.data.write_coco_panoptic`.
    """
    own = getattr(dataset, "coco_panoptic_files", None)
    if own is not None and len(indices) == len(dataset):
        files = own()
        return Path(files["json"]), Path(files["panoptic_folder"])
    files = write_coco_panoptic(dataset, folder, split=split, indices=indices)
    return files["json"], files["panoptic_folder"]


def _json_ready(x):
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def evaluate_checkpoint(
    config: ml_collections.ConfigDict | None,
    workdir: str | os.PathLike,
    step: int | None = None,
    *,
    split: str = "val",
    out_dir: str | os.PathLike | None = None,
    flip: bool = False,
    num_images: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    log=print,
) -> dict:
    """Restore a checkpoint, export its predictions on a split as COCO panoptic, score them.

    Args:
      config: the run's config; None reads ``<workdir>/config.json``.
      workdir: the trainer's work dir.
      step: checkpoint step; default the latest.
      split: ``"val"`` or ``"train"``.
      out_dir: default ``<workdir>/eval/<split>_step<N>[_flip]``.
      flip: horizontal-flip test-time augmentation.
      num_images: evaluate the first this many images (default all).
      num_workers: processes for scoring (:func:`pcv.evaluation.pq_compute`;
        None: by set size, 0: in this process). Worker processes are
        spawned, so a script calling this needs the usual
        ``if __name__ == "__main__":`` guard.
      progress: show a progress bar.
      log: where the table goes (``print``; a no-op to stay quiet).
    Returns:
      the dict written to ``results.json``: ``step``, ``split``, ``flip``,
      ``num_images``, ``eval`` (the :func:`pcv.evaluation.pq_compute` result
      of the exported files) and ``files`` (paths).
    """
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from pcv.evaluation import format_table, id2rgb, pq_compute

    workdir = Path(workdir)
    config = load_config(workdir) if config is None else config
    devices = jax.devices()[: config.get("num_devices", 0) or None]
    mesh = Mesh(np.array(devices), ("data",))
    model = restore_model(workdir, config, step, sharding=NamedSharding(mesh, P()))
    dataset = eval_dataset(config, split)
    if num_images is None:
        if len(dataset) > 10**6:
            raise ValueError(f"split {split!r} is unbounded ({len(dataset)} examples); pass num_images")
        num_images = len(dataset)
    indices = list(range(min(int(num_images), len(dataset))))
    if dataset.label_space != model.label_space:
        raise ValueError(
            f"the {split} split's categories differ from the model's ({workdir / CATEGORIES_FILE}); "
            "evaluate on the dataset the model was trained for"
        )

    out = Path(out_dir) if out_dir else workdir / "eval" / f"{split}_step{model.step}{'_flip' if flip else ''}"
    png_dir = out / "panoptic"
    png_dir.mkdir(parents=True, exist_ok=True)
    predict_fn = make_predict_fn(model.graphdef, config, model.grid, dataset.thing_mask, flip=flip, mesh=mesh)
    images, annotations = [], []
    for i, example, result in predict_dataset(
        predict_fn, model.state, dataset, config, batch_size=eval_batch_size(config, mesh), num_images=len(indices),
        progress=progress,
    ):
        id_map, segments = to_coco_panoptic(result, dataset.category_ids, dataset.thing_mask)
        stem = example_stem(example, split)
        Image.fromarray(id2rgb(id_map)).save(png_dir / f"{stem}.png")
        image_id = example["image_id"]
        image_id = int(image_id) if isinstance(image_id, (int, np.integer)) else image_id
        h, w = result["meta"]["original_size"]
        images.append({"id": image_id, "file_name": example.get("file_name") or f"{stem}.png", "height": h, "width": w})
        annotations.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments})
    pred_json = out / "predictions.json"
    pred_json.write_text(
        json.dumps(
            _json_ready(
                {
                    "info": {"description": f"pcv predictions, {split} split, step {model.step}, flip {flip}"},
                    "images": images,
                    "annotations": annotations,
                    "categories": list(dataset.categories),
                }
            )
        )
    )

    gt_json, gt_folder = ground_truth_files(dataset, split, indices, out / "gt")
    scores = pq_compute(gt_json, pred_json, gt_folder, png_dir, num_workers=num_workers)
    results = {
        "step": model.step,
        "split": split,
        "flip": bool(flip),
        "num_images": len(indices),
        "eval": scores,
        "files": {
            "predictions_json": str(pred_json),
            "predictions_folder": str(png_dir),
            "gt_json": str(gt_json),
            "gt_folder": str(gt_folder),
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"step {model.step}, {split} split, {len(indices)} images{', flip TTA' if flip else ''}:")
    log(format_table(scores))
    log(f"wrote {out}")
    return results


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------


def main(argv=None) -> int:
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]); default <workdir>/config.json.")
    flags.DEFINE_string("workdir", None, "The trainer's work dir.", required=True)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
    flags.DEFINE_string("split", "val", "Split to evaluate: val or train.")
    flags.DEFINE_string("out_dir", None, "Output dir (default <workdir>/eval/<split>_step<N>).")
    flags.DEFINE_bool("flip", False, "Horizontal-flip test-time augmentation.")
    flags.DEFINE_integer("num_images", None, "Evaluate only the first N images.")
    flags.DEFINE_integer("workers", None, "Scoring processes (default: by set size; 0 = in-process).")

    def run(_):
        from absl import logging

        logging.set_verbosity(logging.WARNING)
        f = flags.FLAGS
        try:
            evaluate_checkpoint(
                f.config, f.workdir, f.step, split=f.split, out_dir=f.out_dir, flip=f.flip,
                num_images=f.num_images, num_workers=f.workers,
            )
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(run, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
