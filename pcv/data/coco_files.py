"""The one COCO panoptic writer: segment-id PNGs plus one JSON, for predictions and ground truth alike.

Layout (what :func:`pcv.evaluation.pq_compute` and the COCO tools read)::

    <folder>/<json_name>             images (id, file_name, height, width),
                                     annotations (image_id, file_name, segments_info),
                                     categories
    <folder>/<png_folder>/<stem>.png segment ids as RGB (id = R + 256 G + 256^2 B)

Every file is written whole or not at all (:func:`pcv.runtime.files.write_atomic`),
to a local folder or ``gs://``; the JSON is written last, by :meth:`close`,
so a folder with a JSON is complete. Values go through one cleaner
(:func:`pcv.runtime.files.finite`: numpy scalars to Python, no NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pcv.data.panoptic import example_stem, id2rgb
from pcv.runtime.files import encode_png, write_atomic, write_json
from pcv.runtime.paths import as_path


def plain_id(image_id):
    """An image id as JSON wants it (numpy ints -> int, anything else as is)."""
    return int(image_id) if isinstance(image_id, (int, np.integer)) else image_id


class CocoPanopticWriter:
    """Collects images into a COCO panoptic folder (module docstring).

    Args:
      folder: where to write (created).
      categories: the COCO categories for the JSON.
      json_name: the JSON's file name.
      png_folder: the PNG folder's name.
      info: the JSON's ``info`` dict.
    """

    def __init__(
        self,
        folder,
        categories: Sequence[Mapping],
        *,
        json_name: str = "predictions.json",
        png_folder: str = "panoptic",
        info: Mapping | None = None,
    ):
        self.folder = as_path(folder)
        self.png_dir = self.folder / png_folder
        self.json_path = self.folder / json_name
        self.categories = [dict(c) for c in categories]
        self.info = dict(info or {})
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.png_dir.mkdir(parents=True, exist_ok=True)

    def add(
        self, stem: str, image_id, id_map: np.ndarray, segments_info: Sequence[Mapping], *, file_name: str | None = None
    ) -> None:
        """One image: its id map ``[H, W]`` (0 = void) and segments; the PNG is written now."""
        id_map = np.asarray(id_map)
        write_atomic(self.png_dir / f"{stem}.png", encode_png(id2rgb(id_map)))
        image_id = plain_id(image_id)
        h, w = id_map.shape
        self.images.append({"id": image_id, "file_name": file_name or f"{stem}.png", "height": h, "width": w})
        self.annotations.append(
            {"image_id": image_id, "file_name": f"{stem}.png", "segments_info": [dict(s) for s in segments_info]}
        )

    def extend(self, images: Sequence[Mapping], annotations: Sequence[Mapping]) -> None:
        """Entries written by another host (their PNGs are already in the folder)."""
        self.images.extend(images)
        self.annotations.extend(annotations)

    def close(self) -> dict:
        """Write the JSON; returns ``{"json", "panoptic_folder"}`` paths."""
        write_json(
            self.json_path,
            {
                "info": self.info,
                "licenses": [],
                "images": self.images,
                "annotations": self.annotations,
                "categories": self.categories,
            },
            indent=None,
        )
        return {"json": self.json_path, "panoptic_folder": self.png_dir}


def write_coco_panoptic(
    dataset, folder, *, split: str | None = None, indices: Sequence[int] | None = None, images: bool = True
) -> dict:
    """Write (part of) a dataset as COCO panoptic ground truth, laid out like COCO.

    ``folder/panoptic_{split}.json``, ``folder/panoptic_{split}/{stem}.png``
    and, with ``images``, ``folder/{split}/{stem}.png`` (the images,
    lossless). Score predictions against it with::

        python -m pcv.pq --gt_json folder/panoptic_val.json --pred_json pred.json

    Args:
      dataset: random access (``len``, ``[i]``) over examples with a
        ``categories`` attribute.
      folder: where to write (created).
      split: the name in the paths; default ``dataset.split``, else "data".
      indices: which examples; default all.
      images: also write the images.
    Returns:
      ``{"json", "panoptic_folder", "image_folder"}`` paths.
    """
    split = split or getattr(dataset, "split", None) or "data"
    folder = as_path(folder)
    writer = CocoPanopticWriter(
        folder,
        dataset.categories,
        json_name=f"panoptic_{split}.json",
        png_folder=f"panoptic_{split}",
        info={"description": f"pcv panoptic ground truth, split {split}"},
    )
    image_folder = folder / split
    if images:
        image_folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(dataset)) if indices is None else indices:
        example = dataset[int(i)]
        stem = example_stem(example, split)
        if images:
            write_atomic(image_folder / f"{stem}.png", encode_png(np.asarray(example["image"], np.uint8)))
        writer.add(stem, example["image_id"], example["segment_ids"], example["segments_info"], file_name=f"{stem}.png")
    files = writer.close()
    return {**files, "image_folder": image_folder}
