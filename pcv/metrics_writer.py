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
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

import numpy as np
from etils import epath


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
    from tensorboardX import record_writer

    record_writer.register_writer_factory("gs", _GcsRecordWriterFactory())


class EventFile:
    """One TensorBoard event file, written synchronously with tensorboardX's protos and record framing.

    (tensorboardX's ``SummaryWriter`` writes from a thread of its own, where
    a full disk would be lost in a traceback; here every write happens in the
    caller, so a failure is the caller's error.) A second writer opened in
    the same second gets a ``.1``, ``.2``... suffix.
    """

    def __init__(self, logdir: str):
        from tensorboardX.proto import event_pb2
        from tensorboardX.record_writer import RecordWriter, directory_check

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
        for summary in summaries:
            event.summary.value.extend(summary.value)
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
                from tensorboardX import summary

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
        from tensorboardX import summary

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
        from tensorboardX import summary

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
            from pcv.errors import WorkdirError

            raise WorkdirError(f"cannot write the metrics in {self.logdir}: {e.strerror or e}") from e

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------
# Console: the training log line, its ETA, and a progress bar for eval loops.
# ----------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h07m``, ``3d04h``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_train_line(
    step: int,
    total_steps: int | None,
    metrics: Mapping[str, Any],
    images_per_sec: float | None = None,
    eta_seconds: float | None = None,
    *,
    learning_rate: float | None = None,
) -> str:
    """``step 120/2000  loss 1.234  semantic_loss 0.5  lr 1.0e-02  12.3 img/s  ETA 3m05s``.

    Metrics keep their order; a rate or learning rate that is ``None`` (or a
    NaN rate: not measured yet) is left out; the ETA shows ``?`` until it is
    known (when ``total_steps`` is given).
    """
    parts = [f"step {step}/{total_steps}" if total_steps is not None else f"step {step}"]
    parts += [f"{name} {to_float(value):.4g}" for name, value in metrics.items()]
    if learning_rate is not None:
        parts.append(f"lr {to_float(learning_rate):.1e}")
    if images_per_sec is not None and math.isfinite(images_per_sec):
        parts.append(f"{images_per_sec:.1f} img/s")
    if total_steps is not None:
        parts.append(f"ETA {format_duration(eta_seconds)}")
    return "  ".join(parts)


class EtaTimer:
    """Training throughput and time left, over a window of the latest ``update`` calls.

    Call ``update(step)`` once step ``step`` is done *and its outputs were
    fetched* (JAX dispatches asynchronously: an un-synced step times the
    dispatch, not the work). The first call after ``start_step`` only starts
    the clock, so the compilation of the first step, which happens before it,
    never counts; calls at or before ``start_step`` are ignored for the same
    reason. Call ``reset()`` after a pause (evaluation, checkpointing) so the
    pause does not count either.
    """

    def __init__(self, total_steps: int, *, start_step: int = 0, window: int = 20, clock=time.perf_counter):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.total_steps = total_steps
        self.start_step = start_step
        self._clock = clock
        self._marks: deque[tuple[float, int]] = deque(maxlen=window + 1)  # (time, step)

    def update(self, step: int) -> None:
        step = int(step)
        if step > self.start_step:
            self._marks.append((self._clock(), step))

    def reset(self) -> None:
        self._marks.clear()

    def steps_per_second(self) -> float:
        """Steps per second over the window; NaN until two updates were made."""
        if len(self._marks) < 2:
            return math.nan
        (t0, s0), (t1, s1) = self._marks[0], self._marks[-1]
        if t1 <= t0 or s1 <= s0:
            return math.nan
        return (s1 - s0) / (t1 - t0)

    def eta_seconds(self) -> float | None:
        """Seconds to ``total_steps`` at the current rate; None while unknown."""
        if not self._marks:
            return None
        left = self.total_steps - self._marks[-1][1]
        if left <= 0:
            return 0.0
        rate = self.steps_per_second()
        return None if math.isnan(rate) else left / rate


class ProgressBar:
    """Progress of a loop: one redrawn line on a terminal, a few lines in a log.

    On a TTY the line is redrawn at most every ``min_interval`` seconds. Else
    (a log file, a batch job) a line is printed each time another
    ``1 / lines`` of ``total`` is done, or, with no ``total``, at 10, 20, 50,
    100, 200... items; ``close()`` prints the final count and the time taken.
    Rates are measured from the first ``update``, after the first item's
    compilation.
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        *,
        file: TextIO | None = None,
        lines: int = 10,
        enabled: bool = True,
        tty: bool | None = None,
        min_interval: float = 0.1,
        clock=time.perf_counter,
    ):
        self.total = total
        self.desc = desc
        self.count = 0
        self.enabled = enabled
        self._file = sys.stdout if file is None else file
        if tty is None:
            isatty = getattr(self._file, "isatty", None)
            tty = bool(isatty()) if isatty is not None else False
        self._tty = tty
        self._lines = max(1, lines)
        self._min_interval = min_interval
        self._clock = clock
        self._start = clock()
        self._first: tuple[float, int] | None = None  # (time, count) at the first update.
        self._milestone = 1  # Next fraction (in 1/lines) or 1-2-5 index to print at.
        self._last_draw = -math.inf
        self._width = 0
        self._closed = False

    def _rate(self) -> float | None:
        if self._first is None:
            return None
        t0, c0 = self._first
        dt = self._clock() - t0
        return (self.count - c0) / dt if dt > 0 and self.count > c0 else None

    def _line(self, final: bool) -> str:
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(1.0, self.count / self.total)
            if self._tty:
                filled = int(frac * 30)
                parts.append("[" + "#" * filled + "." * (30 - filled) + "]")
            parts.append(f"{self.count}/{self.total} ({100 * frac:.0f}%)")
        else:
            parts.append(f"{self.count}")
        rate = self._rate()
        if rate is not None:
            parts.append(f"{rate:.3g} it/s")
        if final:
            parts.append(f"in {format_duration(self._clock() - self._start)}")
        elif self.total and rate is not None:
            parts.append(f"ETA {format_duration(max(0, self.total - self.count) / rate)}")
        return "  ".join(parts)

    def _due(self) -> bool:
        """Whether a non-TTY line is due; advances the milestone past the count."""
        due = False
        if self.total:
            while self._milestone <= self._lines and self.count * self._lines >= self._milestone * self.total:
                self._milestone += 1
                due = True
        else:
            while self.count >= _one_two_five(self._milestone):
                self._milestone += 1
                due = True
        return due

    def _draw(self, final: bool = False) -> None:
        line = self._line(final)
        if self._tty:
            pad = " " * max(0, self._width - len(line))
            self._file.write("\r" + line + pad + ("\n" if final else ""))
            self._width = len(line)
        else:
            self._file.write(line + "\n")
        self._file.flush()

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._first is None:
            self._first = (self._clock(), self.count)
        if not self.enabled or self._closed:
            return
        if self._tty:
            now = self._clock()
            if now - self._last_draw >= self._min_interval:
                self._last_draw = now
                self._draw()
        elif self._due() and not (self.total and self.count >= self.total):
            self._draw()  # The 100% line is close()'s, with the time taken.

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(final=True)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _one_two_five(i: int) -> int:
    """10, 20, 50, 100, 200, 500, ... for i = 1, 2, 3, ..."""
    i -= 1
    return (1, 2, 5)[i % 3] * 10 ** (i // 3 + 1)


def progress(iterable: Iterable, total: int | None = None, desc: str = "", **kwargs) -> Iterator:
    """Yield from ``iterable`` while showing a :class:`ProgressBar` (``total`` defaults to ``len``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with ProgressBar(total, desc, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update()
