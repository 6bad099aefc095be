"""Saving and restoring the train state: resume from the newest checkpoint that restores, stop on a failed save.

Checkpoints hold the :class:`~pcv.training.state.TrainState` and every
host's input position (Orbax, in the work dir's ``checkpoints/``). A
damaged newest checkpoint is moved aside and the one before it is used; a
save that fails (a full disk) stops training in one line naming the last
good checkpoint; a non-finite loss stops it likewise.
"""

from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp

from pcv.data import pipeline
from pcv.errors import CheckpointError, DivergedError, WorkdirError, one_line
from pcv.runtime import distributed
from pcv.runtime.workdir import DATA_ITEM, STATE_ITEM, Workdir
from pcv.training import finetune
from pcv.training.state import TrainState


def start_from(spec: str, state: TrainState, class_names, log) -> TrainState:
    """``state`` with the weights of the trained model ``spec`` names (:mod:`pcv.training.finetune`)."""
    source = finetune.read_source(spec)
    model_state, record = finetune.transfer(state.model_state, source, class_names)
    if log is not None:
        for line in record.lines(source, len(class_names)):
            log(line)
    return state.replace(params=model_state["params"], rest=model_state["rest"])


def restore_training(wd: Workdir, ckpt, state: TrainState, iterator, log) -> tuple[int, TrainState | None]:
    """Restore the newest checkpoint that restores; damaged newer ones are moved aside and reported.

    Every host must restore the same step: a step fails if it fails on any
    host. Returns ``(step, state)``, or ``(0, None)`` when there is nothing
    to resume.
    """
    check_host_count(wd, ckpt)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    for step in sorted(ckpt.all_steps(), reverse=True):
        error = None
        try:
            restored = ckpt.restore(
                step,
                args=ocp.args.Composite(
                    **{
                        STATE_ITEM: ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args),
                        DATA_ITEM: pipeline.iterator_checkpoint_args(iterator, restore=True),
                    }
                ),
            )[STATE_ITEM]
            if int(jax.device_get(restored.step)) != step:
                error = f"it holds step {int(jax.device_get(restored.step))}"
        except Exception as e:  # noqa: BLE001  orbax/tensorstore/grain raise many types for a damaged file
            error = one_line(e)
        reasons = distributed.gather_objects(error)
        bad = [r for r in reasons if r]
        if not bad:
            return step, restored
        if distributed.is_main():
            wd.move_aside(step, bad[0], log)
        distributed.sync(f"pcv-moved-aside-{step}")
        ckpt.reload()
    return 0, None


def check_host_count(wd: Workdir, ckpt) -> None:
    """Refuse to resume with another number of hosts than the checkpoints were written by.

    Each host saves its input position (``data/process_<i>-of-<n>.json``);
    with another count they cannot be restored, and the checkpoints would
    look damaged. Stopping here keeps them untouched.
    """
    steps = ckpt.all_steps()
    if not steps:
        return
    try:
        names = [p.name for p in (wd.checkpoint_dir / str(max(steps)) / DATA_ITEM).iterdir()]
    except OSError:
        return  # unreadable: restore reports it
    counts = {int(n.rsplit("-of-", 1)[1].split(".")[0]) for n in names if n.startswith("process_") and "-of-" in n}
    if len(counts) == 1 and (saved := counts.pop()) != jax.process_count():
        raise WorkdirError(
            f"{wd.checkpoint_dir}: written by {saved} host(s), resumed by {jax.process_count()}: relaunch with "
            f"{saved} host(s) (the host count must stay fixed across restarts, launch/README.md)"
        )


def save(ckpt, wd: Workdir, step: int, state: TrainState, iterator) -> None:

    try:
        ckpt.save(
            step,
            args=ocp.args.Composite(
                **{
                    STATE_ITEM: ocp.args.PyTreeSave(state),
                    DATA_ITEM: pipeline.iterator_checkpoint_args(iterator),
                }
            ),
        )
    except Exception as e:  # noqa: BLE001
        raise _save_failed(ckpt, wd, e) from e


def check_saves(ckpt, wd: Workdir) -> None:
    """Raise :class:`CheckpointError` (one line) when a background save failed; training stops at once."""
    try:
        ckpt.check_for_errors()
    except Exception as e:  # noqa: BLE001
        raise _save_failed(ckpt, wd, e) from e


def _save_failed(ckpt, wd: Workdir, error: BaseException) -> CheckpointError:
    steps = wd.checkpoint_steps()
    kept = f"step {steps[-1]}" if steps else "none yet"
    cause = error
    while cause.__cause__ is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    return CheckpointError(
        f"saving a checkpoint to {wd.checkpoint_dir} failed ({one_line(cause)}); training "
        f"stopped; the last good checkpoint is kept ({kept})"
    )


def finite_loss(metrics, step: int, ckpt, wd: Workdir) -> float:
    loss = float(np.asarray(metrics["loss"]))
    if not np.isfinite(loss):
        latest = wd.checkpoint_steps()
        raise DivergedError(
            f"loss is {loss} at step {step}; stopping. The last good checkpoint in {wd.checkpoint_dir} (step "
            f"{latest[-1] if latest else 'none'}) is kept; lower config.optimizer.learning_rate or set "
            "config.optimizer.clip_norm and resume."
        )
    return loss
