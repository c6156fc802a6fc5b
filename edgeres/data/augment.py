"""Photometric augmentation shared by the tasks that augment numpy images themselves (detect, segment)."""

from __future__ import annotations

import numpy as np


def color_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """Random brightness, contrast and per-channel gain on a uint8 RGB image."""
    x = img.astype(np.float32)
    gain = 1 + rng.uniform(-strength, strength, size=3).astype(np.float32) * 0.5
    contrast = 1 + float(rng.uniform(-strength, strength))
    bright = float(rng.uniform(-strength, strength)) * 64
    mean = x.mean()
    x = (x - mean) * contrast + mean + bright
    return np.clip(x * gain, 0, 255).astype(np.uint8)
