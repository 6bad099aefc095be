r"""ImageNet backbone weight files: ``python -m pcv.pretrained convert|check ...``.

    python -m pcv.pretrained convert resnet50-11ad3fa6.pth ~/weights/resnet50.safetensors   # needs torch
    python -m pcv.pretrained check ~/weights/resnet50.safetensors [--backbone=resnet50] [--norm=frozen] [-v]

``convert`` turns a PyTorch state dict (torchvision, timm, a training
checkpoint) into a safetensors file that loads without torch; ``check``
loads a file into the backbone and reports what was loaded and ignored,
or every missing, unexpected and mis-shaped name. Library:
:mod:`pcv.models.weights`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags
from flax import nnx

from pcv import cli
from pcv.config import BACKBONES
from pcv.errors import ConfigError
from pcv.models import build_backbone, weights

USAGE = "usage: python -m pcv.pretrained convert IN.pth OUT.safetensors | check FILE [--backbone=...]"


def main(argv=None) -> int:
    fv = cli.new_flags()
    flags.DEFINE_enum(
        "backbone", "resnet50", [b for b in BACKBONES if b != "small"], "check: the backbone.", flag_values=fv
    )
    flags.DEFINE_enum("norm", "frozen", ["batch", "frozen"], "check: the backbone's norm.", flag_values=fv)
    flags.DEFINE_string("prefix", None, "check: text before the backbone names (default: found).", flag_values=fv)
    flags.DEFINE_bool("verbose", False, "check: list the ignored names.", short_name="v", flag_values=fv)

    def program(args, overrides):

        command, rest = (args[1], args[2:]) if len(args) > 1 else (None, [])
        if command == "convert" and len(rest) == 2:
            source, output = rest
            if Path(output).suffix.lower() != ".safetensors":
                raise ConfigError(f"output {output} should end in .safetensors")
            tensors = weights.load_state_dict(source)
            weights.write_safetensors(output, tensors, {"format": "pt", "source": Path(source).name})
            print(f"wrote {len(tensors)} tensors to {output}")
            return 0
        if command == "check" and len(rest) == 1:
            backbone = nnx.eval_shape(lambda: build_backbone(fv.backbone, norm=fv.norm, rngs=nnx.Rngs(0)))
            report = weights.load_backbone(backbone, rest[0], prefix=fv.prefix)
            print(report)
            if fv.verbose:
                print("ignored:", *report.ignored, sep="\n  ")
            return 0
        raise ConfigError(USAGE)

    return cli.run(fv, program, argv)


if __name__ == "__main__":
    sys.exit(main())
