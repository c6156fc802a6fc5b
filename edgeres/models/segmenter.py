"""Semantic segmenters on torchvision ResNets: edgeres' own stride-4 network and torchvision's FCN / DeepLabV3.

``seg_resnet18/34/50``: the ResNet's four stages, the detector's top-down neck (1x1 lateral convs, nearest
upsampling by 2, 3x3 smoothing) down to stride 4, a 3x3 conv and a 1x1 classifier. The output is the class
logits at a quarter of the input size, ``[N, C, H/4, W/4]``; the last upsampling to the image size and the
argmax happen in numpy (``edgeres.tasks.segment.outputs``), at the original image's size. Why this design:

- it quantizes well: only Conv/BatchNorm/ReLU/Add and nearest Resize, which moves int8 values without
  changing them, so every Conv runs in integer on the CPU engines and TensorRT; no atrous (dilated) convs,
  whose large strided windows run slowly on CPUs, and no bilinear resize inside the int8 graph;
- it stays sharp: stride 4 (not FCN's 8 or 32) with stride-4 features fused in, and scores upsampled
  bilinearly rather than labels, so boundaries are smooth, not blocky;
- a classifier's or detector's backbone initializes it (the ``backbone.`` names are the detector's).

``fcn_resnet50/101`` and ``deeplabv3_resnet50/101``: torchvision's models wrapped to return their ``out`` tensor
(full input size), so users who trained those can deploy them (no auxiliary head: inference only needs ``out``).
"""

from __future__ import annotations

from edgeres.errors import require
from edgeres.models.centernet import _out_channels, conv_bn_relu, resnet_features

NECK_CHANNELS = 64
HEAD_CHANNELS = 64
STRIDE = 4
TORCHVISION_SEGMENTERS = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101")


def build_segmenter(arch: str, num_classes: int, weights: str | None = None):
    """edgeres' stride-4 segmenter on torchvision's ``arch`` (resnet18/34/50), random or ImageNet backbone."""
    torch = require("torch", "desktop")
    nn = torch.nn

    from edgeres.models.registry import get_model

    class SegResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = resnet_features(get_model(arch, num_classes=1000 if weights else 1, weights=weights))
            blocks = [
                self.backbone.layer1[-1],
                self.backbone.layer2[-1],
                self.backbone.layer3[-1],
                self.backbone.layer4[-1],
            ]
            channels = [_out_channels(block) for block in blocks]
            self.lateral = nn.ModuleList(conv_bn_relu(c, NECK_CHANNELS, kernel=1) for c in channels)
            self.smooth = nn.ModuleList(conv_bn_relu(NECK_CHANNELS, NECK_CHANNELS) for _ in channels[:-1])
            # One module per level: each upsampling gets its own ONNX node name and its own quantizer in QAT.
            self.upsample = nn.ModuleList(nn.Upsample(scale_factor=2, mode="nearest") for _ in channels[:-1])
            self.head = conv_bn_relu(NECK_CHANNELS, HEAD_CHANNELS)
            self.classifier = nn.Conv2d(HEAD_CHANNELS, num_classes, 1)

        def forward(self, x):
            c1, c2, c3, c4 = self.backbone(x)
            p = self.lateral[3](c4)
            for level, feature in ((2, c3), (1, c2), (0, c1)):  # top-down to stride 4
                p = self.smooth[level](self.lateral[level](feature) + self.upsample[level](p))
            return self.classifier(self.head(p))

    return SegResNet()


def build_torchvision_segmenter(name: str, num_classes: int, weights: str | None = None):
    """torchvision's ``fcn_resnet50`` etc. returning ``out`` alone; ``weights`` a local state-dict file of that
    model (torchvision's COCO-VOC weights, or a user's own) or None (random)."""
    torch = require("torch", "desktop")
    tv = require("torchvision", "desktop")

    class OutOnly(torch.nn.Module):
        """torchvision's segmenters return ``{"out": ..., "aux": ...}``; exports and engines take one tensor."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)["out"]

    model = getattr(tv.models.segmentation, name)(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )
    if weights:
        from pathlib import Path

        from edgeres.models.checkpoint import load_state_dict_file

        state = {k: v for k, v in load_state_dict_file(Path(weights)).items() if not k.startswith("aux_classifier.")}
        model.load_state_dict(state)
    return OutOnly(model)


def backbone_state(state: dict) -> dict:
    """A torchvision ResNet's weights (``conv1.*``, ``layer1.*``..., a classifier's) or a model's ``backbone.*``
    (a detector's or segmenter's) as this segmenter's backbone; heads and necks are dropped. Told apart by the
    state dict's own keys."""
    if any(k.startswith("backbone.") for k in state):
        return {k: v for k, v in state.items() if k.startswith("backbone.")}
    return {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}


def backbone_arch(seg_arch: str) -> str:
    return seg_arch.removeprefix("seg_")
