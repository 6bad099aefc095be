"""The work dir's lock: one live run per work dir; the lock of a killed run is taken over.

``lock.json`` records the holder (host, pid, start time, command, a random
token) and a heartbeat that a background thread refreshes. Creation is
exclusive: ``O_EXCL`` on a local disk, a create-if-absent precondition on
GCS. See :class:`RunLock`.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable

from pcv.errors import WorkdirError
from pcv.runtime.files import describe_os_error, now_iso, write_atomic
from pcv.runtime.paths import is_cloud
from pcv.runtime.workdir import LOCK, Workdir


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_timeout() -> float:
    """Seconds after which a lock whose heartbeat stopped is stale (``PCV_LOCK_TIMEOUT``, default 60)."""
    return float(os.environ.get("PCV_LOCK_TIMEOUT", "60"))


class RunLock:
    """The work dir's lock: one live run at a time; stale locks of killed runs are taken over.

    The holder is recorded (host, pid, start time, command) and a heartbeat
    refreshed by a background thread every ``timeout / 4`` seconds. A lock is
    stale when its process is gone (same machine: pid dead, or reused by a
    new process) or, held from another machine, when its heartbeat is older
    than :func:`lock_timeout`. Creation is exclusive (``O_EXCL`` locally, a
    ``generation = 0`` precondition on GCS); a stale lock is first moved
    aside (locally by an atomic rename that only one taker wins).
    """

    def __init__(self, workdir: Workdir, *, timeout: float | None = None):
        self.path = workdir.path / LOCK
        self.timeout = lock_timeout() if timeout is None else timeout
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "boot_id": _boot_id(),
            "process_start": _process_start(os.getpid()),
            "started": now_iso(),
            "heartbeat": time.time(),
            "command": " ".join(sys.argv)[:500],
            "token": self.token,
        }

    # -- who holds it ---------------------------------------------------------

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}  # half-written or damaged: judged by its age below

    def held_by(self, token: str) -> bool:
        """Whether the lock file names ``token`` (a :class:`RunLock`'s ``token``) as its holder."""
        return (self._read() or {}).get("token") == token

    def stale_reason(self, holder: dict) -> str | None:
        """Why ``holder``'s lock is stale, or None while it is live."""
        if not holder:
            try:
                age = time.time() - self.path.stat().mtime
            except (OSError, AttributeError):
                age = math.inf
            return "unreadable lock file" if age > self.timeout else None
        same_machine = holder.get("host") == self.info["host"] and holder.get("boot_id") == self.info["boot_id"]
        pid = int(holder.get("pid", -1))
        if same_machine and pid > 0:
            if not _alive(pid):
                return f"process {pid} is gone"
            start = holder.get("process_start")
            if start and _process_start(pid) and _process_start(pid) != start:
                return f"pid {pid} now belongs to another process"
            return None
        age = time.time() - float(holder.get("heartbeat", 0))
        if age > self.timeout:
            return f"its heartbeat stopped {age:.0f} s ago"
        return None

    @staticmethod
    def describe(holder: dict) -> str:
        if not holder:
            return "an unreadable lock file"
        age = time.time() - float(holder.get("heartbeat", 0))
        return (
            f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {holder.get('started', '?')}"
            f", heartbeat {age:.0f} s ago"
        )

    # -- acquire / release ----------------------------------------------------

    def _create(self) -> bool:
        data = json.dumps(self.info).encode()
        if is_cloud(self.path):
            if self.path.exists():
                return False
            fs = self.path._backend.fs(self.path)  # gcsfs: create only if absent (GCS precondition)
            try:
                fs.pipe_file(os.fspath(self.path), data, mode="create")
            except (FileExistsError, OSError) as e:
                if "412" in str(e) or isinstance(e, FileExistsError) or "Precondition" in str(e):
                    return False
                raise
            return self.held_by(self.token)
        try:
            fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _take_over(self, holder: dict) -> None:
        aside = self.path.parent / f"{LOCK}.stale-{secrets.token_hex(4)}"
        if is_cloud(self.path):
            current = self._read()
            if current is not None and current.get("token") == holder.get("token"):
                self.path.unlink(missing_ok=True)
            return
        try:
            os.rename(os.fspath(self.path), os.fspath(aside))  # atomic: one taker wins
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, json.JSONDecodeError):
            moved = {}
        if moved.get("token") != holder.get("token") and moved:
            os.rename(os.fspath(aside), os.fspath(self.path))  # not the lock we judged: put it back
            return
        aside.unlink(missing_ok=True)

    def acquire(self, log: Callable[[str], None] = print) -> None:
        """Take the lock or raise :class:`WorkdirError` naming the work dir and its holder."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(3):
                if self._create():
                    self._start_heartbeat()
                    return
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile: try again
                reason = self.stale_reason(holder)
                if reason is None:
                    raise WorkdirError(
                        f"work dir {self.path.parent} is in use by another run ({self.describe(holder)}); "
                        f"wait for it to end or stop it (a lock whose heartbeat is over {self.timeout:.0f} s old, "
                        f"or whose process is gone, is taken over)"
                    )
                log(f"taking over the stale lock of {self.path.parent} ({self.describe(holder)}: {reason})")
                self._take_over(holder)
        except OSError as e:
            raise WorkdirError(f"cannot lock work dir {self.path.parent}: {describe_os_error(e)}") from e
        raise WorkdirError(f"could not lock work dir {self.path.parent}: another run took it at the same time")

    def _start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(max(1.0, self.timeout / 4)):
                try:
                    if not self.held_by(self.token):
                        return  # taken over (we were judged dead): stop touching it
                    self.info["heartbeat"] = time.time()
                    write_atomic(self.path, json.dumps(self.info))
                except (OSError, WorkdirError):
                    pass  # a missed beat; the next one retries

        self._thread = threading.Thread(target=beat, name="pcv-workdir-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            if self.held_by(self.token):
                self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
