"""Input pipelines on grain: random-access source -> transforms -> targets -> fixed-shape batches.

Training (:func:`train_dataset`)::

    source (random access: len, [i])
      .shuffle(seed)          a new permutation every epoch (grain reseeds per epoch)
      .repeat()               endless
      .random_map(transform)  per-example generator from (seed, global position)
      [process_index::process_count]   this host's share
      .batch(B / hosts, make_batch)    uint8 images + PCV targets at stride 4
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
to one shape (:class:`pcv.data.transforms.EvalGeometry`), the last batch
padded by repeating the last image and marked in ``valid``; each batch
carries the meta and the original examples (ground truth for PQ).

Legend: B per-host batch, CH, CW crop size, h, w = CH / stride, CW / stride,
Hp, Wp padded evaluation size.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import grain
import jax
import numpy as np
from absl import flags

from pcv.config import DataConfig
from pcv.data import transforms
from pcv.data.batching import make_batch
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
    data: DataConfig,
    *,
    batch_size: int,
    seed: int,
    centroid: str = "mass",
    weight_power: float = 0.5,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """This host's endless stream of fixed-shape training batches.

    Args:
      source: random access over examples (``len``, ``[i]``) with a
        ``label_space`` (every pcv source, e.g. ``SyntheticPanoptic``).
      grid: the voting grid of the vote targets.
      data: the transform and reading settings (``crop_size``,
        ``scale_range``, ``base_size``, ``hflip``, ``color_jitter``,
        ``num_workers``, ``read_threads``).
      batch_size: the *per-host* batch B.
      seed: shuffle and augmentation seed (``config.seed``).
      centroid, weight_power: the targets, :func:`make_batch`.
      process_index, process_count: this host's share; default JAX's.
    Returns:
      A ``grain.IterDataset``; ``iter()`` of it yields dicts ``images``
      uint8 ``[B, CH, CW, 3]`` (normalised on the device), ``semantic`` /
      ``votes`` int32 ``[B, h, w]``, ``weights`` float32 ``[B, h, w]``; the
      iterator has ``get_state()`` / ``set_state()``.

    Worker processes (``data.num_workers``) exit when the trainer does, even
    when it is killed (:func:`_watch_parent`), and pass batches by pickling
    rather than through ``/dev/shm`` segments, so a killed trainer leaves no
    segment behind.
    """
    index, count = _host_share(process_index, process_count)
    if len(source) == 0:
        raise ValueError("the training source is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    transform = functools.partial(
        _train_map,
        crop_size=tuple(int(x) for x in data.train_crop),
        scale_range=tuple(float(x) for x in data.scale_range),
        base_size=int(data.base_size),
        hflip=bool(data.hflip),
        color_jitter_strength=float(data.color_jitter),
    )
    batch_fn = functools.partial(
        make_batch,
        grid=grid,
        label_space=source.label_space,
        centroid=centroid,
        weight_power=weight_power,
    )
    ds = grain.MapDataset.source(source).shuffle(seed=seed % 2**32).repeat()
    ds = ds.random_map(transform, seed=seed % 2**32)
    ds = ds[index::count]
    ds = ds.batch(batch_size, drop_remainder=True, batch_fn=batch_fn)
    threads = data.read_threads
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))
    if data.num_workers > 0:
        _ensure_flags_parsed()
        # Batches are pickled to the trainer instead of passed in shared memory:
        # a killed trainer would leave its /dev/shm segments behind.
        it = grain.experimental.WithOptionsIterDataset(it, grain.experimental.DatasetOptions(min_shm_size=NO_SHM))
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.num_workers), worker_init_fn=_watch_parent)
    return it


#: ``min_shm_size`` that keeps every array out of shared memory.
NO_SHM = 2**62


def _watch_parent(worker_index: int, worker_count: int) -> None:
    """In a worker process: exit as soon as the process that started it is gone (even killed with -9)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="pcv-watch-parent", daemon=True).start()


def _ensure_flags_parsed() -> None:
    # grain's worker processes read absl flags; outside `absl.app.run` (tests,
    # notebooks, the bench) nothing has parsed them, so take the defaults.

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _train_map(example, rng, **kwargs):
    # Module-level (not a lambda) so worker processes can unpickle it.
    return transforms.train_transform(example, rng, **kwargs)


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
    geometry: transforms.EvalGeometry,
    *,
    batch_size: int,
    num_images: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    read_threads: int = DEFAULT_READ_THREADS,
) -> Iterator[dict]:
    """Sequential fixed-shape evaluation batches of (the first ``num_images`` of) ``source``.

    Args:
      source: random access over examples.
      geometry: how each image is resized and padded (one shape for all).
      batch_size: the *global* batch; every host yields ``batch_size /
        process_count`` per batch and all hosts yield the same number of
        batches (the tail is padded by repeating the last image).
      num_images: evaluate only the first n.
      process_index, process_count: this host's share; default JAX's.
        Host h reads the images ``h, h + count, h + 2 count, ...``.
      read_threads: threads reading and resizing ahead.
    Yields:
      ``images`` uint8 ``[B, Hp, Wp, 3]``; ``valid`` bool ``[B]`` (False on
      the padding of the last batch); ``index`` int ``[B]`` (position in the
      source); ``meta``: B dicts ``image_id``, ``original_size``,
      ``valid_size``; ``examples``: the B source examples, untouched (ground
      truth at the original size).
    """
    index, count = _host_share(process_index, process_count)
    if batch_size < 1 or batch_size % count:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of the {count} hosts")
    n = len(source) if num_images is None else min(int(num_images), len(source))
    if n == 0:
        return iter(())
    padded_n = -(-n // batch_size) * batch_size
    element = functools.partial(_eval_element, source=source, n=n, geometry=geometry)
    ds = grain.MapDataset.range(padded_n).map(element)[index::count]
    ds = ds.batch(batch_size // count, batch_fn=_collate_eval)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2 * read_threads)))


def _eval_element(i, *, source, n, geometry):
    position = min(int(i), n - 1)
    example = source[position]
    image, meta = geometry.preprocess(example["image"], example.get("image_id"))
    return {"image": image, "meta": meta, "valid": int(i) < n, "index": position, "example": example}


def _collate_eval(elements: Sequence[Mapping]) -> dict:
    return {
        "images": np.stack([e["image"] for e in elements]),
        "valid": np.array([e["valid"] for e in elements], bool),
        "index": np.array([e["index"] for e in elements], np.int64),
        "meta": [e["meta"] for e in elements],
        "examples": [e["example"] for e in elements],
    }
