"""What a panoptic dataset looks like, in numbers: computed by ``pcv.prepare`` and kept beside the data.

    python -m pcv.prepare --stats=~/pcv_data/pcv_panoptic/mydata/1.0.0     # print them again

Per split (``stats.json`` next to ``categories.json``):

- ``images``: the count; ``image_size``: percentiles of height, width,
  shorter and longer side;
- ``instances`` (thing segments that are not crowd): the count, per image,
  their area in pixels, their extent (the longer side of their box) in
  pixels and as a fraction of the image's shorter side; images without one;
- ``crowd``: crowd segments, their share of thing segments and of pixels;
- ``stuff``: stuff regions and their area as a fraction of the image;
- ``void_pixel_share``;
- ``per_class``: segments, images containing the class, share of segments,
  and percentiles of area (and extent, for things).

Percentiles are ``p0, p5, p25, p50, p75, p95, p100``. The numbers come from
the annotations' areas and boxes, which the reader checks against the PNGs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

PERCENTILES = (0, 5, 25, 50, 75, 95, 100)


def percentiles(values) -> dict | None:
    """``{"p0": ..., ..., "p100": ...}`` of the values (None when there are none)."""
    values = np.asarray(values, np.float64)
    if not values.size:
        return None
    return {f"p{p}": round(float(v), 4) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


class DatasetStats:
    """Accumulates one split's numbers, example by example (module docstring)."""

    def __init__(self, categories: Sequence[Mapping]):
        self.categories = {int(c["id"]): c for c in categories}
        self.heights: list[int] = []
        self.widths: list[int] = []
        self.instances_per_image: list[int] = []
        self.instance_area: list[int] = []
        self.instance_extent: list[int] = []
        self.instance_extent_rel: list[float] = []
        self.stuff_area_rel: list[float] = []
        self.crowd_segments = 0
        self.thing_segments = 0
        self.crowd_pixels = 0
        self.labelled_pixels = 0
        self.pixels = 0
        self.per_class = {cid: {"segments": 0, "images": 0, "area": [], "extent": []} for cid in self.categories}

    def add(self, height: int, width: int, segments: Sequence[Mapping]) -> None:
        height, width = int(height), int(width)
        self.heights.append(height)
        self.widths.append(width)
        short, pixels = min(height, width), height * width
        self.pixels += pixels
        instances, present = 0, set()
        for seg in segments:
            cid, area = int(seg["category_id"]), int(seg["area"])
            category = self.categories.get(cid)
            if category is None:
                continue  # the reader already refused unknown categories
            self.labelled_pixels += area
            entry = self.per_class[cid]
            entry["segments"] += 1
            entry["area"].append(area)
            present.add(cid)
            if category.get("isthing"):
                self.thing_segments += 1
                if seg.get("iscrowd"):
                    self.crowd_segments += 1
                    self.crowd_pixels += area
                    continue
                extent = max(int(seg["bbox"][2]), int(seg["bbox"][3]))
                instances += 1
                self.instance_area.append(area)
                self.instance_extent.append(extent)
                self.instance_extent_rel.append(extent / short)
                entry["extent"].append(extent)
            else:
                self.stuff_area_rel.append(area / pixels)
        for cid in present:
            self.per_class[cid]["images"] += 1
        self.instances_per_image.append(instances)

    def result(self) -> dict:
        heights, widths = np.asarray(self.heights), np.asarray(self.widths)
        total_segments = sum(e["segments"] for e in self.per_class.values()) or 1
        per_class = {}
        for cid, entry in self.per_class.items():
            category = self.categories[cid]
            row = {
                "id": cid,
                "isthing": bool(category.get("isthing")),
                "segments": entry["segments"],
                "images": entry["images"],
                "share": round(entry["segments"] / total_segments, 4),
                "area": percentiles(entry["area"]),
            }
            if category.get("isthing"):
                row["extent"] = percentiles(entry["extent"])
            per_class[str(category.get("name", cid))] = row
        return {
            "images": len(self.heights),
            "image_size": {
                "height": percentiles(heights),
                "width": percentiles(widths),
                "short_side": percentiles(np.minimum(heights, widths)),
                "long_side": percentiles(np.maximum(heights, widths)),
            },
            "instances": {
                "count": len(self.instance_area),
                "per_image": percentiles(self.instances_per_image),
                "area": percentiles(self.instance_area),
                "extent": percentiles(self.instance_extent),
                "extent_rel": percentiles(self.instance_extent_rel),
                "images_without": int(sum(n == 0 for n in self.instances_per_image)),
            },
            "crowd": {
                "segments": self.crowd_segments,
                "share_of_things": round(self.crowd_segments / max(self.thing_segments, 1), 4),
                "pixel_share": round(self.crowd_pixels / max(self.pixels, 1), 4),
            },
            "stuff": {"regions": len(self.stuff_area_rel), "area_rel": percentiles(self.stuff_area_rel)},
            "void_pixel_share": round(1 - self.labelled_pixels / max(self.pixels, 1), 4),
            "per_class": per_class,
        }


def _p(row: Mapping | None, key: str, fmt: str = ".0f") -> str:
    return "-" if row is None else format(row[key], fmt)


def summary_lines(split: str, stats: Mapping, *, per_class: bool = False) -> list[str]:
    """A few lines a person reads: sizes, instances, stuff, crowd and void (and, optionally, every class)."""
    size, inst = stats["image_size"], stats["instances"]
    lines = [
        f"{split}: {stats['images']} images, {_p(size['height'], 'p50')}x{_p(size['width'], 'p50')} median "
        f"(shorter side {_p(size['short_side'], 'p0')}-{_p(size['short_side'], 'p100')})",
        f"  instances: {inst['count']} ({_p(inst['per_image'], 'p50', '.1f')} per image median, "
        f"{inst['images_without']} images without); extent {_p(inst['extent'], 'p5')} / "
        f"{_p(inst['extent'], 'p50')} / {_p(inst['extent'], 'p95')} px (p5 / p50 / p95), "
        f"{_p(inst['extent_rel'], 'p95', '.0%')} of the shorter side at p95",
        f"  stuff: {stats['stuff']['regions']} regions, {_p(stats['stuff']['area_rel'], 'p5', '.1%')} / "
        f"{_p(stats['stuff']['area_rel'], 'p50', '.1%')} of the image (p5 / p50); crowd "
        f"{stats['crowd']['share_of_things']:.1%} of thing segments; void {stats['void_pixel_share']:.1%} of pixels",
    ]
    if per_class:
        for name, row in sorted(stats["per_class"].items(), key=lambda kv: -kv[1]["segments"]):
            extra = f", extent p50 {_p(row.get('extent'), 'p50')} px" if row["isthing"] else ""
            lines.append(
                f"    {name:<24} {'thing' if row['isthing'] else 'stuff'}  {row['segments']:7d} segments "
                f"({row['share']:.1%}) in {row['images']} images, area p50 {_p(row['area'], 'p50')} px{extra}"
            )
    return lines
