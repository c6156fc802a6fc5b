"""The picture in docs/segment.md: an engine's colour overlays on val scenes beside the true masks.

Run:  python benchmarks/segment_picture.py --engine ENGINE --data DIGIT_MASKS --out docs/segment-int8-overlays.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a digit-masks (or any segmentation) data set")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscaling of each panel")
    args = parser.parse_args()

    import cv2

    from edgeres.engine import open_engine
    from edgeres.processing import preprocess, read_image
    from edgeres.tasks import get_task
    from edgeres.tasks.segment.layouts import load_eval_split
    from edgeres.tasks.segment.outputs import Segmentation

    task = get_task("segment")
    split = load_eval_split(args.data)
    rows = []
    with open_engine(args.engine) as engine:
        names = engine.model_config.class_names
        for i in range(args.count):
            image = read_image(split.samples[i].image)
            outputs = engine.runner.infer(preprocess([image], engine.preprocess))
            (pred,) = task.decode(
                next(iter(outputs.values())), [image.shape[:2]], engine.preprocess.input_size, names, {}
            )
            truth = split.read_mask(i).copy()
            truth[truth == 255] = 0  # the ignored stroke edge drawn as background
            big = cv2.resize(image, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST)
            up = cv2.INTER_NEAREST
            panels = [big]
            for m in (truth, pred.classes):
                seg = Segmentation(cv2.resize(m, (big.shape[1], big.shape[0]), interpolation=up))
                panels.append(task.draw(big.copy(), seg, names, {"overlay_alpha": 0.6}))
            rows.append(np.concatenate(panels, axis=1))
    grid = np.concatenate(rows, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {args.out}: {args.count} val scenes (image, true mask, {args.engine.name} prediction)")


if __name__ == "__main__":
    main()
