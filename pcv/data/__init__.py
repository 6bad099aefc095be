"""Data: panoptic examples from their sources, transforms, targets and the input pipeline.

- :mod:`pcv.data.panoptic`: the example format every source yields,
  :class:`LabelSpace` (category ids -> train ids, things first), the PNG id
  encoding (:func:`rgb2id`, :func:`id2rgb`), :class:`Subset`.
- :mod:`pcv.data.synthetic`: :class:`SyntheticPanoptic`, demo data drawn on
  the fly, deterministic from ``(seed, split, index)``.
- :mod:`pcv.data.coco_panoptic`: :class:`COCOPanoptic`, a validating source
  over COCO-format panoptic files (``coco2017``, ``cityscapes``, ``custom``
  layouts, zips read in place); :class:`PanopticDataError`.
- :mod:`pcv.data.tfds_panoptic`: ``prepare_panoptic`` (tfds builder ->
  array_record, no TensorFlow) and ``PreparedPanoptic``, the reader of a
  prepared split (imported lazily: tfds is slow to import).
- :mod:`pcv.data.transforms`: training augmentation and the evaluation
  geometry (:class:`~pcv.data.transforms.EvalGeometry`).
- :mod:`pcv.data.targets`: :func:`make_targets`, a panoptic label -> the PCV
  training targets (semantic, votes, weights) at the output stride.
- :mod:`pcv.data.batching`: :func:`make_batch`, examples -> images and
  targets.
- :mod:`pcv.data.resize`: host-side sizing and resizing (ids by nearest
  neighbour only).
- :mod:`pcv.data.coco_files`: writing COCO panoptic files (predictions,
  a dataset's ground truth).
- :mod:`pcv.data.pipeline`: the grain pipelines (training, evaluation).
- :mod:`pcv.data.datasets`: :func:`make_datasets`, the splits a
  :class:`pcv.config.DataConfig` names.

::

    from pcv.data import SyntheticPanoptic, make_batch
    from pcv.voting import VoteGrid
    ds = SyntheticPanoptic("train", size=(128, 128), seed=0)
    batch = make_batch([ds[i] for i in range(8)], VoteGrid(((1, 1), (3, 2))), ds.label_space)
    # images [8, 128, 128, 3] float32; semantic / votes / weights [8, 32, 32]
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "IMAGE_MEAN": "batching",
        "IMAGE_STD": "batching",
        "denormalize_images": "batching",
        "example_targets": "batching",
        "make_batch": "batching",
        "normalize_images": "batching",
        "COCOPanoptic": "coco_panoptic",
        "PanopticDataError": "coco_panoptic",
        "cityscapes": "coco_panoptic",
        "coco2017": "coco_panoptic",
        "custom": "coco_panoptic",
        "LabelSpace": "panoptic",
        "PanopticSource": "panoptic",
        "Subset": "panoptic",
        "as_label_space": "panoptic",
        "gt_for_pq": "panoptic",
        "id2rgb": "panoptic",
        "rgb2id": "panoptic",
        "segments_from_ids": "panoptic",
        "CATEGORIES": "synthetic",
        "SyntheticConfig": "synthetic",
        "SyntheticPanoptic": "synthetic",
        "draw_scene": "synthetic",
        "PreparedPanoptic": "tfds_panoptic",
        "prepare_panoptic": "tfds_panoptic",
        "Splits": "datasets",
        "make_datasets": "datasets",
        "make_targets": "targets",
        "CocoPanopticWriter": "coco_files",
        "write_coco_panoptic": "coco_files",
    },
)
