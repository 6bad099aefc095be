"""pcv.models: the PCV network in Flax NNX (ResNet backbone, FPN, fusion, heads).

::

    from pcv.models import PCVNet
    model = PCVNet(num_classes, grid.num_bins, backbone="resnet50", rngs=nnx.Rngs(0))
    out = model(images)  # {"semantic": [B, H/4, W/4, C], "votes": [B, H/4, W/4, K+1]}

ImageNet weights for the backbone: ``PCVNet(..., pretrained="resnet50.safetensors")``,
or :func:`pcv.models.pretrained.load_backbone`; ``python -m pcv.pretrained``
converts and checks weight files.
"""

from pcv.models.fpn import FPN, HEAD_NORMS, PyramidFusion, upsample_bilinear_2x, upsample_nearest_2x
from pcv.models.pcv_net import PCVNet, check_input_size, count_params
from pcv.models.resnet import (
    BACKBONES,
    NORMS,
    Frozen,
    FrozenBatchNorm,
    ResNet,
    build_backbone,
    resnet50,
    resnet101,
    resnet_small,
    torchvision_key,
)

__all__ = [
    "BACKBONES",
    "FPN",
    "HEAD_NORMS",
    "NORMS",
    "Frozen",
    "FrozenBatchNorm",
    "PCVNet",
    "PyramidFusion",
    "ResNet",
    "build_backbone",
    "check_input_size",
    "count_params",
    "resnet101",
    "resnet50",
    "resnet_small",
    "torchvision_key",
    "upsample_bilinear_2x",
    "upsample_nearest_2x",
]
