"""The fake-quantized torch model: the Q/DQ artifact's arithmetic in torch, for checks and for QAT.

Conv+BatchNorm pairs are folded first (as the exporter folds them), then fake quantization is hooked
in at exactly the points the Q/DQ writer uses, with the scales JSON's values: per-channel weights,
per-tensor activation inputs of every Conv/Linear, and the residual input of every block's Add.
Points are found through the FP32 ONNX the scales are keyed to, whose node names carry module paths.
"""

from __future__ import annotations

import copy

from edgeres.errors import EdgeresError, require
from edgeres.onnx_model.graph import WEIGHTED_OPS, module_path, producers
from edgeres.quant.points import find_points
from edgeres.quant.scales import QMAX, Scales


def fold_batchnorm(model):
    """A copy of a torchvision ResNet with every BatchNorm folded into the Conv before it (eval semantics)."""
    torch = require("torch", "desktop")
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    pairs = []
    for name, module in modules.items():
        if isinstance(module, torch.nn.BatchNorm2d):
            parent, _, leaf = name.rpartition(".")
            conv_name = _conv_for_bn(parent, leaf, modules)
            if conv_name is None:
                raise EdgeresError(f"cannot fold BatchNorm '{name}': no Conv2d before it")
            pairs.append((conv_name, name))
    for conv_name, bn_name in pairs:
        _set(model, conv_name, fuse_conv_bn_eval(modules[conv_name], modules[bn_name]))
        _set(model, bn_name, torch.nn.Identity())
    return model


def _conv_for_bn(parent: str, leaf: str, modules: dict) -> str | None:
    prefix = parent + "." if parent else ""
    if leaf.startswith("bn"):  # conv1/bn1, conv2/bn2, conv3/bn3
        name = prefix + "conv" + leaf[2:]
    elif leaf.isdigit():  # downsample.0 (conv) / downsample.1 (bn)
        name = prefix + str(int(leaf) - 1)
    else:
        return None
    return name if name in modules else None


def _set(model, name: str, module) -> None:
    parent, _, leaf = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    setattr(owner, leaf, module)


def fake_quantize(x, amax: float):
    torch = require("torch", "desktop")
    return torch.fake_quantize_per_tensor_affine(x, amax / QMAX, 0, -128, 127)


class WeightFakeQuant:
    """Per-channel symmetric int8 fake quantization of a weight, as a torch parametrization (``qmax`` steps per
    side: 127, or 64 for an op reading a signed tensor, ``quant.signs``).

    With ``amax`` the ranges are fixed (the scales JSON's); without, each call uses the weight's current
    per-channel absmax, the way QAT keeps weight ranges in step with training. The rounding passes
    gradients straight through (torch's fake_quantize ops).
    """

    @staticmethod
    def make(axis: int, amax=None, qmax: int = QMAX):
        torch = require("torch", "desktop")

        class _WeightFakeQuant(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.axis = axis
                self.fixed = None if amax is None else torch.tensor(amax, dtype=torch.float32)

            def forward(self, w):
                if self.fixed is not None:
                    channel_amax = self.fixed.to(w.device)
                else:
                    dims = [d for d in range(w.dim()) if d != self.axis]
                    channel_amax = w.detach().abs().amax(dim=dims)
                scale = channel_amax.clamp_min(1e-12) / qmax
                zero = torch.zeros(scale.numel(), dtype=torch.int32, device=w.device)
                return torch.fake_quantize_per_channel_affine(w, scale, zero, self.axis, -128, 127)

        return _WeightFakeQuant()


def strip_fake_quant(folded) -> None:
    """Remove the weight parametrizations and activation hooks, leaving plain float weights (in place)."""
    from torch.nn.utils import parametrize

    for module in folded.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        module._forward_pre_hooks.clear()
        module._forward_hooks.clear()


def fake_quant_model(model, scales: Scales, fp32_onnx_model, dynamic_weights: bool = False):
    """A BN-folded copy of ``model`` computing what the Q/DQ artifact computes.

    Args:
        model: the FP32 torch classifier the scales were calibrated on (or a QAT-trained one).
        scales: its scales JSON.
        fp32_onnx_model: the onnx.ModelProto the scales are keyed to (``model.fp32.onnx``).
        dynamic_weights: weight ranges follow the weights (QAT) instead of the scales' fixed values.
    """
    from torch.nn.utils import parametrize

    folded = fold_batchnorm(model)
    graph = fp32_onnx_model.graph
    points = find_points(fp32_onnx_model)
    made_by = producers(graph)
    modules = dict(folded.named_modules())

    def amax(tensor: str) -> float:
        if tensor not in scales.activations:
            raise EdgeresError(f"scales have no entry for '{tensor}': they belong to another export")
        return float(scales.activations[tensor]["amax"])

    def pre_hook(a):
        return lambda _m, args: (fake_quantize(args[0], a), *args[1:])

    def out_hook(a):
        return lambda _m, _args, out: fake_quantize(out, a)

    for node in graph.node:
        if node.op_type in WEIGHTED_OPS:
            name = module_path(node.name)
            if name not in modules:
                raise EdgeresError(f"ONNX node {node.name} has no module '{name}' in the torch model")
            module = modules[name]
            module.register_forward_pre_hook(pre_hook(amax(node.input[0])))
            weight = node.input[1]
            if weight in points.weights and weight in scales.weights:
                entry = scales.weights[weight]
                quantizer = WeightFakeQuant.make(entry["axis"], None if dynamic_weights else entry["amax"],
                                                 points.weight_qmax.get(weight, QMAX))
                parametrize.register_parametrization(module, "weight", quantizer)
        elif node.op_type == "Add" and any(i in points.activations for i in node.input):
            block = modules.get(module_path(node.name))
            for tensor in (i for i in node.input if i in points.activations):
                src = made_by.get(tensor)
                if src is not None and src.op_type in WEIGHTED_OPS:  # downsample branch: quantize its output
                    modules[module_path(src.name)].register_forward_hook(out_hook(amax(tensor)))
                elif block is not None:  # identity branch: the block's input
                    block.register_forward_pre_hook(pre_hook(amax(tensor)))
                elif src is not None and module_path(src.name) in modules:  # e.g. a detector neck's ReLU / Upsample
                    modules[module_path(src.name)].register_forward_hook(out_hook(amax(tensor)))
                else:
                    raise EdgeresError(f"cannot place the residual quantizer of {node.name} in the torch model")
    return folded
