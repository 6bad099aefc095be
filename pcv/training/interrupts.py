"""SIGTERM (a preemption notice) and Ctrl-C, turned into flags the training loop polls between steps."""

from __future__ import annotations

import signal
import threading


class Interrupts:
    """SIGTERM (a preemption notice) and Ctrl-C as flags the loop polls between steps.

    With one process, SIGTERM sets ``preempted``. With several, SIGTERM is
    left to JAX's preemption notifier, which makes every host reach the same
    sync point (``CheckpointManager.reached_preemption``), so all save the
    same step. Ctrl-C sets ``interrupted``; a second Ctrl-C stops at once.
    """

    def __init__(self, *, handle_sigterm: bool):
        self.preempted = False
        self.interrupted = False
        self._old = {}
        if threading.current_thread() is not threading.main_thread():
            return
        if handle_sigterm:
            self._old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_term)
        self._old[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_int)

    def _on_term(self, signum, frame):
        self.preempted = True

    def _on_int(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def close(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}
