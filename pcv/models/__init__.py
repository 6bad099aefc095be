"""pcv.models: the PCV network in Flax NNX (ResNet backbone, FPN, fusion, heads).

::

    from pcv.models import PCVNet
    model = PCVNet(num_classes, grid.num_bins, backbone="resnet50", rngs=nnx.Rngs(0))
    out = model(images)  # {"semantic": [B, H/4, W/4, C], "votes": [B, H/4, W/4, K+1]}

- :mod:`pcv.models.resnet`, :mod:`pcv.models.fpn`, :mod:`pcv.models.pcv_net`: the layers.
- :mod:`pcv.models.build`: the network a :class:`pcv.config.ModelConfig`
  describes, split into plain dicts of arrays and merged back.
- :mod:`pcv.models.weights`: ImageNet weights for the backbone (torchvision
  ``.pth``, timm or converted ``.safetensors``): ``PCVNet(...,
  pretrained="resnet50.safetensors")``; ``python -m pcv.pretrained``
  converts and checks weight files.
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "FPN": "fpn",
        "HEAD_NORMS": "fpn",
        "PyramidFusion": "fpn",
        "upsample_bilinear_2x": "fpn",
        "upsample_nearest_2x": "fpn",
        "PCVNet": "pcv_net",
        "check_input_size": "pcv_net",
        "count_params": "pcv_net",
        "BACKBONES": "resnet",
        "NORMS": "resnet",
        "Frozen": "resnet",
        "FrozenBatchNorm": "resnet",
        "ResNet": "resnet",
        "build_backbone": "resnet",
        "resnet50": "resnet",
        "resnet101": "resnet",
        "resnet_small": "resnet",
        "torchvision_key": "resnet",
        "build_model": "build",
        "abstract_model": "build",
        "merge": "build",
        "named_leaves": "build",
        "split_model": "build",
        "load_backbone": "weights",
    },
)
