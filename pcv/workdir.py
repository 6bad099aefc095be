"""The work dir: its layout, lock, run identity, atomic writes and checkpoints, on any path.

One owner for everything a run keeps. ``train``, ``evaluate``, ``predict``,
``export`` and the notebook reach the files through :class:`Workdir`; no
other module types a file name. Paths are local folders or ``gs://bucket/...``
(through ``etils.epath``: gcsfs for files, tensorstore for checkpoint arrays);
other URL schemes are refused rather than turned into a local folder.
Datasets may stay on a local disk or a gcsfuse mount: only the work dir
needs to be shared by the hosts of a pod.

Layout::

    config.json            the run's config (strict JSON), written once the model and
                           checkpoint are built and restored; a restart compares against it
    config_changes.jsonl   changes accepted with --allow_config_change (when, what)
    categories.json        the label space (COCO categories in train-id order)
    lock.json              the live run: host, pid, start time, heartbeat
    checkpoints/<step>/    Orbax: ``state`` (TrainState), ``data`` (input position, one file per host)
    damaged/<step>-<time>/ checkpoints that failed to restore, moved aside and reported (never deleted)
    metrics.jsonl, events.out.tfevents.*   scalars (console line, JSON lines, TensorBoard)
    calibration.json       post-processing chosen on held-out images (pcv.evaluate --calibrate)
    panel.png              input | ground truth | prediction | heatmap of a few val images
    results.json           written last: the run is complete when it exists
    eval/<split>_step<N>[_flip]/   python -m pcv.evaluate's files
    predict/               python -m pcv.predict's files

Every file is written whole or not at all (:func:`write_atomic`: a temporary
name, then a rename; a GCS object appears only when its upload completes),
so a crash or a full disk never leaves a file that looks complete.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from etils import epath

from pcv import config as config_lib
from pcv.config import Config
from pcv.errors import CheckpointError, ConfigError, WorkdirError

CONFIG = "config.json"
CONFIG_CHANGES = "config_changes.jsonl"
CATEGORIES = "categories.json"
LOCK = "lock.json"
CHECKPOINTS = "checkpoints"
DAMAGED = "damaged"
METRICS = "metrics.jsonl"
CALIBRATION = "calibration.json"
PANEL = "panel.png"
RESULTS = "results.json"
EVAL = "eval"
PREDICT = "predict"

#: Checkpoint items: the train state and the input iterator's position.
STATE_ITEM, DATA_ITEM = "state", "data"

SCHEMES = ("gs",)


# ----------------------------------------------------------------------------
# Paths and atomic writes.
# ----------------------------------------------------------------------------


def as_path(path: str | os.PathLike) -> epath.Path:
    """A local folder (absolute, ``~`` expanded) or a ``gs://`` URL; other URLs raise :class:`WorkdirError`."""
    text = os.fspath(path) if not isinstance(path, str) else path
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in SCHEMES:
            raise WorkdirError(
                f"{text}: {scheme}:// is not supported; use a local path or gs://bucket/path "
                "(on other clouds, mount the bucket and give its local path)"
            )
        return epath.Path(text)
    if text.startswith("gs:/"):  # "gs:/bucket" after a shell or os.path.join ate a slash
        raise WorkdirError(f"{text}: did you mean gs://{text[4:].lstrip('/')}?")
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def is_cloud(path) -> bool:
    return os.fspath(path).startswith("gs://")


def _describe_os_error(e: OSError) -> str:
    return e.strerror or str(e) if isinstance(e, OSError) else str(e)


def write_atomic(path: epath.Path, data: bytes | str) -> None:
    """Write ``path`` whole or not at all; an OS error (no space, no permission) raises :class:`WorkdirError`."""
    data = data.encode() if isinstance(data, str) else data
    path = epath.Path(path)
    try:
        if is_cloud(path):
            path.write_bytes(data)  # an object appears only once its upload completed
            return
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
    except OSError as e:
        raise WorkdirError(f"cannot write {path}: {_describe_os_error(e)}") from e


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None (strict JSON), numpy scalars as Python ones."""
    if isinstance(obj, Mapping):
        return {(str(k) if not isinstance(k, str) else k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON (no NaN) of ``obj``, ending in a newline."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False) + "\n"


def write_json(path: epath.Path, obj: Any, indent: int | None = 1) -> None:
    write_atomic(path, json_text(obj, indent))


def read_json(path: epath.Path, what: str = "file") -> Any:
    try:
        text = epath.Path(path).read_text()
    except FileNotFoundError:
        raise WorkdirError(f"{path} does not exist") from None
    except OSError as e:
        raise WorkdirError(f"cannot read {what} {path}: {_describe_os_error(e)}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkdirError(f"{path} is not valid JSON ({e})") from None


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------
# The lock.
# ----------------------------------------------------------------------------


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
            raise WorkdirError(f"cannot lock work dir {self.path.parent}: {_describe_os_error(e)}") from e
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


# ----------------------------------------------------------------------------
# The work dir.
# ----------------------------------------------------------------------------


class Workdir:
    """A run's work dir (module docstring for the layout).

    Args:
      path: a local folder or ``gs://bucket/path``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = as_path(path)

    def __repr__(self) -> str:
        return f"Workdir({os.fspath(self.path)!r})"

    def __str__(self) -> str:
        return os.fspath(self.path)

    def __truediv__(self, name: str) -> epath.Path:
        return self.path / name

    @property
    def cloud(self) -> bool:
        return is_cloud(self.path)

    def create(self) -> None:
        """Make the folder (and check it is a folder we can write into)."""
        try:
            if self.path.exists() and not self.path.is_dir():
                raise WorkdirError(f"work dir {self.path} is a file, not a folder")
            self.path.mkdir(parents=True, exist_ok=True)
            if not self.cloud and not os.access(os.fspath(self.path), os.W_OK | os.X_OK):
                raise WorkdirError(f"work dir {self.path} is not writable (permission denied)")
        except OSError as e:
            raise WorkdirError(f"cannot create work dir {self.path}: {_describe_os_error(e)}") from e

    def exists(self) -> bool:
        return self.path.is_dir()

    def require(self) -> None:
        """Raise unless this is an existing work dir (for evaluate / predict / export)."""
        if not self.path.exists():
            raise WorkdirError(f"work dir {self.path} does not exist")
        if not self.path.is_dir():
            raise WorkdirError(f"work dir {self.path} is a file, not a folder")

    # -- the run's identity ---------------------------------------------------

    def has_config(self) -> bool:
        return (self.path / CONFIG).exists()

    def read_config(self) -> Config:
        """The run's recorded config (``config.json``)."""
        path = self.path / CONFIG
        if not path.exists():
            raise WorkdirError(
                f"{path} not found: {self.path} is not a trained work dir (train first, "
                "or pass the training config with --config)"
            )
        try:
            return config_lib.from_json(path.read_text(), str(path))
        except ConfigError as e:
            raise WorkdirError(f"{path} does not describe a valid run: {e}") from None

    def read_label_space(self):
        from pcv.data.panoptic import LabelSpace

        path = self.path / CATEGORIES
        data = read_json(path, "label space")
        try:
            return LabelSpace(data)
        except (TypeError, ValueError) as e:
            raise WorkdirError(f"{path}: not a list of COCO categories ({e})") from None

    def check_config(self, config: Config, *, allow_change: bool = False) -> list[tuple[str, Any, Any]]:
        """Compare ``config`` with the recorded one; refuse changes that alter what is trained.

        Returns the changed fields (empty for a first start or an identical
        restart). Fields in :data:`pcv.config.RESUMABLE` may change freely;
        others raise :class:`~pcv.errors.ConfigError` naming them, unless
        ``allow_change``.
        """
        if not self.has_config():
            return []
        recorded = self.read_config()
        changes = config_lib.changed_fields(recorded, config)
        blocking = [c for c in changes if c[0] not in config_lib.RESUMABLE]
        if blocking and not allow_change:
            shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in blocking[:6])
            more = f" (and {len(blocking) - 6} more)" if len(blocking) > 6 else ""
            raise ConfigError(
                f"the config differs from the one {self.path} was started with: {shown}{more}; "
                "a restart must train the same run: undo the change, use a new work dir, or pass "
                "--allow_config_change to continue with it (recorded in config_changes.jsonl)"
            )
        return changes

    def record_run(self, config: Config, categories: Sequence[Mapping], changes=()) -> None:
        """Write ``config.json`` and ``categories.json`` (and log accepted changes)."""
        if changes:
            self.append_line(
                CONFIG_CHANGES,
                {"time": now_iso(), "changes": [{"field": k, "old": old, "new": new} for k, old, new in changes]},
            )
        write_json(self.path / CONFIG, config.to_dict())
        write_json(self.path / CATEGORIES, [dict(c) for c in categories])

    def append_line(self, name: str, record: Mapping) -> None:
        """Append one JSON line to ``name`` (rewritten whole, so it works on GCS too)."""
        path = self.path / name
        old = path.read_text() if path.exists() else ""
        write_atomic(path, old + json_text(record, indent=None))

    # -- results --------------------------------------------------------------

    def is_complete(self) -> bool:
        return (self.path / RESULTS).exists()

    def read_results(self) -> dict:
        return read_json(self.path / RESULTS, "results")

    def write_results(self, results: Mapping) -> None:
        write_json(self.path / RESULTS, results, indent=2)

    def write_png(self, name: str, image) -> None:
        write_atomic(self.path / name, encode_png(image))

    # -- checkpoints ----------------------------------------------------------

    @property
    def checkpoint_dir(self) -> epath.Path:
        return self.path / CHECKPOINTS

    def checkpoint_steps(self) -> list[int]:
        """Steps of the finished checkpoints (ascending); unfinished temporary ones are not listed."""
        directory = self.checkpoint_dir
        if not directory.exists():
            return []
        with quiet_absl():
            manager = self.checkpoint_manager(1, read_only=True)
        try:
            return sorted(manager.all_steps())
        finally:
            manager.close()

    def checkpoint_manager(self, keep: int, *, read_only: bool = False):
        """Orbax manager of ``checkpoints/`` keeping the newest ``keep`` (>= 1)."""
        import orbax.checkpoint as ocp

        if keep < 1 and not read_only:
            raise ConfigError(f"keep_checkpoints must be >= 1, got {keep}")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=not read_only,
            save_interval_steps=0 if read_only else 1,
        )
        handlers = {STATE_ITEM: ocp.PyTreeCheckpointHandler(use_ocdbt=_ocdbt(self.path))}
        with quiet_absl(read_only):  # orbax warns that a read-only manager is read-only
            return ocp.CheckpointManager(
                self.checkpoint_dir, item_names=(STATE_ITEM, DATA_ITEM), options=options, item_handlers=handlers
            )

    def move_aside(self, step: int, reason: str, log: Callable[[str], None] = print) -> epath.Path:
        """Move a damaged checkpoint to ``damaged/`` (never deleted) and say so."""
        source = self.checkpoint_dir / str(step)
        target = self.path / DAMAGED / f"{step}-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)
        except OSError as e:
            raise CheckpointError(
                f"checkpoint step {step} in {self.checkpoint_dir} is damaged ({reason}) and "
                f"could not be moved aside: {_describe_os_error(e)}"
            ) from e
        log(f"checkpoint step {step} is damaged ({reason}); moved to {target}")
        return target

    def restore_model_state(self, abstract: dict, step: int | None = None) -> tuple[int, dict]:
        """``(step, {"params", "rest"})`` of a checkpoint (default the newest), nothing else read.

        ``abstract`` gives the structure, dtypes and shardings
        (``jax.ShapeDtypeStruct`` leaves). A missing step or a damaged
        checkpoint raises :class:`~pcv.errors.CheckpointError` naming it.
        """
        import orbax.checkpoint as ocp

        steps = self.checkpoint_steps()
        if not steps:
            raise CheckpointError(
                f"no checkpoint in {self.checkpoint_dir}: train first (python -m pcv.train --workdir={self.path})"
            )
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(
                f"step {step} is not saved in {self.checkpoint_dir}; saved steps: {', '.join(map(str, steps))}"
            )
        manager = self.checkpoint_manager(1, read_only=True)
        try:
            restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    **{
                        STATE_ITEM: ocp.args.PyTreeRestore(
                            item=abstract, restore_args=restore_args, partial_restore=True
                        )
                    }
                ),
            )
        except Exception as e:  # noqa: BLE001  orbax/tensorstore raise many types for one bad file
            raise CheckpointError(
                f"checkpoint step {step} in {self.checkpoint_dir} cannot be restored: {one_line(e)}"
            ) from None
        finally:
            manager.close()
        state = restored[STATE_ITEM]
        return int(step), {"params": state["params"], "rest": state["rest"]}


class quiet_absl:
    """Raise absl's log level to ERROR inside the block (orbax's chatter about read-only managers)."""

    def __init__(self, active: bool = True):
        self.active = active

    def __enter__(self):
        import logging

        self._logger = logging.getLogger("absl")
        self._level = self._logger.level
        if self.active:
            self._logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        return False


def _ocdbt(path) -> bool:
    """Orbax's OCDBT format, except against a storage emulator, which lacks the conditional writes it needs."""
    return not (is_cloud(path) and os.environ.get("STORAGE_EMULATOR_HOST"))


def one_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, shortened (TensorStore errors carry a whole spec).

    An OS error reported by TensorStore (a full disk, no permission) becomes
    ``<file>: <reason>``.
    """
    import re

    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "[tensorstore_spec=" in text:
        text = text.split("[tensorstore_spec=")[0].strip()
    found = re.search(r'"([^"]+)": (?:[^"\[]*: )?([^:"\[]+?) \[os_error_code', text)
    if found:
        return f"{found.group(1)}: {found.group(2)}"
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_png(image) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()
