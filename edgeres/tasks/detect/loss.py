"""CenterNet's training loss: penalty-reduced focal loss on the class heatmaps, L1 on box size and offset."""

from __future__ import annotations

SIZE_WEIGHT = 0.1  # CenterNet's weights: heatmap focal loss 1, size L1 0.1, offset L1 1
OFFSET_WEIGHT = 1.0


def centernet_loss(output, heatmap, size, offset, mask):
    """CenterNet's loss: penalty-reduced focal loss on the heatmap, L1 on size and offset at object centres.

    Returns:
        (total, parts) where parts holds the three terms as floats.
    """
    import torch
    import torch.nn.functional as F

    c = heatmap.shape[1]
    logits = output[:, :c].float()
    pos = heatmap.ge(1.0 - 1e-6).float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = (log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = (log_not_p * p**2 * (1 - heatmap) ** 4 * (1 - pos)).sum()
    num_pos = pos.sum().clamp(min=1.0)
    heat = -(pos_loss + neg_loss) / num_pos
    m = mask.unsqueeze(1)
    denom = (m.sum() * 2).clamp(min=1.0)
    size_l1 = ((output[:, c : c + 2] - size).abs() * m).sum() / denom
    offset_l1 = ((output[:, c + 2 : c + 4] - offset).abs() * m).sum() / denom
    total = heat + SIZE_WEIGHT * size_l1 + OFFSET_WEIGHT * offset_l1
    parts = {"heatmap": float(heat.detach()), "size": float(size_l1.detach()), "offset": float(offset_l1.detach())}
    return total, parts


def make_loss(label_smoothing: float = 0.0):
    """The generic loop's loss: (maps, (heatmap, size, offset, mask)) -> (loss, {})."""

    def loss(outputs, targets):
        total, _ = centernet_loss(outputs, *targets)
        return total, {}

    return loss
