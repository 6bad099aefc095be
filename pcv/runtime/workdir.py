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
    schedule.json          the steps a run sized by time decided, and what they rest on
    panel.png              input | ground truth | prediction | heatmap of a few val images
    results.json           written last: the run is complete when it exists
    eval/<split>_step<N>[_flip]/   python -m pcv.evaluate's files
    predict/               python -m pcv.predict's files

Every file is written whole or not at all (:func:`write_atomic`: a temporary
name, then a rename; a GCS object appears only when its upload completes),
so a crash or a full disk never leaves a file that looks complete.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orbax.checkpoint as ocp
from etils import epath

from pcv import config as config_lib
from pcv.config import Config, InferenceConfig
from pcv.errors import CheckpointError, ConfigError, WorkdirError, one_line
from pcv.runtime.files import describe_os_error, encode_png, json_text, now_iso, read_json, write_atomic, write_json
from pcv.runtime.paths import as_path, is_cloud

CONFIG = "config.json"
CONFIG_CHANGES = "config_changes.jsonl"
CATEGORIES = "categories.json"
LOCK = "lock.json"
CHECKPOINTS = "checkpoints"
DAMAGED = "damaged"
METRICS = "metrics.jsonl"
CALIBRATION = "calibration.json"
SCHEDULE = "schedule.json"
PANEL = "panel.png"
RESULTS = "results.json"
EVAL = "eval"
PREDICT = "predict"

#: Checkpoint items: the train state and the input iterator's position.
STATE_ITEM, DATA_ITEM = "state", "data"

# ----------------------------------------------------------------------------
# Paths and atomic writes.
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# The lock.
# ----------------------------------------------------------------------------


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
            raise WorkdirError(f"cannot create work dir {self.path}: {describe_os_error(e)}") from e

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

    def read_config(self, *, calibrated: bool = False) -> Config:
        """The run's recorded config (``config.json``); with ``calibrated``, its post-processing replaced by
        what ``calibration.json`` chose, when the run has one (:meth:`read_calibration`)."""
        path = self.path / CONFIG
        if not path.exists():
            raise WorkdirError(
                f"{path} not found: {self.path} is not a trained work dir (train first, "
                "or pass the training config with --config)"
            )
        try:
            config = config_lib.from_json(path.read_text(), str(path))
        except ConfigError as e:
            raise WorkdirError(f"{path} does not describe a valid run: {e}") from None
        chosen = self.read_calibration() if calibrated else None
        if chosen:
            config = config_lib.override(config, {f"inference.{k}": v for k, v in chosen.items()})
        return config

    def read_categories(self) -> list[dict]:
        """The run's label space as ``categories.json`` keeps it: COCO categories in train-id order."""
        path = self.path / CATEGORIES
        data = read_json(path, "label space")
        if not isinstance(data, list) or not all(isinstance(c, dict) for c in data):
            raise WorkdirError(f"{path}: not a list of COCO categories")
        return data

    def read_calibration(self) -> dict | None:
        """The post-processing settings ``calibration.json`` chose, or None when the run has none.

        ``{"threshold", "top_t", "min_stuff_area"}``
        (:mod:`pcv.evaluation.calibration` writes the file). A damaged file is
        a :class:`~pcv.errors.WorkdirError` naming it.
        """
        path = self.path / CALIBRATION
        if not path.exists():
            return None
        record = read_json(path, "calibration")
        try:
            chosen = record["chosen"]
            fields = {
                "threshold": float(chosen["threshold"]),
                "top_t": int(chosen["top_t"]),
                "min_stuff_area": int(chosen["min_stuff_area"]),
            }
            InferenceConfig(**fields)  # the values' own checks
        except (TypeError, KeyError, ValueError, ConfigError) as e:
            detail = f": {e}" if isinstance(e, ConfigError) else ""
            raise WorkdirError(
                f"{path}: 'chosen' must hold a threshold, top_t and min_stuff_area{detail}; calibrate again "
                "(python -m pcv.evaluate --calibrate) or delete the file"
            ) from None
        return fields

    def read_schedule(self) -> dict | None:
        """The run length a time-budgeted run decided (``schedule.json``), or None before it decided."""
        path = self.path / SCHEDULE
        return read_json(path, "schedule") if path.exists() else None

    def write_schedule(self, record: Mapping) -> None:
        write_json(self.path / SCHEDULE, record, indent=1)

    def write_calibration(self, record: Mapping) -> None:
        """Keep a calibration record (the choice, PQ before and after, every setting tried)."""
        write_json(self.path / CALIBRATION, record, indent=1)

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
                f"could not be moved aside: {describe_os_error(e)}"
            ) from e
        log(f"checkpoint step {step} is damaged ({reason}); moved to {target}")
        return target

    def restore_model_state(self, abstract: dict, step: int | None = None) -> tuple[int, dict]:
        """``(step, {"params", "rest"})`` of a checkpoint (default the newest), nothing else read.

        ``abstract`` gives the structure, dtypes and shardings
        (``jax.ShapeDtypeStruct`` leaves). A missing step or a damaged
        checkpoint raises :class:`~pcv.errors.CheckpointError` naming it.
        """
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
