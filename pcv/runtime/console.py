"""What a run prints: the training line with its ETA, and progress bars for evaluation loops.

::

    timer = EtaTimer(total_steps, start_step=start_step)
    timer.update(step)                       # after the step's outputs were fetched
    print(format_train_line(step, total_steps, metrics, images_per_s, timer.eta_seconds()))

    for batch in progress(val_batches, desc="eval"): ...   # or ProgressBar(n, "eval")
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.auto import tqdm as tqdm_auto

from pcv.runtime.metrics import to_float


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

    ``extra_seconds``: what comes after the last step (the final evaluation,
    calibration), added to the ETA, so it is the time to the run's end.
    ``fallback_seconds_per_step``: the rate to use while the window is empty
    (after a reset), e.g. a step time measured earlier.
    """

    def __init__(
        self,
        total_steps: int,
        *,
        start_step: int = 0,
        window: int = 20,
        clock=time.perf_counter,
        extra_seconds: float = 0.0,
        fallback_seconds_per_step: float | None = None,
    ):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.total_steps = total_steps
        self.start_step = start_step
        self.extra_seconds = extra_seconds
        self.fallback_seconds_per_step = fallback_seconds_per_step
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
        """Seconds to ``total_steps`` at the current rate, plus ``extra_seconds``; None while unknown."""
        if not self._marks:
            return None
        left = self.total_steps - self._marks[-1][1]
        rate = self.steps_per_second()
        if math.isnan(rate) and self.fallback_seconds_per_step:
            rate = 1.0 / self.fallback_seconds_per_step
        if left <= 0:
            return self.extra_seconds
        return None if math.isnan(rate) else left / rate + self.extra_seconds


def in_notebook() -> bool:
    """Whether this process is a Jupyter / Colab kernel (where a progress bar is a widget)."""
    ipython = sys.modules.get("IPython")
    try:
        return type(ipython.get_ipython()).__name__ in ("ZMQInteractiveShell", "Shell")
    except AttributeError:
        return False


class ProgressBar:
    """Progress of a loop: a live bar on a terminal or in a notebook, a few plain lines in a log.

    On a terminal (or ``tty=True``) the bar is tqdm's, redrawn at most every
    ``min_interval`` seconds; in a notebook, tqdm's widget. Else (a log
    file, a batch job) a line is printed each time another ``1 / lines`` of
    ``total`` is done, or, with no ``total``, at 10, 20, 50, 100, 200...
    items; ``close()`` prints the final count and the time taken. Rates are
    measured from the first ``update``, after the first item's compilation.
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
        notebook = file is None and in_notebook()
        if tty is None:
            isatty = getattr(self._file, "isatty", None)
            tty = bool(isatty()) if isatty is not None else False
        self._live = None
        if enabled and (tty or notebook):
            bar = tqdm_auto if notebook else tqdm
            self._live = bar(total=total, desc=desc, file=self._file, mininterval=min_interval, dynamic_ncols=True)
        self._lines = max(1, lines)
        self._clock = clock
        self._start = clock()
        self._first: tuple[float, int] | None = None  # (time, count) at the first update.
        self._milestone = 1  # Next fraction (in 1/lines) or 1-2-5 index to print at.
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
            parts.append(f"{self.count}/{self.total} ({100 * min(1.0, self.count / self.total):.0f}%)")
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
        """Whether a log line is due; advances the milestone past the count."""
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

    def _print(self, final: bool = False) -> None:
        self._file.write(self._line(final) + "\n")
        self._file.flush()

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._first is None:
            self._first = (self._clock(), self.count)
        if not self.enabled or self._closed:
            return
        if self._live is not None:
            self._live.update(n)
        elif self._due() and not (self.total and self.count >= self.total):
            self._print()  # The 100% line is close()'s, with the time taken.

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._live is not None:
            self._live.close()
        elif self.enabled:
            self._print(final=True)

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
