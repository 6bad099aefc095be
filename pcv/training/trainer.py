"""The training loop: ``train_and_evaluate(config, workdir)``, what ``python -m pcv.train`` runs.

One program from a laptop to a pod: a jit-compiled step on a device mesh with
a ``data`` axis (the global batch sharded across every device, parameters and
optimizer state replicated), Orbax checkpoints in the work dir, periodic and
final evaluation by the :class:`~pcv.evaluation.Evaluator`, and
``results.json`` last. In order below: the runtime checks, the lock, then
(in ``_run``) mesh, data, model and optimizer, restore, step, evaluation,
loop, final evaluation.

A run resumes from the newest checkpoint in its work dir that restores
(parameters, optimizer state, step and input position), so a preempted job
is simply started again; a restart with a config that would train something
else is refused unless ``allow_config_change``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pcv import config as config_lib
from pcv import viz
from pcv.config import Config
from pcv.data import pipeline
from pcv.data.datasets import make_datasets
from pcv.data.transforms import EvalGeometry
from pcv.errors import ConfigError, WorkdirError
from pcv.evaluation import calibration
from pcv.evaluation.evaluator import Evaluator
from pcv.evaluation.pq import format_table
from pcv.inference.predictor import Predictor
from pcv.runtime import distributed
from pcv.runtime.console import EtaTimer, format_train_line
from pcv.runtime.files import json_text
from pcv.runtime.lock import RunLock
from pcv.runtime.metrics import MetricWriter
from pcv.runtime.workdir import Workdir
from pcv.training import budget
from pcv.training.checkpoints import check_saves, finite_loss, restore_training, save, start_from
from pcv.training.interrupts import Interrupts
from pcv.training.state import Schedule, create_train_state
from pcv.training.step import make_train_step, to_global
from pcv.voting import VoteGrid

DEFAULT_WORKDIR = "workdir/synthetic"
#: Exit code of a preempted run: a checkpoint was saved; relaunch the same command.
EXIT_PREEMPTED = 42
EXIT_INTERRUPTED = 130


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
    if config.data.name == "panoptic" and not config.data.data_dir:
        raise ConfigError("config.data.data_dir: must name a prepared dataset (python -m pcv.prepare prints its path)")
    pretrained = config.model.pretrained
    if pretrained and "://" not in pretrained:
        if not os.path.isfile(pretrained):
            raise ConfigError(f"config.model.pretrained: weight file {pretrained!r} does not exist")


def eval_batch_size(config: Config, devices: int) -> int:
    """``eval_batch_size`` (else ``batch_size``) rounded up to a multiple of the devices."""
    b = config.eval_batch_size or config.batch_size
    return -(-b // devices) * devices


def train_and_evaluate(
    config,
    workdir,
    *,
    stop_at: int | None = None,
    allow_config_change: bool = False,
    log=None,
    started: float | None = None,
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
      started: when the run started (``time.time()``), the origin of
        ``config.time_budget``; default now (``python -m pcv.train`` passes its
        process's start).
    """
    started = time.time() if started is None else started
    config = config_lib.read(config)
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
        return _run(config, wd, log, main, stop_at=stop_at, allow_config_change=allow_config_change, started=started)
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


def _run(config: Config, wd: Workdir, log, main: bool, *, stop_at, allow_config_change, started: float) -> dict:
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
        graphdef, tx = parts.graphdef, parts.tx
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
        writer = MetricWriter(wd.path, enabled=main)
        if start_step == 0:
            writer.write_text(0, {"config": "```\n" + wd_config_text(config) + "\n```"})

        # --- Step and schedule: config.steps, or as many as fit config.time_budget -----------
        step_fn = jax.jit(
            make_train_step(graphdef, tx, config),
            in_shardings=(replicated, data_sharding, replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        budget_seconds = config_lib.budget_seconds(config)
        decided = wd.read_schedule() if budget_seconds else None
        total = int(decided["steps"]) if decided else config.steps
        schedule = Schedule.of(config.optimizer, total, decided["warmup_steps"] if decided else None)
        if decided:
            log(f"time budget {config.time_budget}: the schedule decided before, {total} steps ({wd.path})")
        decide_at = start_step + 1 + budget.TIMED_STEPS if budget_seconds and not decided else None

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
        timer = EtaTimer(total_steps=total, start_step=start_step)
        eval_seconds = decided["eval_seconds"] if decided else 0.0  # one periodic evaluation, when measured
        if decided:
            timer.extra_seconds, timer.fallback_seconds_per_step = decided["final_seconds"], decided["step_seconds"]
        schedule_array = jax.device_put(schedule.as_array(), replicated)
        last_loss, timed_from, step = None, None, start_step
        plan, revise_at = None, None  # a time budget's plan, when this process decides it
        try:
            while step < total:
                step += 1
                batch = to_global(next(train_batches), data_sharding)
                state, metrics = step_fn(state, batch, schedule_array)
                check_saves(ckpt, wd)
                if step == decide_at:  # time the steps, then the final phases, and decide the run's length
                    jax.block_until_ready(metrics)
                    step_seconds = (time.perf_counter() - timed_from) / budget.TIMED_STEPS
                    eval_seconds, final_seconds = budget.time_final_phases(
                        predictor.replace(model_state=state.model_state, step=step),
                        evaluator,
                        splits.calibration,
                        eval_batch_size(config, len(devices)),
                    )
                    plan = distributed.broadcast_object(
                        budget.plan(
                            budget_seconds=budget_seconds,
                            spent_seconds=time.time() - started,
                            step_seconds=step_seconds,
                            eval_seconds=eval_seconds,
                            final_seconds=final_seconds,
                            eval_every=config.eval_every,
                            steps_done=step,
                            max_steps=config.steps,
                            nominal_warmup=config.optimizer.warmup_steps,
                            batch_size=config.batch_size,
                            train_images=len(splits.train),
                        )
                    )
                    total, schedule = plan.steps, plan.schedule(config.optimizer)
                    schedule_array = jax.device_put(schedule.as_array(), replicated)
                    timer.total_steps, timer.fallback_seconds_per_step = total, step_seconds
                    timer.extra_seconds = final_seconds + plan.periodic_evals * eval_seconds
                    timer.reset()
                    revise_at = step + max(config.log_every, (total - step) // budget.REVISIONS)
                    if main:
                        wd.write_schedule(dataclasses.asdict(plan))
                    log(plan.describe())
                if step % config.log_every == 0 or step == total or step == start_step + 1:
                    metrics = jax.device_get(metrics)
                    last_loss = finite_loss(metrics, step, ckpt, wd)
                    timer.update(step)
                    images_per_s = timer.steps_per_second() * config.batch_size
                    writer.write_scalars(step, dict(metrics, images_per_second=images_per_s))
                    if revise_at is not None and step >= revise_at and step < total:  # keep the end on time
                        rate = timer.steps_per_second()
                        revised = plan
                        if math.isfinite(rate) and rate > 0:
                            revised = plan.revised(
                                step=step,
                                spent_seconds=time.time() - started,
                                step_seconds=1.0 / rate,
                                eval_every=config.eval_every,
                                max_steps=config.steps,
                            )
                        plan = distributed.broadcast_object(revised)
                        total, timer.total_steps = plan.steps, plan.steps
                        schedule_array = jax.device_put(plan.schedule(config.optimizer).as_array(), replicated)
                        revise_at = step + max(config.log_every, (total - step) // budget.REVISIONS)
                        if main:
                            wd.write_schedule(dataclasses.asdict(plan))
                    log(format_train_line(step, total, metrics, images_per_s, timer.eta_seconds()))
                if step == start_step + 1:
                    timed_from = time.perf_counter()
                preempted = interrupts.preempted or ckpt.reached_preemption(step) or step == stop_at
                interrupted = interrupts.interrupted and jax.process_count() == 1
                if step % config.checkpoint_every == 0 or step == total or preempted or interrupted:
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
                if config.eval_every and step % config.eval_every == 0 and step != total:
                    run_eval(step)
                    timer.reset()
                    timer.extra_seconds = max(0.0, timer.extra_seconds - eval_seconds)
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


def _eval_scalars(result: dict) -> dict:
    out = {
        f"val/{group}_{k}": float(result[group][k]) for group in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq")
    }
    if "semantic" in result:
        out["val/miou"] = float(result["semantic"]["miou"])
    for key, value in result.get("instances", {}).items():
        out[f"val/{key}"] = float(value)
    return out
