r"""Train and evaluate PCV: ``python -m pcv.train [--config=...] [--workdir=...]``.

With no flags it trains the built-in synthetic demo (configs/synthetic.py)
into ./workdir/synthetic. The same command runs on any number of devices:
one jit-compiled step on a mesh with a ``data`` axis, the global batch
sharded across all devices, parameters and optimizer state replicated.

    python -m pcv.train --config=configs/synthetic.py:smoke --workdir=/tmp/smoke
    python -m pcv.train --config=configs/synthetic.py --config.steps=500

A run resumes from the latest checkpoint in its work dir (parameters,
optimizer state, step, RNG and input position), so a preempted job is simply
started again with the same command.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pcv import data as pcv_data
from pcv import evaluate as pcv_evaluate
from pcv import losses, metrics_writer, viz
from pcv.data import pipeline
from pcv.evaluation import format_table
from pcv.inference import InferenceConfig
from pcv.models import PCVNet
from pcv.voting import VoteGrid

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic.py"
DEFAULT_WORKDIR = "workdir/synthetic"


# ----------------------------------------------------------------------------
# Config checks: fail before compiling anything, naming the field.
# ----------------------------------------------------------------------------


def resolve_paths(config: ml_collections.ConfigDict) -> None:
    """Expand ``~`` in the config's file paths (flags such as ``--config.data.data_dir=~/x`` arrive unexpanded)."""
    for node, field in ((config.data, "data_dir"), (config.model, "pretrained")):
        if node.get(field):
            node[field] = os.path.expanduser(str(node[field]))


def validate_config(config: ml_collections.ConfigDict) -> None:
    def need(ok, field, msg):
        if not ok:
            raise ValueError(f"config.{field}: {msg}")

    need(config.steps >= 1, "steps", f"must be >= 1, got {config.steps}")
    need(config.batch_size >= 1, "batch_size", f"must be >= 1, got {config.batch_size}")
    need(
        0 <= config.num_devices <= jax.device_count(),
        "num_devices",
        f"{config.num_devices} must be in [0, {jax.device_count()}] (0 = all devices)",
    )
    devices = config.num_devices or jax.device_count()
    need(
        config.batch_size % devices == 0,
        "batch_size",
        f"{config.batch_size} is not divisible by the {devices} devices",
    )
    h, w = config.data.image_size
    need(h % 32 == 0 and w % 32 == 0 and h > 0 and w > 0, "data.image_size", f"{(h, w)} must be multiples of 32")
    need(
        config.batch_size % jax.process_count() == 0,
        "batch_size",
        f"{config.batch_size} is not divisible by the {jax.process_count()} hosts",
    )
    d = pipeline.data_options(config)
    ch, cw = d["crop_size"]
    need(ch % 32 == 0 and cw % 32 == 0 and ch > 0 and cw > 0, "data.crop_size", f"{(ch, cw)} must be multiples of 32")
    lo, hi = d["scale_range"]
    need(0 < lo <= hi, "data.scale_range", f"{(lo, hi)} must be (lo, hi) with 0 < lo <= hi")
    need(d["base_size"] >= 0, "data.base_size", f"must be >= 0 (0 = the image's own shorter side), got {d['base_size']}")
    need(0 <= d["color_jitter"] < 1, "data.color_jitter", f"must be in [0, 1) (0 = off), got {d['color_jitter']}")
    need(d["num_workers"] >= 0, "data.num_workers", f"must be >= 0 (0 = in-process), got {d['num_workers']}")
    need(d["read_threads"] >= 1, "data.read_threads", f"must be >= 1, got {d['read_threads']}")
    short_side, max_size = config.data.get("eval_short_side", 0), config.data.get("eval_max_size", 0)
    need(short_side >= 0, "data.eval_short_side", f"must be >= 0 (0 = fit into data.image_size), got {short_side}")
    need(
        max_size == 0 or max_size >= short_side,
        "data.eval_max_size",
        f"{max_size} must be 0 (no limit) or >= data.eval_short_side ({short_side})",
    )
    need(
        short_side == 0 or max_size > 0 or bool(config.data.get("eval_pad_shape", ())),
        "data.eval_pad_shape",
        "must be given when data.eval_max_size is 0 (no bound on the padded evaluation size)",
    )
    pad = tuple(config.data.get("eval_pad_shape", ()) or ())
    need(
        not pad or (len(pad) == 2 and all(p > 0 and p % 32 == 0 for p in pad)),
        "data.eval_pad_shape",
        f"{pad} must be () or (H, W), multiples of 32",
    )
    need(config.optimizer.learning_rate > 0, "optimizer.learning_rate", "must be > 0")
    need(config.optimizer.schedule in ("poly", "step"), "optimizer.schedule", "must be 'poly' or 'step'")
    need(0 <= config.optimizer.warmup_steps < config.steps, "optimizer.warmup_steps", "must be in [0, steps)")
    need(config.optimizer.clip_norm >= 0, "optimizer.clip_norm", "must be >= 0 (0 = off)")
    need(config.model.dtype in ("float32", "bfloat16"), "model.dtype", "must be 'float32' or 'bfloat16'")
    pretrained = config.model.get("pretrained") or ""
    if pretrained:
        need(os.path.isfile(pretrained), "model.pretrained", f"weight file {pretrained!r} does not exist")
        need(
            config.model.backbone_norm in ("batch", "frozen"),
            "model.backbone_norm",
            f"{config.model.backbone_norm!r} cannot take pretrained BatchNorm weights; use 'frozen' or 'batch'",
        )
    need(config.centroid in ("mass", "box"), "centroid", "must be 'mass' or 'box'")
    for field in ("log_every", "checkpoint_every"):
        need(config[field] >= 1, field, "must be >= 1")
    need(config.eval_every >= 0, "eval_every", "must be >= 0 (0 = only at the end)")
    try:
        VoteGrid(config.grid)
    except ValueError as e:
        raise ValueError(f"config.grid: {e}") from None
    try:
        InferenceConfig(**config.inference.to_dict())
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.inference: {e}") from None


# ----------------------------------------------------------------------------
# Model.
# ----------------------------------------------------------------------------


def build_model(config, num_classes: int, grid: VoteGrid) -> PCVNet:
    """The PCV network ``config.model`` describes, initialised from ``config.seed``.

    With ``config.model.pretrained`` set (a path; "" = from scratch), the
    backbone is then loaded from that ImageNet weight file.
    """
    m = config.model
    return PCVNet(
        num_classes=num_classes,
        num_bins=grid.num_bins,
        backbone=m.backbone,
        fpn_channels=m.fpn_channels,
        fusion_channels=m.fusion_channels,
        backbone_norm=m.backbone_norm,
        head_norm=m.head_norm,
        dtype=jnp.bfloat16 if m.dtype == "bfloat16" else jnp.float32,
        rngs=nnx.Rngs(config.seed),
        pretrained=config.model.get("pretrained") or None,
    )


# ----------------------------------------------------------------------------
# Optimizer.
# ----------------------------------------------------------------------------


def make_schedule(config) -> optax.Schedule:
    o = config.optimizer
    warmup = optax.linear_schedule(0.0, o.learning_rate, max(o.warmup_steps, 1))
    rest = config.steps - o.warmup_steps
    if o.schedule == "poly":
        decay = optax.polynomial_schedule(o.learning_rate, 0.0, o.poly_power, max(rest, 1))
    else:
        bounds = {int(f * config.steps) - o.warmup_steps: o.step_factor for f in o.step_boundaries}
        decay = optax.piecewise_constant_schedule(o.learning_rate, {b: s for b, s in bounds.items() if b > 0})
    return optax.join_schedules([warmup, decay], [o.warmup_steps])


def make_optimizer(config, schedule) -> optax.GradientTransformation:
    o = config.optimizer
    # Weight decay on conv / dense kernels only, not on norm scales and biases.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    parts = [optax.clip_by_global_norm(o.clip_norm)] if o.clip_norm > 0 else []
    parts += [
        optax.add_decayed_weights(o.weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=o.momentum),
    ]
    return optax.chain(*parts)


# ----------------------------------------------------------------------------
# Input: each host reads its own share of every global batch (pcv.data.pipeline).
# ----------------------------------------------------------------------------


def to_global(batch: dict, sharding: NamedSharding) -> dict:
    """Assemble host-local numpy batches into global arrays sharded on ``data``."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def make_train_step(graphdef, tx, schedule, config, grid: VoteGrid):
    """The pure train step ``(state, batch) -> (state, metrics)`` (jit it with shardings).

    ``state`` holds pure-dict ``params`` (trained) and ``rest`` (batch
    statistics, frozen constants), ``opt_state``, ``step`` and ``rng``.
    """
    def loss_fn(params, rest, batch):
        m = nnx.merge(graphdef, params, rest)
        m.train()
        out = m(batch["images"])
        total, parts = losses.pcv_loss(
            out, batch, sem_weight=config.loss.semantic_weight, vote_weight=config.loss.vote_weight
        )
        _, _, new_rest = nnx.split(m, PCVNet.trainable, ...)  # updated batch statistics
        return total, (parts, nnx.to_pure_dict(new_rest))

    def train_step(state, batch):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (parts, rest)), grads = grad_fn(state["params"], state["rest"], batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = dict(
            state,
            params=optax.apply_updates(state["params"], updates),
            rest=rest,
            opt_state=opt_state,
            step=state["step"] + 1,
        )
        return new_state, dict(parts, learning_rate=schedule(state["step"]), grad_norm=optax.tree.norm(grads))

    return train_step


def init_state(graphdef_params_rest, tx, seed: int) -> dict:
    """The train state of freshly split model parts."""
    _, params, rest = graphdef_params_rest
    return {
        "params": params,
        "rest": rest,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(jax.random.key(seed)),
    }


# ----------------------------------------------------------------------------
# Checkpoints.
# ----------------------------------------------------------------------------


class Preemption:
    """Turns SIGTERM (the usual preemption notice) into a flag the loop polls."""

    def __init__(self):
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True


#: Checkpoint items: the train state is ``default`` (so a plain
#: ``restore(step, args=ocp.args.StandardRestore())`` on a fresh manager still
#: reads it), the input iterator's position is ``data`` (one file per host).
CHECKPOINT_ITEMS = ("default", "data")


def make_checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")), item_names=CHECKPOINT_ITEMS, options=options
    )


# ----------------------------------------------------------------------------
# The whole run.
# ----------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, stop_at: int | None = None) -> dict:
    """Train PCV as ``config`` says, in ``workdir``; returns the final results dict.

    ``stop_at`` behaves like a preemption at that step: save and return
    ``{"step": stop_at, "preempted": True}`` (for time-sliced jobs and tests).
    """
    resolve_paths(config)
    validate_config(config)
    workdir = os.path.abspath(os.path.expanduser(workdir))
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    log = print if is_main else (lambda *a, **k: None)

    # --- Mesh -----------------------------------------------------------------
    devices = jax.devices()[: config.num_devices or None]
    mesh = Mesh(np.array(devices), ("data",))
    data_sharding = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())
    log(f"pcv.train: {len(devices)} device(s) ({jax.default_backend()}), {jax.process_count()} host(s)")

    # --- Data -----------------------------------------------------------------
    grid = VoteGrid(config.grid)
    train_set, val_set = pcv_data.make_datasets(config)
    num_classes = len(train_set.categories)
    train_batches = iter(pipeline.train_dataset_from_config(train_set, config, grid))
    if is_main:  # config.json + categories.json: evaluate / predict need only the work dir
        pcv_evaluate.save_run_info(workdir, config, train_set.categories)

    # --- Model ----------------------------------------------------------------
    model = build_model(config, num_classes, grid)
    graphdef, params, rest = nnx.split(model, PCVNet.trainable, ...)
    # Plain nested dicts of arrays from here on: they jit, shard and checkpoint
    # like any pytree; nnx.merge takes them back inside the step.
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    log(f"model: {config.model.backbone}, {sum(x.size for x in jax.tree.leaves(params)):,} trainable parameters")

    # --- Optimizer ------------------------------------------------------------
    schedule = make_schedule(config)
    tx = make_optimizer(config, schedule)
    state = init_state((graphdef, params, rest), tx, config.seed)
    state = jax.device_put(state, replicated)

    # --- Checkpoint: resume if the work dir has one ---------------------------
    ckpt = make_checkpoint_manager(workdir, config)
    start_step = 0
    if ckpt.latest_step() is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        restored = ckpt.restore(
            ckpt.latest_step(),
            args=ocp.args.Composite(
                default=ocp.args.StandardRestore(abstract),
                data=pipeline.iterator_checkpoint_args(train_batches, restore=True),
            ),
        )
        state = jax.device_put(restored["default"], replicated)
        start_step = int(state["step"])
        log(f"resumed from {ckpt.directory} at step {start_step}")

    # --- Train step -----------------------------------------------------------
    train_step = make_train_step(graphdef, tx, schedule, config, grid)
    step_fn = jax.jit(
        train_step,
        in_shardings=(replicated, data_sharding),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )

    # --- Evaluation: the code path of python -m pcv.evaluate -------------------
    predict_fn = pcv_evaluate.make_predict_fn(graphdef, config, grid, val_set.thing_mask, mesh=mesh)

    def run_eval(step):
        model_state = {"params": state["params"], "rest": state["rest"]}
        result, shown = pcv_evaluate.evaluate_pq(
            predict_fn, model_state, val_set, config,
            batch_size=pcv_evaluate.eval_batch_size(config, mesh), num_shown=config.num_panel_images,
        )
        log(f"evaluation at step {step} ({len(val_set)} images):")
        log(format_table(result))
        return result, shown

    # --- Loop -----------------------------------------------------------------
    writer = metrics_writer.MetricWriter(workdir, enabled=is_main)
    preemption = Preemption()
    timer = metrics_writer.EtaTimer(total_steps=config.steps, start_step=start_step)
    last_loss = None
    eval_result = None
    step = start_step
    try:
        for step in range(start_step + 1, config.steps + 1):
            batch = to_global(next(train_batches), data_sharding)
            state, parts = step_fn(state, batch)
            if step % config.log_every == 0 or step == config.steps or step == start_step + 1:
                parts = jax.device_get(parts)
                last_loss = float(parts["loss"])
                if not np.isfinite(last_loss):
                    raise FloatingPointError(
                        f"loss is {last_loss} at step {step}; stopping. The last good checkpoint in "
                        f"{ckpt.directory} (step {ckpt.latest_step()}) is kept; lower "
                        "config.optimizer.learning_rate or set config.optimizer.clip_norm and resume."
                    )
                timer.update(step)
                images_per_s = timer.steps_per_second() * config.batch_size
                writer.write_scalars(step, dict(parts, images_per_second=images_per_s))
                log(metrics_writer.format_train_line(step, config.steps, parts, images_per_s, timer.eta_seconds()))
            preempted = preemption.requested or ckpt.reached_preemption(step) or step == stop_at
            if step % config.checkpoint_every == 0 or step == config.steps or preempted:
                last_loss = _checked_loss(parts, step)
                ckpt.save(
                    step,
                    args=ocp.args.Composite(
                        default=ocp.args.StandardSave(state),
                        data=pipeline.iterator_checkpoint_args(train_batches),
                    ),
                )
            if preempted:
                ckpt.wait_until_finished()
                log(f"preemption requested: saved step {step} to {ckpt.directory}; exiting")
                return {"step": step, "preempted": True}
            if config.eval_every and step % config.eval_every == 0 and step != config.steps:
                eval_result, _ = run_eval(step)
                writer.write_scalars(step, _eval_scalars(eval_result))
    finally:
        ckpt.wait_until_finished()
        if hasattr(train_batches, "close"):  # stops worker processes and read threads
            train_batches.close()

    # --- Final evaluation -----------------------------------------------------
    final_step = int(jax.device_get(state["step"]))
    eval_result, shown = run_eval(final_step)
    writer.write_scalars(final_step, _eval_scalars(eval_result))
    if last_loss is None:  # nothing trained in this process (already at the last step)
        last_loss = float("nan")
    results = {"step": final_step, "train_loss": last_loss, "eval": eval_result}
    if is_main:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        panel = viz.validation_panel(shown, val_set.label_space)
        viz.save_png(panel, os.path.join(workdir, "panel.png"))
        writer.write_images(final_step, {"val/panel": panel})
    writer.close()
    ckpt.close()
    return results


def _checked_loss(parts, step):
    loss = float(jax.device_get(parts["loss"]))
    if not np.isfinite(loss):
        raise FloatingPointError(f"loss is {loss} at step {step}; not saving this state")
    return loss


def _eval_scalars(result: dict) -> dict:
    return {f"val/{group}_{k}": float(result[group][k]) for group in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq")}


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------


def main(argv=None) -> int:
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", str(DEFAULT_CONFIG), "Training config file (path[:variant]).")
    flags.DEFINE_string("workdir", DEFAULT_WORKDIR, "Work dir: checkpoints, logs, results.json.")

    def run(_):
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
        maybe_initialize_distributed()
        try:
            train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
        except (ValueError, FloatingPointError, FileNotFoundError) as e:  # bad config, data or weights
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(run, argv=argv)
    return 0


def maybe_initialize_distributed() -> None:
    """Join a multi-host run when the environment describes one."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_NTASKS", "1") != "1":
        jax.distributed.initialize()


if __name__ == "__main__":
    sys.exit(main())
