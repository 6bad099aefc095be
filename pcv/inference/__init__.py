"""pcv.inference: from a trained network to panoptic answers.

- :mod:`pcv.inference.postprocess`: logits -> a panoptic map on the device
  (:func:`panoptic_inference`, jit, static shapes; flip test-time
  augmentation).
- :mod:`pcv.inference.segments`: one image's result -> the id map at its
  size and COCO ``segments_info`` (host side).
- :mod:`pcv.inference.predictor`: :class:`Predictor`, a trained model that
  answers for an image of any size.
- :mod:`pcv.inference.predict_files`: predicting image files and writing
  the answers (``python -m pcv.predict``).
- :mod:`pcv.inference.export` and :mod:`pcv.inference.bundle`: writing a
  self-contained bundle (``python -m pcv.export``) and loading one
  (:func:`load_exported`, jax, numpy and Pillow only).
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "VOID": "postprocess",
        "flip_tta": "postprocess",
        "mirror_outputs": "postprocess",
        "panoptic_inference": "postprocess",
        "to_coco_panoptic": "segments",
        "Prediction": "segments",
        "Predictor": "predictor",
        "predict_paths": "predict_files",
        "read_image": "predict_files",
        "export_bundle": "export",
        "ExportedModel": "bundle",
        "load_exported": "bundle",
    },
)
