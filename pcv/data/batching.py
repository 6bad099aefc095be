"""Examples -> a fixed-shape training batch: normalised images and PCV targets.

Generic over data sources: an example is the dict of
:mod:`pcv.data.panoptic` (``image``, ``segment_ids``, ``segments_info``) and
a :class:`~pcv.data.panoptic.LabelSpace` maps its categories to train ids.

Targets are built by :func:`pcv.data.targets.make_targets` at the output stride,
from ids downsampled with :func:`pcv.data.targets.downsample_ids` (nearest
neighbour; ids are never interpolated).

Batches carry uint8 images (4x less to move between processes and to the
device); the network's input is normalised where it runs, on the device
(:func:`normalize_images` works on numpy and JAX arrays alike):
``(pixel - IMAGE_MEAN) / IMAGE_STD`` per RGB channel on the 0..255 scale,
with the ImageNet statistics (what ImageNet-pretrained backbones expect):
mean ``(123.675, 116.28, 103.53)``, std ``(58.395, 57.12, 57.375)``.

Legend: B batch, H, W image size, h = H / stride, w = W / stride.

With grain::

    ds = grain.MapDataset.source(SyntheticPanoptic("train")).shuffle(seed=0)
    ds = ds.batch(8, batch_fn=functools.partial(make_batch, grid=grid, label_space=labels))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pcv.config import OUTPUT_STRIDE
from pcv.data.panoptic import LabelSpace, as_label_space
from pcv.data.targets import downsample_ids, make_targets
from pcv.voting.grid import VoteGrid

#: ImageNet RGB mean and std on the 0..255 scale.
IMAGE_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
IMAGE_STD = np.array([58.395, 57.12, 57.375], np.float32)
#: The padding colour of images: the mean, so padded pixels are ~0 once normalised.
PAD_COLOR = np.rint(IMAGE_MEAN).astype(np.uint8)


def normalize_images(images):
    """uint8 ``[..., H, W, 3]`` (one image or a batch) -> float32, numpy or JAX as given.

    ``(x - IMAGE_MEAN) / IMAGE_STD`` per channel (module docstring); inside
    ``jit`` it fuses into the first convolution's input.
    """
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    if images.shape[-1] != 3:
        raise ValueError(f"expected RGB images [..., H, W, 3], got shape {images.shape}")
    return (images.astype(np.float32) - IMAGE_MEAN) / IMAGE_STD


def denormalize_images(images) -> np.ndarray:
    """Inverse of :func:`normalize_images`, rounded and clipped to uint8 (for pictures)."""
    images = np.asarray(images, np.float32) * IMAGE_STD + IMAGE_MEAN
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def example_targets(
    example: Mapping,
    grid: VoteGrid,
    label_space: LabelSpace | Sequence[Mapping],
    *,
    stride: int = OUTPUT_STRIDE,
    centroid: str = "mass",
    weight_power: float = 0.5,
) -> dict[str, np.ndarray]:
    """The targets of one example at ``1/stride``: ``semantic``, ``votes``, ``weights`` ``[h, w]``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    ids = downsample_ids(np.asarray(example["segment_ids"]), stride)
    segments = as_label_space(label_space).train_segments(example["segments_info"])
    return make_targets(ids, segments, grid, centroid=centroid, weight_power=weight_power)


def make_batch(
    examples: Sequence[Mapping],
    grid: VoteGrid,
    label_space: LabelSpace | Sequence[Mapping],
    *,
    stride: int = OUTPUT_STRIDE,
    centroid: str = "mass",
    weight_power: float = 0.5,
    pad_to: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Stack examples into one training batch with PCV targets.

    Args:
      examples: B example dicts with ``image`` uint8 ``[H, W, 3]``,
        ``segment_ids`` int ``[H, W]`` (0 = void) and ``segments_info``.
        All must have the same size unless ``pad_to`` is given.
      grid: the voting grid (K bins; vote target K = abstain).
      label_space: category id -> train id and thing / stuff: a
        :class:`LabelSpace` (``dataset.label_space``) or the COCO categories.
      stride: the network's output stride; H and W must be multiples of it.
      centroid, weight_power: see :func:`pcv.data.targets.make_targets`.
      pad_to: ``(H, W)``: pad each example at the bottom and right to this
        size; padded pixels are void (no loss) and the mean colour in ``images``.
    Returns:
      ``images`` uint8 ``[B, H, W, 3]`` (normalised on the device, module docstring);
      ``semantic`` int32 ``[B, h, w]`` train id, -1 = ignore;
      ``votes`` int32 ``[B, h, w]`` bin, K = abstain, -1 = ignore;
      ``weights`` float32 ``[B, h, w]``, 0 on crowd and void.
    """
    if len(examples) == 0:
        raise ValueError("make_batch needs at least one example")
    label_space = as_label_space(label_space)
    images, ids = [], []
    for n, example in enumerate(examples):
        image = np.asarray(example["image"])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"example {n}: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        sid = np.asarray(example["segment_ids"])
        if image.shape[:2] != sid.shape:
            raise ValueError(f"example {n}: image {image.shape[:2]} and segment_ids {sid.shape} differ in size")
        if pad_to is not None:
            image, sid = pad_example_arrays(image, sid, tuple(pad_to), name=f"example {n}")
        images.append(image)
        ids.append(sid)
    shapes = {s.shape for s in ids}
    if len(shapes) > 1:
        raise ValueError(f"examples have different sizes {sorted(shapes)}; crop them or pass pad_to")
    h, w = ids[0].shape
    if h % stride or w % stride:
        raise ValueError(f"image size {h}x{w} is not a multiple of stride {stride}; pad or crop it")

    targets = [
        example_targets(
            {"segment_ids": sid, "segments_info": ex["segments_info"]},
            grid,
            label_space,
            stride=stride,
            centroid=centroid,
            weight_power=weight_power,
        )
        for sid, ex in zip(ids, examples)
    ]
    return {
        "images": np.stack(images),
        "semantic": np.stack([t["semantic"] for t in targets]).astype(np.int32),
        "votes": np.stack([t["votes"] for t in targets]).astype(np.int32),
        "weights": np.stack([t["weights"] for t in targets]).astype(np.float32),
    }


def pad_example_arrays(
    image: np.ndarray, ids: np.ndarray, size: tuple[int, int], *, name: str = "example"
) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom / right to ``size``: the image with :data:`PAD_COLOR`, the ids with 0 (void)."""
    h, w = ids.shape
    if (h, w) == tuple(size):
        return image, ids
    if h > size[0] or w > size[1]:
        raise ValueError(f"{name}: cannot pad {h}x{w} to the smaller {size[0]}x{size[1]}")
    out_image = np.empty((*size, 3), np.uint8)
    out_image[...] = PAD_COLOR
    out_image[:h, :w] = image
    out_ids = np.zeros(size, ids.dtype)
    out_ids[:h, :w] = ids
    return out_image, out_ids
