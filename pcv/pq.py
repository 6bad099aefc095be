r"""COCO panoptic quality of prediction files: ``python -m pcv.pq --gt_json=... --pred_json=...``.

    python -m pcv.pq --gt_json=panoptic_val2017.json --pred_json=predictions.json \
        [--gt_folder=DIR] [--pred_folder=DIR] [--workers=N] [--output=result.json]

Prints the All / Things / Stuff table (PQ, SQ, RQ in percent); bad input is
one ``error:`` line naming the image and segment, exit code 1. Folders
default to the JSON's path without ``.json`` (as in the COCO panoptic API).
Library: :func:`pcv.evaluation.pq_compute`.
"""

from __future__ import annotations

import sys

from absl import flags

from pcv import cli
from pcv.errors import ConfigError
from pcv.evaluation.pq import format_table, pq_compute
from pcv.runtime.files import write_json
from pcv.runtime.paths import as_path


def main(argv=None) -> int:
    fv = cli.new_flags()
    flags.DEFINE_string("gt_json", None, "COCO panoptic ground-truth JSON.", flag_values=fv)
    flags.DEFINE_string("pred_json", None, "Predictions, same format.", flag_values=fv)
    flags.DEFINE_string("gt_folder", None, "Ground-truth PNGs (default: gt JSON path without .json).", flag_values=fv)
    flags.DEFINE_string("pred_folder", None, "Prediction PNGs (default: pred JSON path without .json).", flag_values=fv)
    flags.DEFINE_integer("workers", None, "Processes (default: by set size; 0 = in-process).", flag_values=fv)
    flags.DEFINE_string("output", None, "Also write the result dict here as JSON.", flag_values=fv)

    def program(args, overrides):
        if not fv.gt_json or not fv.pred_json:
            raise ConfigError("--gt_json and --pred_json are required")
        results = pq_compute(fv.gt_json, fv.pred_json, fv.gt_folder, fv.pred_folder, num_workers=fv.workers)
        print(format_table(results))
        if fv.output:
            write_json(as_path(fv.output), results, indent=2)
        return 0

    return cli.run(fv, program, argv)


if __name__ == "__main__":
    sys.exit(main())
