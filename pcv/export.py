r"""Export a trained model as a self-contained bundle: ``python -m pcv.export --workdir=... --out=model_dir``.

    python -m pcv.export --workdir=workdir/synthetic --out=/tmp/pcv_model
    python -m pcv.export --workdir=... --step=1000 --flip --platforms=cpu,cuda --out=model_dir

The bundle (:mod:`pcv.inference.bundle`: ``bundle.json``, ``weights.safetensors``,
``forward.jax_export``, ``postprocess.jax_export``, ``pcv_portable.py``)
holds the weights, the label space, the input geometry and post-processing
settings (the work dir's calibrated ones when it has them), and the whole
image -> panoptic computation serialised with :mod:`jax.export` (StableHLO).
Whoever receives it runs it with jax, numpy and Pillow::

    model = pcv.load_exported("model_dir")    # or pcv_portable.load_exported without pcv
    result = model(image)                     # uint8 [H, W, 3], any size -> ids, segments_info

Input sizes: fixed, not symbolic. The network is exported for the one
padded shape the work dir evaluates at (``(1, Hp, Wp, 3)``), exactly as the
:class:`pcv.Predictor` compiles it: every image is resized (bilinear) and
padded to that shape on the host and the answer is mapped back to the
image's size. A symbolic height and width would give other images other
rescalings than the Predictor's, hence other answers, and the
post-processing's static shapes (instance slots, connected-component
iterations) are chosen for the fixed map. One shape also means one
compilation when the bundle is loaded.

Platforms: ``cpu`` always; ``cuda`` and ``tpu`` too by default. Lowering
for an accelerator does not need one; a platform whose lowering fails on
this machine is left out and named.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags

from pcv import cli
from pcv.errors import ConfigError
from pcv.inference.export import PLATFORMS, export_bundle
from pcv.inference.predictor import Predictor
from pcv.runtime.workdir import Workdir


def main(argv=None) -> int:
    fv = cli.new_flags()
    flags.DEFINE_string("workdir", None, "The trainer's work dir (local or gs://).", flag_values=fv)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=fv)
    flags.DEFINE_string("out", None, "The bundle's folder (created).", flag_values=fv)
    flags.DEFINE_list("platforms", list(PLATFORMS), "Platforms to export for (cpu always).", flag_values=fv)
    flags.DEFINE_bool("flip", False, "Export with horizontal-flip test-time augmentation.", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace a bundle already in --out.", flag_values=fv)
    flags.DEFINE_bool(
        "calibrated", True, "Use the work dir's calibrated post-processing when it has one.", flag_values=fv
    )

    def program(args, overrides):
        if fv.workdir is None or fv.out is None:
            raise ConfigError("--workdir (the trainer's work dir) and --out (the bundle's folder) are required")
        if len(args) > 1:
            raise ConfigError(f"unexpected arguments {args[1:]}; flags are --name=value")
        unknown = [p for p in fv.platforms if p not in PLATFORMS]
        if unknown:
            raise ConfigError(f"--platforms: unknown {unknown}; choose from {','.join(PLATFORMS)}")
        wd = Workdir(fv.workdir)
        predictor = Predictor.from_workdir(wd, fv.step, overrides=overrides, calibrated=fv.calibrated, flip=fv.flip)
        manifest = export_bundle(
            predictor, fv.out, config=wd.read_config(), platforms=tuple(fv.platforms), overwrite=fv.overwrite
        )
        size = sum(f.stat().st_size for f in Path(fv.out).iterdir()) / 2**20
        print(
            f"exported step {manifest['step']} for {', '.join(manifest['platforms'])} into {fv.out} "
            f"({size:.1f} MiB, input {'x'.join(map(str, manifest['input']['shape']))} uint8)"
        )
        return 0

    return cli.run(fv, program, argv, overrides=cli.MODEL_SETTINGS)


if __name__ == "__main__":
    sys.exit(main())
