"""Input pipelines on grain: random-access source -> transforms -> targets -> fixed-shape batches.

Training (:func:`train_dataset`, :func:`train_dataset_from_config`)::

    source (random access: len, [i])
      .shuffle(seed)          a new permutation every epoch (grain reseeds per epoch)
      .repeat()               endless
      .random_map(transform)  per-example generator from (seed, global position)
      [process_index::process_count]   this host's share
      .batch(B / hosts, make_batch)    normalised images + PCV targets at stride 4
      .to_iter_dataset(ReadOptions(num_threads))  [.mp_prefetch(num_workers)]

Everything up to the batch is a function of the *global position* in the
shuffled, repeated stream, so

- example ``j`` of global batch ``s`` is position ``s * B + j`` whatever
  the number of hosts (host ``h`` holds positions ``= h mod hosts``): the
  union of the hosts' shares is the same global batch;
- an iterator restored with ``set_state`` (or Orbax, see
  :func:`iterator_checkpoint_args`) yields exactly the batches the
  uninterrupted one would have, augmentation included;
- worker processes give the same batches as in-process reading.

Evaluation (:func:`eval_batches`): sequential, every image resized and padded
to one shape (:func:`pcv.data.transforms.eval_transform`), the last batch
padded by repeating the last image and marked in ``valid``; each batch
carries the meta and the original examples (ground truth for PQ).

Legend: B per-host batch, CH, CW crop size, h, w = CH / stride, CW / stride,
Hp, Wp padded evaluation size.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence

import grain
import jax
import numpy as np

from pcv.data import transforms
from pcv.data.batching import DEFAULT_STRIDE, make_batch, normalize_images
from pcv.voting.grid import VoteGrid

#: Default read threads of in-process loading (grain's own default, 16, oversubscribes small hosts).
DEFAULT_READ_THREADS = 2


def _host_share(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    index = jax.process_index() if process_index is None else int(process_index)
    count = jax.process_count() if process_count is None else int(process_count)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process_index {index} must be in [0, process_count={count})")
    return index, count


def train_dataset(
    source,
    grid: VoteGrid,
    *,
    batch_size: int,
    seed: int,
    crop_size: tuple[int, int],
    scale_range: tuple[float, float] = (1.0, 1.0),
    base_size: int = 0,
    hflip: bool = True,
    color_jitter: float = 0.0,
    stride: int = DEFAULT_STRIDE,
    centroid: str = "mass",
    weight_power: float = 0.5,
    process_index: int | None = None,
    process_count: int | None = None,
    num_workers: int = 0,
    read_threads: int = DEFAULT_READ_THREADS,
) -> grain.IterDataset:
    """This host's endless stream of fixed-shape training batches.

    Args:
      source: random access over examples (``len``, ``[i]``) with a
        ``label_space`` (every pcv source, e.g. ``SyntheticPanoptic``).
      grid: the voting grid of the vote targets.
      batch_size: the *per-host* batch B.
      seed: shuffle and augmentation seed (``config.seed``).
      crop_size, scale_range, base_size, hflip, color_jitter: the training
        transform, :func:`pcv.data.transforms.train_transform`.
      stride, centroid, weight_power: the targets, :func:`make_batch`.
      process_index, process_count: this host's share; default JAX's.
      num_workers: worker processes (0 = read in this process with
        ``read_threads`` threads).
      read_threads: threads of in-process reading (grain ``ReadOptions``).
    Returns:
      A ``grain.IterDataset``; ``iter()`` of it yields dicts ``images``
      float32 ``[B, CH, CW, 3]``, ``semantic`` / ``votes`` int32 ``[B, h, w]``,
      ``weights`` float32 ``[B, h, w]``; the iterator has
      ``get_state()`` / ``set_state()``.
    """
    index, count = _host_share(process_index, process_count)
    if len(source) == 0:
        raise ValueError("the training source is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0 or read_threads < 1:
        raise ValueError(f"need num_workers >= 0 and read_threads >= 1, got {num_workers}, {read_threads}")
    transform = functools.partial(
        _train_map,
        crop_size=tuple(int(x) for x in crop_size),
        scale_range=tuple(float(x) for x in scale_range),
        base_size=int(base_size),
        hflip=bool(hflip),
        color_jitter_strength=float(color_jitter),
    )
    batch_fn = functools.partial(
        make_batch, grid=grid, label_space=source.label_space, stride=stride, centroid=centroid,
        weight_power=weight_power,
    )
    ds = grain.MapDataset.source(source).shuffle(seed=seed % 2**32).repeat()
    ds = ds.random_map(transform, seed=seed % 2**32)
    ds = ds[index::count]
    ds = ds.batch(batch_size, drop_remainder=True, batch_fn=batch_fn)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2 * read_threads))
    if num_workers > 0:
        _ensure_flags_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return it


def _ensure_flags_parsed() -> None:
    # grain's worker processes read absl flags; outside `absl.app.run` (tests,
    # notebooks, the bench) nothing has parsed them, so take the defaults.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _train_map(example, rng, **kwargs):
    # Module-level (not a lambda) so worker processes can unpickle it.
    return transforms.train_transform(example, rng, **kwargs)


#: ``config.data`` fields of the training input and their values when a config leaves them out.
#: ``crop_size`` defaults to ``config.data.image_size``.
DATA_DEFAULTS = {
    "scale_range": (1.0, 1.0),
    "base_size": 0,
    "hflip": True,
    "color_jitter": 0.0,
    "num_workers": 0,
    "read_threads": DEFAULT_READ_THREADS,
}


def data_options(config) -> dict:
    """The training-input fields of ``config.data``, defaults filled in (:data:`DATA_DEFAULTS`)."""
    d = config.data
    out = {k: d.get(k, v) for k, v in DATA_DEFAULTS.items()}
    out["crop_size"] = tuple(d.get("crop_size", None) or d.image_size)
    out["scale_range"] = tuple(out["scale_range"])
    return out


def train_dataset_from_config(source, config, grid: VoteGrid, **overrides) -> grain.IterDataset:
    """:func:`train_dataset` with the fields of a trainer config (``config.data``, ``seed``, ...).

    The per-host batch is ``config.batch_size / jax.process_count()``.
    """
    count = overrides.get("process_count") or jax.process_count()
    kwargs = dict(
        batch_size=config.batch_size // count,
        seed=config.seed,
        centroid=config.centroid,
        weight_power=config.weight_power,
        **data_options(config),
    )
    kwargs.update(overrides)
    return train_dataset(source, grid, **kwargs)


# ----------------------------------------------------------------------------
# Iterator state in Orbax checkpoints.
# ----------------------------------------------------------------------------


class _StateSnapshot:
    """The iterator state at save time, for grain's Orbax handler.

    Orbax may write in the background while the loop already draws the next
    batch; handing the handler a frozen copy keeps the saved position that of
    the saved train state.
    """

    def __init__(self, iterator):
        # The handler writes `get_state().decode()` for objects that are not
        # grain DatasetIterators: hand it the JSON it would have written.
        self._state = json.dumps(iterator.get_state(), indent=4).encode()

    def get_state(self) -> bytes:
        return self._state


def iterator_checkpoint_args(iterator, *, restore: bool = False):
    """Orbax args to save (or restore in place) a grain iterator's position.

    Use as one item of ``ocp.args.Composite`` next to the train state; grain
    writes one file per host (``process_{i}-of-{n}.json``).
    """
    if restore:
        return grain.checkpoint.CheckpointRestore(iterator)
    return grain.checkpoint.CheckpointSave(_StateSnapshot(iterator))


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def eval_batches(
    source,
    *,
    batch_size: int,
    short_side: int = 0,
    max_size: int = 0,
    pad_shape: tuple[int, int] | None = None,
    num_images: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    read_threads: int = DEFAULT_READ_THREADS,
    preprocess: Callable[[Mapping], tuple[np.ndarray, dict]] | None = None,
    normalize: bool = True,
) -> Iterator[dict]:
    """Sequential fixed-shape evaluation batches of (the first ``num_images`` of) ``source``.

    Args:
      source: random access over examples.
      batch_size: the *global* batch; every host yields ``batch_size /
        process_count`` per batch and all hosts yield the same number of
        batches (the tail is padded).
      short_side, max_size: resize (:func:`pcv.data.transforms.eval_resize_shape`;
        0 = keep the size).
      pad_shape: ``(Hp, Wp)``; default :func:`~pcv.data.transforms.eval_pad_shape`
        when ``max_size`` is set, else the first image's size rounded up to 32
        (fixed-size sources such as the synthetic data).
      num_images: evaluate only the first n.
      process_index, process_count: this host's share; default JAX's.
      read_threads: threads reading and resizing ahead.
      preprocess: ``example -> (uint8 image [Hp, Wp, 3], meta)`` in place of
        :func:`~pcv.data.transforms.eval_transform` with the arguments above
        (which are then ignored); every image must come out ``[Hp, Wp]``.
      normalize: False yields the uint8 images as they are.
    Yields:
      ``images`` float32 ``[B, Hp, Wp, 3]`` normalised (uint8 if not ``normalize``); ``valid`` bool
      ``[B]`` (False on the padding of the last batch); ``meta``: B dicts
      ``image_id``, ``original_size``, ``valid_size``; ``examples``: the B
      source examples, untouched (ground truth at the original size).
    """
    index, count = _host_share(process_index, process_count)
    if batch_size < 1 or batch_size % count:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of the {count} hosts")
    n = len(source) if num_images is None else min(int(num_images), len(source))
    if n == 0:
        return iter(())
    if preprocess is None:
        if pad_shape is None:
            if max_size > 0:
                pad_shape = transforms.eval_pad_shape(short_side, max_size)
            else:
                h, w = transforms.eval_resize_shape(np.asarray(source[0]["image"]).shape[:2], short_side, max_size)
                pad_shape = (transforms.round_up(h), transforms.round_up(w))
        pad_shape = tuple(int(x) for x in pad_shape)
        if pad_shape[0] % 32 or pad_shape[1] % 32:
            raise ValueError(f"pad_shape {pad_shape} must be multiples of 32")
        preprocess = functools.partial(
            transforms.eval_transform, short_side=short_side, max_size=max_size, pad_shape=pad_shape
        )
    padded_n = -(-n // batch_size) * batch_size
    element = functools.partial(_eval_element, source=source, n=n, preprocess=preprocess)
    ds = grain.MapDataset.range(padded_n).map(element)[index::count]
    ds = ds.batch(batch_size // count, batch_fn=functools.partial(_collate_eval, normalize=normalize))
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2 * read_threads)))


def _eval_element(i, *, source, n, preprocess):
    example = source[min(int(i), n - 1)]
    image, meta = preprocess(example)
    return {"image": image, "meta": meta, "valid": int(i) < n, "example": example}


def _collate_eval(elements: Sequence[Mapping], normalize: bool = True) -> dict:
    images = np.stack([e["image"] for e in elements])
    return {
        "images": normalize_images(images) if normalize else images,
        "valid": np.array([e["valid"] for e in elements], bool),
        "meta": [e["meta"] for e in elements],
        "examples": [e["example"] for e in elements],
    }
