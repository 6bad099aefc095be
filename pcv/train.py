r"""Train and evaluate PCV: ``python -m pcv.train [--config=...] [--workdir=...]``.

With no flags it trains the built-in synthetic demo (``synthetic``) into
./workdir/synthetic. The same command runs on any number of devices and
hosts: one jit-compiled step on a mesh with a ``data`` axis, the global
batch sharded across all devices, parameters and optimizer state replicated.

    python -m pcv.train --config=synthetic:smoke --workdir=/tmp/smoke
    python -m pcv.train --config=coco_r50 --workdir=gs://bucket/runs/coco --config.data.data_dir=...

A run resumes from the newest checkpoint in its work dir that restores
(parameters, optimizer state, step and input position), so a preempted job
is simply started again with the same command; a restart with a config
that would train something else is refused (``--allow_config_change``
accepts it and records the change). It is done when ``results.json``
exists; running it again then changes nothing.

Exit codes: 0 done; 1 an expected error (one line on stderr); 42 preempted
(SIGTERM, or JAX's preemption notice on a pod): a checkpoint was saved,
relaunch the same command; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pcv import calibration, distributed, finetune, losses, metrics_writer, viz
from pcv import config as config_lib
from pcv.config import Config
from pcv.data import make_datasets, normalize_images, pipeline
from pcv.data.transforms import EvalGeometry
from pcv.errors import CheckpointError, ConfigError, DivergedError, WorkdirError
from pcv.evaluation.pq import format_table
from pcv.evaluator import Evaluator
from pcv.predictor import Predictor
from pcv.state import TrainState, create_train_state, merge
from pcv.voting import VoteGrid
from pcv.workdir import DATA_ITEM, STATE_ITEM, RunLock, Workdir, json_text, one_line

DEFAULT_WORKDIR = "workdir/synthetic"
#: Exit code of a preempted run: a checkpoint was saved; relaunch the same command.
EXIT_PREEMPTED = 42
EXIT_INTERRUPTED = 130


# ----------------------------------------------------------------------------
# Checks that need the runtime (devices, hosts, files).
# ----------------------------------------------------------------------------


def check_runtime(config: Config) -> None:
    """Raise :class:`ConfigError` naming the field when the config cannot run on these devices."""
    count = jax.device_count()
    devices = config.num_devices or count
    if devices > count:
        raise ConfigError(f"config.num_devices: {config.num_devices} must be in [0, {count}] (0 = all devices)")
    if config.num_devices and jax.process_count() > 1 and config.num_devices != count:
        raise ConfigError(f"config.num_devices: a multi-host run uses every device ({count}); set 0")
    if config.batch_size % devices:
        raise ConfigError(f"config.batch_size: {config.batch_size} is not divisible by the {devices} devices")
    if config.batch_size % jax.process_count():
        raise ConfigError(f"config.batch_size: {config.batch_size} is not divisible by the {jax.process_count()} hosts")
    pretrained = config.model.pretrained
    if pretrained and "://" not in pretrained:
        import os

        if not os.path.isfile(pretrained):
            raise ConfigError(f"config.model.pretrained: weight file {pretrained!r} does not exist")


def eval_batch_size(config: Config, devices: int) -> int:
    """``eval_batch_size`` (else ``batch_size``) rounded up to a multiple of the devices."""
    b = config.eval_batch_size or config.batch_size
    return -(-b // devices) * devices


# ----------------------------------------------------------------------------
# The step.
# ----------------------------------------------------------------------------


def make_train_step(graphdef, tx: optax.GradientTransformation, schedule: optax.Schedule, config: Config):
    """The pure train step ``(state, batch) -> (state, metrics)`` (jit it with shardings).

    ``batch``: ``images`` uint8 ``[B, H, W, 3]`` (normalised here, on the
    device), ``semantic`` / ``votes`` int32 and ``weights`` float32 ``[B, h, w]``.
    """

    def loss_fn(params, rest, batch):
        model = merge(graphdef, {"params": params, "rest": rest}, train=True)
        out = model(normalize_images(batch["images"]))
        total, parts = losses.pcv_loss(
            out, batch, sem_weight=config.loss.semantic_weight, vote_weight=config.loss.vote_weight
        )
        from flax import nnx

        _, _, new_rest = nnx.split(model, nnx.Param, ...)  # updated batch statistics
        return total, (parts, nnx.to_pure_dict(new_rest))

    def train_step(state: TrainState, batch):
        (_, (parts, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1, params=optax.apply_updates(state.params, updates), rest=rest, opt_state=opt_state
        )
        return new_state, dict(parts, learning_rate=schedule(state.step), grad_norm=optax.tree.norm(grads))

    return train_step


def to_global(batch: dict, sharding: NamedSharding) -> dict:
    """Assemble host-local numpy batches into global arrays sharded on ``data``."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


# ----------------------------------------------------------------------------
# Signals.
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# The whole run.
# ----------------------------------------------------------------------------


def train_and_evaluate(
    config, workdir, *, stop_at: int | None = None, allow_config_change: bool = False, log=None
) -> dict:
    """Train PCV as ``config`` says, in ``workdir``; returns the results (``results.json``).

    Args:
      config: a ConfigDict (a config file's) or a :class:`pcv.config.Config`.
      workdir: a local folder or ``gs://bucket/path``.
      stop_at: behave like a preemption at that step: save and return
        ``{"step": stop_at, "preempted": True}`` (time-sliced jobs, tests).
      allow_config_change: accept a config that differs from the work dir's
        recorded one in fields that change what is trained (recorded).
      log: where lines go (default: ``print`` on process 0).
    """
    config = config_lib.from_mapping(config)
    check_runtime(config)
    wd = Workdir(workdir)
    main = jax.process_index() == 0
    log = log or (print if main else (lambda *a, **k: None))

    # --- Finished already? -----------------------------------------------------
    if wd.is_complete():
        changes = wd.check_config(config, allow_change=allow_config_change)
        if not [c for c in changes if c[0] not in config_lib.RESUMABLE]:
            results = wd.read_results()
            log(
                f"{wd.path} is complete (step {results.get('step')}): nothing to do; results in "
                f"{wd.path / 'results.json'}"
            )
            return results

    # --- Lock: one live run per work dir (process 0 holds it for all hosts) ----
    lock = RunLock(wd)
    verdict = None
    if main:
        try:
            wd.create()
            lock.acquire(log)
        except WorkdirError as e:
            verdict = str(e)
    verdict, token = distributed.broadcast_object([verdict, lock.token])
    if verdict:
        raise WorkdirError(verdict)
    try:
        shared_workdir(wd, lock, token)
        return _run(config, wd, log, main, stop_at=stop_at, allow_config_change=allow_config_change)
    finally:
        if main:
            lock.release()


def shared_workdir(wd: Workdir, lock: RunLock, token: str) -> None:
    """With several hosts, check that every host sees the lock process 0 wrote: one work dir, not one each."""
    if jax.process_count() == 1:
        return
    missing = [i for i, seen in enumerate(distributed.gather_objects(lock.held_by(token))) if not seen]
    if missing:
        raise WorkdirError(
            f"work dir {wd.path} is not shared between the hosts: host(s) {missing} do not see the files "
            "host 0 writes there; use gs://... or a file system every host mounts (launch/README.md)"
        )


def _run(config: Config, wd: Workdir, log, main: bool, *, stop_at, allow_config_change) -> dict:
    # --- Identity: a restart trains the same run -------------------------------
    changes = wd.check_config(config, allow_change=allow_config_change)
    if wd.is_complete():  # continuing a finished run with an accepted change: keep its old results aside
        old = wd.read_results()
        if main:
            (wd.path / "results.json").rename(wd.path / f"results.step{old.get('step', 'unknown')}.json")
        distributed.sync("pcv-results-aside")

    # --- Mesh -------------------------------------------------------------------
    devices = jax.devices()[: config.num_devices or None]
    mesh = Mesh(np.array(devices), ("data",))
    data_sharding = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())
    log(
        f"pcv.train: {len(devices)} device(s) ({jax.default_backend()}), {jax.process_count()} host(s), "
        f"work dir {wd.path}"
    )

    # --- Data -------------------------------------------------------------------
    grid = VoteGrid(config.grid)
    splits = make_datasets(config.data, config.seed)
    labels = splits.train.label_space
    train_batches = iter(
        pipeline.train_dataset(
            splits.train,
            grid,
            config.data,
            batch_size=config.batch_size // jax.process_count(),
            seed=config.seed,
            centroid=config.centroid,
            weight_power=config.weight_power,
        )
    )
    ckpt = None
    try:
        # --- Model and optimizer --------------------------------------------------
        parts = create_train_state(config, labels.num_classes, grid)
        graphdef, tx, schedule = parts.graphdef, parts.tx, parts.schedule
        state = jax.device_put(parts.state, replicated)
        log(
            f"model: {config.model.backbone}, {sum(x.size for x in jax.tree.leaves(state.params)):,} trainable "
            f"parameters, {labels.num_classes} classes, {grid.num_bins} vote bins"
        )

        # --- Checkpoint: resume from the newest one that restores -------------------
        ckpt = wd.checkpoint_manager(config.keep_checkpoints)
        if config.init_from and not ckpt.all_steps():  # a new run that starts from a trained model
            state = jax.device_put(start_from(config.init_from, state, labels.names, log if main else None), replicated)
        start_step, restored = restore_training(wd, ckpt, state, train_batches, log)
        if restored is not None:
            state = jax.device_put(restored, replicated)
            log(f"resumed from step {start_step} ({wd.checkpoint_dir})")

        # --- The run's record: written only now that everything above worked --------
        if main:
            wd.record_run(config, labels.categories, [c for c in changes])
        writer = metrics_writer.MetricWriter(wd.path, enabled=main)
        if start_step == 0:
            writer.write_text(0, {"config": "```\n" + wd_config_text(config) + "\n```"})

        # --- Step ---------------------------------------------------------------------
        step_fn = jax.jit(
            make_train_step(graphdef, tx, schedule, config),
            in_shardings=(replicated, data_sharding),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )

        # --- Evaluation: the Predictor and Evaluator of python -m pcv.evaluate ---------
        predictor = Predictor(
            graphdef,
            state.model_state,
            grid,
            labels,
            inference=config.inference,
            geometry=EvalGeometry.from_config(config.data),
            mesh=mesh,
        )
        evaluator = Evaluator(
            splits.val,
            batch_size=eval_batch_size(config, len(devices)),
            num_shown=config.num_panel_images,
            progress=main,
            log=log,
        )

        def run_eval(step: int) -> dict:
            result = evaluator.run(predictor.replace(model_state=state.model_state, step=step))
            log(f"evaluation at step {step} ({evaluator.count} images):")
            log(format_table(result))
            writer.write_scalars(step, _eval_scalars(result))
            return result

        # --- Loop -----------------------------------------------------------------------
        interrupts = Interrupts(handle_sigterm=jax.process_count() == 1)
        timer = metrics_writer.EtaTimer(total_steps=config.steps, start_step=start_step)
        last_loss = None
        try:
            for step in range(start_step + 1, config.steps + 1):
                batch = to_global(next(train_batches), data_sharding)
                state, metrics = step_fn(state, batch)
                check_saves(ckpt, wd)
                if step % config.log_every == 0 or step == config.steps or step == start_step + 1:
                    metrics = jax.device_get(metrics)
                    last_loss = finite_loss(metrics, step, ckpt, wd)
                    timer.update(step)
                    images_per_s = timer.steps_per_second() * config.batch_size
                    writer.write_scalars(step, dict(metrics, images_per_second=images_per_s))
                    log(
                        metrics_writer.format_train_line(step, config.steps, metrics, images_per_s, timer.eta_seconds())
                    )
                preempted = interrupts.preempted or ckpt.reached_preemption(step) or step == stop_at
                interrupted = interrupts.interrupted and jax.process_count() == 1
                if step % config.checkpoint_every == 0 or step == config.steps or preempted or interrupted:
                    last_loss = finite_loss(jax.device_get(metrics), step, ckpt, wd)
                    save(ckpt, wd, step, state, train_batches)
                if preempted or interrupted:
                    ckpt.wait_until_finished()
                    check_saves(ckpt, wd)
                    writer.close()
                    if interrupted:
                        log(f"interrupted: saved step {step} to {wd.checkpoint_dir}; run the same command to resume")
                        raise KeyboardInterrupt
                    log(
                        f"preempted: saved step {step} to {wd.checkpoint_dir}; exiting with code "
                        f"{EXIT_PREEMPTED} (relaunch the same command to resume)"
                    )
                    return {"step": step, "preempted": True}
                if interrupts.interrupted:  # several hosts cannot agree on a step to save from Ctrl-C
                    log(
                        f"interrupted on this host; not saved (the hosts cannot agree on a step); the last "
                        f"checkpoint is step {ckpt.latest_step()}"
                    )
                    raise KeyboardInterrupt
                if config.eval_every and step % config.eval_every == 0 and step != config.steps:
                    run_eval(step)
                    timer.reset()
            ckpt.wait_until_finished()
            check_saves(ckpt, wd)
        finally:
            interrupts.close()

        # --- Final evaluation; results.json last: its existence means complete ---------
        final_step = int(jax.device_get(state.step))
        summary = {"step": final_step, "train_loss": last_loss}
        if splits.calibration is not None:  # choose the post-processing on the held-out images first
            record, predictor = calibration.calibrate_and_keep(
                predictor.replace(model_state=state.model_state, step=final_step),
                splits.calibration,
                wd.path,
                batch_size=eval_batch_size(config, len(devices)),
                progress=main,
                log=log,
            )
            summary["calibration"] = {k: record[k] for k in ("chosen", "before", "after")}
        eval_result = run_eval(final_step)
        # What results.json holds, exactly (JSON keys are strings; no NaN).
        results = json.loads(json_text({**summary, "eval": eval_result}))
        if main:
            panel = viz.validation_panel(evaluator.shown, labels)
            writer.write_images(final_step, {"val/panel": panel})
            writer.close()
            wd.write_png("panel.png", panel)
            wd.write_results(results)
        distributed.sync("pcv-train-done")
        return results
    finally:
        if ckpt is not None:
            try:
                ckpt.wait_until_finished()
            except Exception:  # noqa: BLE001  reported by check_saves already, or by the loop's own error
                pass
            ckpt.close()
        if hasattr(train_batches, "close"):  # stops worker processes and read threads
            train_batches.close()


def wd_config_text(config: Config) -> str:
    return "\n".join(f"{k} = {v!r}" for k, v in config_lib.flat(config).items())


# ----------------------------------------------------------------------------
# Checkpoints.
# ----------------------------------------------------------------------------


def start_from(spec: str, state: TrainState, class_names, log) -> TrainState:
    """``state`` with the weights of the trained model ``spec`` names (:mod:`pcv.finetune`)."""
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
    import orbax.checkpoint as ocp

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
    import orbax.checkpoint as ocp

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


def _eval_scalars(result: dict) -> dict:
    out = {
        f"val/{group}_{k}": float(result[group][k]) for group in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq")
    }
    if "semantic" in result:
        out["val/miou"] = float(result["semantic"]["miou"])
    for key, value in result.get("instances", {}).items():
        out[f"val/{key}"] = float(value)
    return out


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------


def main(argv=None) -> int:
    from absl import flags

    from pcv import cli

    fv = cli.new_flags()
    cli.define_config_flag(fv)
    flags.DEFINE_string(
        "workdir", DEFAULT_WORKDIR, "Work dir (local or gs://): checkpoints, logs, results.json.", flag_values=fv
    )
    flags.DEFINE_bool(
        "allow_config_change",
        False,
        "Resume even though fields that change what is trained "
        "differ from the work dir's config (recorded in config_changes.jsonl).",
        flag_values=fv,
    )

    def program(args, overrides):
        if len(args) > 1:
            raise ConfigError(f"unexpected arguments {args[1:]}; flags are --name=value")
        distributed.initialize()
        config = cli.load_config(fv.config, overrides)
        results = train_and_evaluate(config, fv.workdir, allow_config_change=fv.allow_config_change)
        return EXIT_PREEMPTED if results.get("preempted") else 0

    return cli.run(fv, program, argv)


if __name__ == "__main__":
    sys.exit(main())
