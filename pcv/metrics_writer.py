"""Recording training metrics without TensorFlow: TensorBoard events, JSON lines, console.

Typical use in a trainer (only process 0 writes in a multi-host run)::

    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    timer = EtaTimer(total_steps, start_step=start_step)
    for step in range(start_step + 1, total_steps + 1):
        state, metrics = train_step(state, batch)
        if step % config.log_every == 0 or step == start_step + 1:
            metrics = jax.device_get(metrics)      # sync: times below are real
            timer.update(step)
            images_per_s = timer.steps_per_second() * config.batch_size
            writer.write_scalars(step, dict(metrics, images_per_second=images_per_s))
            print(format_train_line(step, total_steps, metrics, images_per_s,
                                    timer.eta_seconds(), learning_rate=lr))
    writer.close()

    for batch in progress(val_batches, desc="eval"): ...   # or ProgressBar(n, "eval")

``tensorboard --logdir <workdir>`` shows the scalars and images;
:func:`read_jsonl` reads ``<workdir>/metrics.jsonl`` back as a list of dicts.

The event file is written from scratch: TFRecord framing with masked CRC32C
(Castagnoli) checksums around hand-encoded ``Event`` / ``Summary`` protobufs.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

import numpy as np

# ----------------------------------------------------------------------------
# CRC32C (Castagnoli), the checksum of TFRecord framing.
# ----------------------------------------------------------------------------

_CRC32C_POLY = 0x82F63B78  # 0x1EDC6F41 bit-reversed: the CRC is computed LSB first.
_MASK32 = 0xFFFFFFFF


def _crc32c_table() -> np.ndarray:
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where((crc & 1).astype(bool), (crc >> 1) ^ np.uint32(_CRC32C_POLY), crc >> 1)
    return crc


_TABLE = _crc32c_table()  # uint32 [256]: CRC register after shifting out one byte.
_TABLE_LIST = _TABLE.tolist()  # Python ints index ~10x faster in the byte loop.

# Below this many bytes the plain byte loop is faster than the lane-parallel one.
_LANES_MIN_BYTES = 8192

# _ZERO_SHIFTS[k][j]: the register after feeding 2**k zero bytes to a register
# holding only bit j. A zero-initialised CRC is linear over GF(2), so these 32
# images define the map "append 2**k zero bytes" (filled in lazily).
_ZERO_SHIFTS: list[list[int]] = []


def _apply_int(images: list[int], x: int) -> int:
    out = 0
    for j, image in enumerate(images):
        if (x >> j) & 1:
            out ^= image
    return out


def _zero_shift(k: int) -> list[int]:
    while len(_ZERO_SHIFTS) <= k:
        if not _ZERO_SHIFTS:
            images = [_TABLE_LIST[(1 << j) & 0xFF] ^ ((1 << j) >> 8) for j in range(32)]
        else:
            prev = _ZERO_SHIFTS[-1]  # 2**(k+1) zeros = 2**k zeros, twice.
            images = [_apply_int(prev, image) for image in prev]
        _ZERO_SHIFTS.append(images)
    return _ZERO_SHIFTS[k]


def _apply_lanes(images: list[int], x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for j, image in enumerate(images):
        out ^= ((x >> j) & 1) * np.uint32(image)
    return out


def _crc32c_loop(data: bytes) -> int:
    table = _TABLE_LIST
    crc = _MASK32
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK32


def _crc32c_lanes(data: bytes) -> int:
    """CRC32C of a long message: many lanes in parallel with numpy, then folded.

    With a zero initial register the CRC is linear and
    ``raw(A + B) = shift(raw(A), len(B)) ^ raw(B)``, where ``shift`` appends
    zero bytes. Leading zero bytes leave it at zero, so the message is padded
    in front to ``lanes * length`` bytes, each lane's raw CRC is computed at
    once, and neighbouring lanes are folded pairwise (``length`` a power of
    two, so every shift is a cached ``_zero_shift``). The standard initial
    register 0xFFFFFFFF is the same as inverting the first four message bytes
    (so ``data`` must have at least four).
    """
    n = len(data)
    log_length = n.bit_length() // 2
    length = 1 << log_length  # ~sqrt(n) bytes per lane, ~sqrt(n) lanes.
    lanes = -(-n // length)
    pad = lanes * length - n
    buf = np.zeros(lanes * length, np.uint8)
    buf[pad:] = np.frombuffer(data, np.uint8)
    buf[pad : pad + 4] ^= 0xFF
    columns = np.ascontiguousarray(buf.reshape(lanes, length).T)  # [length, lanes]
    crc = np.zeros(lanes, np.uint32)
    for column in columns:
        crc = _TABLE[(crc ^ column) & 0xFF] ^ (crc >> 8)
    k = log_length
    while crc.size > 1:
        if crc.size % 2:  # A zero lane in front is more leading zeros.
            crc = np.concatenate([np.zeros(1, np.uint32), crc])
        crc = _apply_lanes(_zero_shift(k), crc[0::2]) ^ crc[1::2]
        k += 1
    return int(crc[0]) ^ _MASK32


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``: ``crc32c(b"123456789") == 0xE3069283``."""
    data = bytes(data)
    if len(data) < _LANES_MIN_BYTES:
        return _crc32c_loop(data)
    return _crc32c_lanes(data)


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC32C rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & _MASK32


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked CRC of the length, data, masked CRC of the data."""
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


# ----------------------------------------------------------------------------
# Protobuf encoding of tensorflow.Event / Summary, by hand.
# ----------------------------------------------------------------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # Negative int64 go out as ten-byte two's complement.
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _int_field(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(int(value))


def _double_field(field: int, value: float) -> bytes:
    return _key(field, _FIXED64) + struct.pack("<d", value)


def _float_field(field: int, value: float) -> bytes:
    with np.errstate(over="ignore"):  # Out of float32 range becomes +-inf, as in TF.
        return _key(field, _FIXED32) + np.asarray(value, "<f4").tobytes()


def _bytes_field(field: int, value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _key(field, _BYTES) + _varint(len(value)) + value


def _event(wall_time: float, step: int | None = None, file_version: str | None = None,
           summary: bytes | None = None) -> bytes:
    """``Event{wall_time=1, step=2, file_version=3, summary=5}``."""
    out = _double_field(1, wall_time)
    if step is not None:
        out += _int_field(2, step)
    if file_version is not None:
        out += _bytes_field(3, file_version)
    if summary is not None:
        out += _bytes_field(5, summary)
    return out


def _scalar_value(tag: str, value: float) -> bytes:
    """``Summary.Value{tag=1, simple_value=2}``."""
    return _bytes_field(1, tag) + _float_field(2, value)


_COLORSPACE = {1: 1, 3: 3, 4: 4}  # channels -> Summary.Image.colorspace (grey, RGB, RGBA).


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 ``[H, W]`` or ``[H, W, C]`` image, ``C`` in 1, 3, 4."""
    from PIL import Image  # Only image summaries need PIL.

    image = _check_image(image)
    if image.shape[2] == 1:
        image = image[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _check_image(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _COLORSPACE:
        raise ValueError(f"expected an [H, W] or [H, W, 1|3|4] image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    return image


def _image_value(tag: str, image: np.ndarray) -> bytes:
    """``Summary.Value{tag=1, image=4: Image{height=1, width=2, colorspace=3, encoded_image_string=4}}``."""
    image = _check_image(image)
    h, w, c = image.shape
    encoded = (
        _int_field(1, h) + _int_field(2, w) + _int_field(3, _COLORSPACE[c])
        + _bytes_field(4, encode_png(image))
    )
    return _bytes_field(1, tag) + _bytes_field(4, encoded)


# ----------------------------------------------------------------------------
# Plain Python scalars from numpy / JAX values.
# ----------------------------------------------------------------------------


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
# Writers: TensorBoard event file, JSON lines, and the facade over both.
# ----------------------------------------------------------------------------


class _OpenFile:
    """Flush / close / context-manager plumbing shared by the two file writers."""

    _file: Any = None

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventFileWriter(_OpenFile):
    """Writes ``events.out.tfevents.<time>.<host>`` in ``logdir``.

    Each ``add_*`` call appends one ``Event`` holding one ``Summary`` and
    flushes it, so TensorBoard (and a crash) sees every call whole. A second
    writer opened in the same second gets a ``.1``, ``.2``... suffix instead of
    appending to the first one's file.
    """

    def __init__(self, logdir: str | os.PathLike, filename_suffix: str = ""):
        os.makedirs(logdir, exist_ok=True)
        wall_time = time.time()
        base = os.path.join(
            os.fspath(logdir),
            f"events.out.tfevents.{int(wall_time):010d}.{socket.gethostname()}{filename_suffix}",
        )
        self.path, attempt = base, 0
        while True:
            try:
                self._file = open(self.path, "xb")
                break
            except FileExistsError:
                attempt += 1
                self.path = f"{base}.{attempt}"
        self._write(_event(wall_time, file_version="brain.Event:2"))
        self.flush()

    def _write(self, event: bytes) -> None:
        if self._file is None:
            raise ValueError(f"write to a closed event file {self.path}")
        self._file.write(tfrecord(event))

    def _add_summary(self, step: Any, values: list[bytes], wall_time: float | None) -> None:
        if not values:
            return
        wall_time = time.time() if wall_time is None else wall_time
        summary = b"".join(_bytes_field(1, value) for value in values)  # Summary.value, repeated.
        self._write(_event(wall_time, step=to_step(step), summary=summary))
        self.flush()

    def add_scalars(self, step: Any, scalars: Mapping[str, Any], wall_time: float | None = None) -> None:
        """One Event at ``step`` with a ``simple_value`` (float32) per tag."""
        self._add_summary(step, [_scalar_value(tag, to_float(v)) for tag, v in scalars.items()], wall_time)

    def add_images(self, step: Any, images: Mapping[str, Any], wall_time: float | None = None) -> None:
        """One Event at ``step`` with a PNG per tag: uint8 ``[H, W]``, ``[H, W, C]``
        or a batch ``[N, H, W, C]`` (tagged ``<tag>/0``, ``<tag>/1``...)."""
        values = []
        for tag, image in images.items():
            image = np.asarray(image)
            if image.ndim == 4:
                values += [_image_value(f"{tag}/{i}", im) for i, im in enumerate(image)]
            else:
                values.append(_image_value(tag, image))
        self._add_summary(step, values, wall_time)



class JsonlWriter(_OpenFile):
    """Appends ``{"step": ..., "time": ..., **metrics}`` lines to ``<workdir>/<filename>``.

    Values are plain floats; each line is flushed. Reopening after a restart
    appends, and a line torn by a crash is ended first so the next one parses.
    A resumed run may log a step again: readers should keep the last line per
    step. Non-finite values are written as ``NaN`` / ``Infinity``, which
    Python's ``json`` (and :func:`read_jsonl`) reads back.
    """

    def __init__(self, workdir: str | os.PathLike, filename: str = "metrics.jsonl"):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(os.fspath(workdir), filename)
        torn = False
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        self._file: TextIO | None = open(self.path, "a", encoding="utf-8")
        if torn:
            self._file.write("\n")
            self._file.flush()

    def write(self, step: Any, metrics: Mapping[str, Any], wall_time: float | None = None) -> None:
        reserved = {"step", "time"} & set(metrics)
        if reserved:
            raise ValueError(f"metric names {sorted(reserved)} are reserved for the line's own fields")
        if self._file is None:
            raise ValueError(f"write to a closed file {self.path}")
        record = {"step": to_step(step), "time": time.time() if wall_time is None else float(wall_time)}
        record.update((name, to_float(value)) for name, value in metrics.items())
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()



def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl file, in order; a line torn by a crash is skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class MetricWriter:
    """Scalars to TensorBoard and ``metrics.jsonl``; images to TensorBoard.

    With ``enabled=False`` (every process but 0 in a multi-host run) nothing
    is created or written and every method returns at once.
    """

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True,
                 tensorboard: bool = True, jsonl: bool = True):
        self.enabled = enabled
        self._events = EventFileWriter(workdir) if enabled and tensorboard else None
        self._jsonl = JsonlWriter(workdir) if enabled and jsonl else None

    def write_scalars(self, step: Any, scalars: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        step = to_step(step)
        scalars = {name: to_float(value) for name, value in scalars.items()}
        wall_time = time.time()
        if self._events is not None:
            self._events.add_scalars(step, scalars, wall_time)
        if self._jsonl is not None:
            self._jsonl.write(step, scalars, wall_time)

    def write_images(self, step: Any, images: Mapping[str, Any]) -> None:
        """uint8 ``[H, W, 3]`` images (also ``[H, W]``, ``[H, W, 1|4]``, ``[N, H, W, C]``)."""
        if self._events is not None:
            self._events.add_images(step, images)

    def flush(self) -> None:
        for writer in (self._events, self._jsonl):
            if writer is not None:
                writer.flush()

    def close(self) -> None:
        for writer in (self._events, self._jsonl):
            if writer is not None:
                writer.close()

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


def format_train_line(step: int, total_steps: int | None, metrics: Mapping[str, Any],
                      images_per_sec: float | None = None, eta_seconds: float | None = None, *,
                      learning_rate: float | None = None) -> str:
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

    def __init__(self, total_steps: int, *, start_step: int = 0, window: int = 20,
                 clock=time.perf_counter):
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

    def __init__(self, total: int | None = None, desc: str = "", *, file: TextIO | None = None,
                 lines: int = 10, enabled: bool = True, tty: bool | None = None,
                 min_interval: float = 0.1, clock=time.perf_counter):
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
