"""Recording training metrics: TensorBoard events (tensorboardX), JSON lines, the console.

Typical use in a trainer (only process 0 writes in a multi-host run)::

    writer = MetricWriter(workdir.path, enabled=jax.process_index() == 0)
    timer = EtaTimer(total_steps, start_step=start_step)
    for step in range(start_step + 1, total_steps + 1):
        state, metrics = train_step(state, batch)
        if step % config.log_every == 0 or step == start_step + 1:
            metrics = jax.device_get(metrics)      # sync: times below are real
            timer.update(step)
            images_per_s = timer.steps_per_second() * config.batch_size
            writer.write_scalars(step, dict(metrics, images_per_second=images_per_s))
            print(format_train_line(step, total_steps, metrics, images_per_s, timer.eta_seconds()))
    writer.close()

    for batch in progress(val_batches, desc="eval"): ...   # or ProgressBar(n, "eval")

``tensorboard --logdir <workdir>`` shows the scalars, images and the
run's config (text); :func:`read_jsonl` reads ``<workdir>/metrics.jsonl``
back as a list of dicts. Both go through one path layer (``etils.epath``),
so a work dir on ``gs://`` works: a GCS object cannot be appended to, so
there the files are rewritten whole at each flush (they are small).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from etils import epath
from tensorboardX import record_writer, summary
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import RecordWriter, directory_check

from pcv.errors import WorkdirError


def to_float(value: Any) -> float:
    """A plain ``float`` from a Python number, numpy scalar/array or JAX array of size 1.

    bfloat16 and bool count as numbers; complex numbers and strings do not.
    """
    array = np.asarray(value)  # Fetches a JAX array to the host.
    if array.size != 1:
        raise ValueError(f"expected a scalar, got an array of shape {array.shape}")
    if array.dtype.kind not in "biufV":  # "V": ml_dtypes such as bfloat16.
        raise TypeError(f"expected a real number, got {array.dtype}")
    return float(array.reshape(()))


def to_step(step: Any) -> int:
    """A plain ``int`` step from a Python, numpy or JAX integer."""
    array = np.asarray(step)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"step must be an integer scalar, got {array.dtype} {array.shape}")
    return int(array.reshape(()))


# ----------------------------------------------------------------------------
# Files through epath (local append, or whole-object rewrites on GCS).
# ----------------------------------------------------------------------------


class _GcsAppendFile:
    """An append-only file on GCS: kept in memory, uploaded whole on flush (objects are immutable)."""

    def __init__(self, path: str):
        self.path = epath.Path(path)
        self._data = io.BytesIO()
        if self.path.exists():
            self._data.write(self.path.read_bytes())
        self._dirty = False

    def write(self, data: bytes) -> None:
        self._data.write(data)
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self.path.write_bytes(self._data.getvalue())
            self._dirty = False

    def close(self) -> None:
        self.flush()


class _GcsRecordWriterFactory:
    """tensorboardX's writer factory for ``gs://`` event files, through :mod:`etils.epath`."""

    def open(self, path: str):
        return _GcsAppendFile(path)

    def directory_check(self, path: str) -> None:
        pass  # GCS has no folders to create


def _register_gcs() -> None:

    record_writer.register_writer_factory("gs", _GcsRecordWriterFactory())


class EventFile:
    """One TensorBoard event file, written synchronously with tensorboardX's protos and record framing.

    (tensorboardX's ``SummaryWriter`` writes from a thread of its own, where
    a full disk would be lost in a traceback; here every write happens in the
    caller, so a failure is the caller's error.) A second writer opened in
    the same second gets a ``.1``, ``.2``... suffix.
    """

    def __init__(self, logdir: str):

        _register_gcs()
        self._event = event_pb2.Event
        directory_check(logdir)
        base = f"{logdir.rstrip('/')}/events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        self.path, n = base, 0
        while epath.Path(self.path).exists():
            n += 1
            self.path = f"{base}.{n}"
        self._writer = RecordWriter(self.path)
        self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def add(self, summaries: list, step: int, wall_time: float) -> None:
        """One event holding the given ``Summary`` protos' values."""
        if not summaries:
            return
        event = self._event(wall_time=wall_time, step=step)
        for one in summaries:
            event.summary.value.extend(one.value)
        self._write(event)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class JsonlWriter:
    """Appends ``{"step": ..., "time": ..., **metrics}`` lines to ``<logdir>/<filename>``.

    Values are plain floats (non-finite ones written as ``null``, so every
    line is strict JSON); each line is flushed. Reopening after a restart
    appends, and a line torn by a crash is ended first so the next one
    parses. A resumed run may log a step again: readers keep the last line
    per step.
    """

    def __init__(self, logdir, filename: str = "metrics.jsonl"):
        self.path = epath.Path(logdir) / filename
        cloud = os.fspath(self.path).startswith("gs://")
        if cloud:
            self._file: Any = _GcsAppendFile(os.fspath(self.path))
            torn = self._file._data.tell() > 0 and not self._file._data.getvalue().endswith(b"\n")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = False
            if self.path.exists() and self.path.stat().length > 0:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    torn = f.read(1) != b"\n"
            self._file = open(self.path, "ab")
        if torn:
            self._file.write(b"\n")
            self._file.flush()

    def write(self, step: Any, metrics: Mapping[str, Any], wall_time: float | None = None) -> None:
        reserved = {"step", "time"} & set(metrics)
        if reserved:
            raise ValueError(f"metric names {sorted(reserved)} are reserved for the line's own fields")
        if self._file is None:
            raise ValueError(f"write to a closed file {self.path}")
        record = {"step": to_step(step), "time": time.time() if wall_time is None else float(wall_time)}
        for name, value in metrics.items():
            value = to_float(value)
            record[name] = value if math.isfinite(value) else None
        self._file.write((json.dumps(record, allow_nan=False) + "\n").encode())
        self._file.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path) -> list[dict]:
    """The records of a metrics.jsonl file, in order; a line torn by a crash is skipped."""
    records = []
    for line in epath.Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricWriter:
    """Scalars to TensorBoard and ``metrics.jsonl``; images and text to TensorBoard.

    With ``enabled=False`` (every process but 0 in a multi-host run) nothing
    is created or written and every method returns at once.
    """

    def __init__(self, logdir, *, enabled: bool = True, tensorboard: bool = True, jsonl: bool = True):
        self.enabled = enabled
        self.logdir = os.fspath(logdir)
        self._events = None
        with self._failures():
            if enabled and tensorboard:
                self._events = EventFile(self.logdir)
            self._jsonl = JsonlWriter(self.logdir) if enabled and jsonl else None

    def write_scalars(self, step: Any, scalars: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        step = to_step(step)
        scalars = {name: to_float(value) for name, value in scalars.items()}
        wall_time = time.time()
        with self._failures():
            if self._events is not None:
                # A rate not measured yet is NaN: left out, as on the console.
                values = [summary.scalar(tag, value) for tag, value in scalars.items() if math.isfinite(value)]
                self._events.add(values, step, wall_time)
                self._events.flush()
            if self._jsonl is not None:
                self._jsonl.write(step, scalars, wall_time)

    def write_images(self, step: Any, images: Mapping[str, Any]) -> None:
        """uint8 ``[H, W, 3]`` images (also ``[H, W]`` grey)."""
        if self._events is None:
            return

        with self._failures():
            values = []
            for tag, image in images.items():
                image = np.asarray(image)
                if image.ndim == 2:
                    image = np.repeat(image[..., None], 3, -1)
                values.append(summary.image(tag, image, dataformats="HWC"))
            self._events.add(values, to_step(step), time.time())
            self._events.flush()

    def write_text(self, step: Any, texts: Mapping[str, str]) -> None:
        """Text (markdown) shown in TensorBoard's text tab, e.g. the run's config."""
        if self._events is None:
            return

        with self._failures():
            self._events.add([summary.text(tag, text) for tag, text in texts.items()], to_step(step), time.time())
            self._events.flush()

    def flush(self) -> None:
        with self._failures():
            for writer in (self._events, self._jsonl):
                if writer is not None:
                    writer.flush()

    def close(self) -> None:
        with self._failures():
            for writer in (self._events, self._jsonl):
                if writer is not None:
                    writer.close()
        self._events = self._jsonl = None

    @contextlib.contextmanager
    def _failures(self):
        """An OS error (no space, no permission) as one line naming the work dir's metric files."""
        try:
            yield
        except OSError as e:
            raise WorkdirError(f"cannot write the metrics in {self.logdir}: {e.strerror or e}") from e

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------
# Console: the training log line, its ETA, and a progress bar for eval loops.
# ----------------------------------------------------------------------------
