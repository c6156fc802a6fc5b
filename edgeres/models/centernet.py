"""A CenterNet-style detector on a torchvision ResNet: backbone, a small top-down neck to stride 4, three heads.

Objects are points (Zhou et al., "Objects as Points", 2019): a per-class heatmap peaks at each object's
centre, and two small maps give the box size and the sub-cell centre offset there. Compared with FCOS or
anchor-based heads there is no anchor matching, no per-level assignment and no NMS needed in training;
decoding is a 3x3 peak test, which ``edgeres.tasks.detect.decode`` does in numpy for every backend.

The network is plain Conv/BatchNorm/ReLU/Add/Resize(nearest)/Concat, so the export, the Q/DQ writer, ONNX
Runtime and TensorRT treat it like a classifier. Its one output is ``[N, C + 4, H/4, W/4]``: C heatmap
logits, then box width and height in output cells, then the centre offset (x, y) in cells.

Parameter names of the backbone are torchvision's behind a ``backbone.`` prefix, so a classification
checkpoint (or ImageNet weights) initializes it: transfer learning, as users do with pretrained weights.
"""

from __future__ import annotations

import math

from edgeres.errors import require

NECK_CHANNELS = 64
STRIDE = 4
HEATMAP_PRIOR = 0.1  # initial heatmap probability (CenterNet's bias of -2.19)


def _layers():
    torch = require("torch", "desktop")
    return torch.nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3):
    nn = _layers()
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


def make_head(c_in: int, c_out: int, bias: float = 0.0):
    nn = _layers()
    head = nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1))
    nn.init.constant_(head[-1].bias, bias)
    return head


def resnet_features(resnet):
    """The stem and four stages of a torchvision ResNet as a module returning the four stage outputs.

    Its own module (not calls into the ResNet's children from the detector's forward) so that exported node
    names carry the ``backbone/`` scope and map back to ``backbone.*`` modules (fake quantization, QAT)."""
    torch = require("torch", "desktop")

    class ResNetFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
                setattr(self, name, getattr(resnet, name))

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            c1 = self.layer1(x)
            c2 = self.layer2(c1)
            c3 = self.layer3(c2)
            return c1, c2, c3, self.layer4(c3)

    return ResNetFeatures()


def build_centernet(arch: str, num_classes: int, weights: str | None = None):
    """A CenterNet detector on torchvision's ``arch`` (resnet18/34/50...), random or ImageNet-initialized."""
    torch = require("torch", "desktop")
    nn = torch.nn

    from edgeres.models.registry import get_model

    class CenterNetResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = resnet_features(get_model(arch, num_classes=1000 if weights else 1, weights=weights))
            widths = [self.backbone.layer1[-1], self.backbone.layer2[-1], self.backbone.layer3[-1],
                      self.backbone.layer4[-1]]
            channels = [_out_channels(block) for block in widths]
            self.lateral = nn.ModuleList(conv_bn_relu(c, NECK_CHANNELS, kernel=1) for c in channels)
            self.smooth = nn.ModuleList(conv_bn_relu(NECK_CHANNELS, NECK_CHANNELS) for _ in channels[:-1])
            # One module per level: each upsampling gets its own ONNX node name and its own quantizer in QAT.
            self.upsample = nn.ModuleList(nn.Upsample(scale_factor=2, mode="nearest") for _ in channels[:-1])
            self.heatmap = make_head(NECK_CHANNELS, num_classes, bias=-math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))
            self.size = make_head(NECK_CHANNELS, 2)
            self.offset = make_head(NECK_CHANNELS, 2)

        def forward(self, x):
            c1, c2, c3, c4 = self.backbone(x)
            p = self.lateral[3](c4)
            for level, feature in ((2, c3), (1, c2), (0, c1)):  # top-down to stride 4
                p = self.smooth[level](self.lateral[level](feature) + self.upsample[level](p))
            return torch.cat([self.heatmap(p), self.size(p), self.offset(p)], dim=1)

    return CenterNetResNet()


def _out_channels(block) -> int:
    last = getattr(block, "conv3", None) or block.conv2  # Bottleneck (ResNet-50+) or BasicBlock
    return int(last.out_channels)


def backbone_state_from_classifier(state: dict) -> dict:
    """A classification checkpoint's weights as this detector's backbone weights (the head is dropped)."""
    return {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}


def detect_arch_name(arch: str) -> str:
    return f"centernet_{arch}"


def backbone_arch(detect_arch: str) -> str:
    return detect_arch.removeprefix("centernet_")
