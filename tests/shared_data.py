"""Where the shared test data lives (not a test module).

The real COCO panoptic sample of ``../shared/data`` (its README): next to the
checkout, or wherever ``PCV_SHARED_DATA`` points.
"""

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("PCV_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SAMPLE = SHARED_DATA / "coco_panoptic_sample"
