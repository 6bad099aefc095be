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

import sys

from absl import flags

from pcv import cli
from pcv import config as config_lib
from pcv.errors import ConfigError
from pcv.runtime import distributed
from pcv.training import budget
from pcv.training.trainer import DEFAULT_WORKDIR, EXIT_PREEMPTED, train_and_evaluate


def main(argv=None) -> int:
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
        config = config_lib.override(config_lib.load(fv.config), overrides)
        results = train_and_evaluate(
            config, fv.workdir, allow_config_change=fv.allow_config_change, started=budget.process_start()
        )
        return EXIT_PREEMPTED if results.get("preempted") else 0

    return cli.run(fv, program, argv, overrides=cli.EVERY_FIELD)


if __name__ == "__main__":
    sys.exit(main())
