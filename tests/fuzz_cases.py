"""Fuzz cases for every file edgeres reads: real seed files, mutations of them, and the check every case must pass.

Shared by the CI fuzz tests (``tests/test_fuzz_*.py``, a few cases per reader) and the long seeded campaign
(``benchmarks/fuzz_campaign.py``). A case passes when the reader either accepts the file (a harmless bit
flip in pixel data is still an image) or refuses it with an ``EdgeresError`` whose message is one line
naming the file; any other exception is what a user would see as a traceback. Around every case the
watched folder is fingerprinted: no file of the user's may change and no new file may appear.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------------------------- outcomes

# The data-set readers (COCO, YOLO) report every problem they find at once: a first line naming the folder and
# counting them, then one line per problem. That is the one multi-line refusal the checks accept.
PROBLEM_LIST = re.compile(r"^\d+ problems? in ")


@dataclass
class Outcome:
    """What one case did: ``accepted`` / ``refused`` (both fine) or a ``problem`` (a failure to report)."""

    reader: str
    case: str
    kind: str  # accepted | refused | problem
    message: str = ""


def fingerprint(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (links recorded as their target text)."""
    found = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            found[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def attempt(reader: str, case: str, read: Callable[[], object], names: tuple[str, ...], watched: Path) -> Outcome:
    """Run ``read`` and judge it.

    Args:
        reader: the reader's name (the table row).
        case: what was done to the input.
        read: reads the input the way edgeres does.
        names: file or folder names of which at least one must appear in a refusal.
        watched: the folder holding the user's files: nothing in it may change or appear.
    """
    from edgeres.errors import EdgeresError

    before = fingerprint(watched)
    with captured_output() as printed:
        try:
            read()
            kind, message = "accepted", ""
        except EdgeresError as exc:
            kind, message = "refused", str(exc)
        except Exception as exc:  # any other exception is a traceback for the user
            kind, message = "problem", f"traceback: {type(exc).__name__}: {str(exc)[:300]}"
    if kind == "refused":
        first = message.strip().splitlines()[0] if message.strip() else ""
        listed = PROBLEM_LIST.match(first) is not None
        if "\n" in message.strip() and not listed:
            kind, message = "problem", f"refusal is not one line: {message!r}"
        elif not any(n in (message if listed else first) for n in names):
            kind, message = "problem", f"refusal does not name the file ({', '.join(names)}): {message}"
        elif printed.text.strip():
            kind, message = "problem", f"printed besides the refusal: {printed.text.strip()[:200]!r} ({message})"
    after = fingerprint(watched)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        kind, message = "problem", f"files changed or appeared: {changed[:5]} ({message})"
    return Outcome(reader, case, kind, message)


class _Printed:
    text = ""


@contextlib.contextmanager
def captured_output():
    """What the case printed on file descriptors 1 and 2 (C libraries included): a refusal must be the only line."""
    import sys
    import tempfile

    printed = _Printed()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield printed
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            printed.text = sink.read(1 << 16).decode(errors="replace")


# ----------------------------------------------------------------------------------------------- mutations


def truncate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    keep = rng.randrange(0, max(1, len(data)))
    return f"truncated to {keep} of {len(data)} bytes", data[:keep]


def bit_flips(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    buf = bytearray(data)
    n = rng.choice((1, 4, 32))
    head = min(len(buf), 4096)  # headers live at the start: flip there half the time
    for _ in range(n):
        i = rng.randrange(head) if rng.random() < 0.5 else rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return f"{n} bit flips", bytes(buf)


def zero_run(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    start = rng.randrange(len(data))
    size = rng.choice((8, 256, 65536))
    return f"{size} zero bytes at {start}", data[:start] + bytes(min(size, len(data) - start)) + data[start + size :]


BYTE_MUTATIONS = (truncate, bit_flips, zero_run)


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    return rng.choice(BYTE_MUTATIONS)(data, rng)


# ----------------------------------------------------------------------------------------------- images


def png_bytes(width: int, height: int, bit_depth: int = 8, rows: bytes | None = None) -> bytes:
    """A PNG file (RGB) declaring ``width`` x ``height``; ``rows`` is the raw filtered scanline data."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    if rows is None:  # all the declared pixels, zero: compresses about 1000:1
        row = b"\x00" + bytes(width * 3 * bit_depth // 8)
        comp = zlib.compressobj(9)
        rows_z = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    else:
        rows_z = zlib.compress(rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows_z) + chunk(b"IEND", b"")


def write_image_seeds(folder: Path) -> dict[str, Path]:
    """Real images (a scikit-image photo) in the forms cameras and data sets produce, plus odd ones."""
    import cv2

    from edgeres.data.compose import load_backgrounds

    folder.mkdir(parents=True, exist_ok=True)
    photo = np.ascontiguousarray(load_backgrounds(["coffee"])[0][..., ::-1])  # RGB -> BGR
    photo = cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA)
    seeds = {}
    for name, params in (
        ("photo.jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]),
        ("photo.png", []),
        ("photo.bmp", []),
        ("photo.webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    ):
        cv2.imwrite(str(folder / name), photo, params)
        seeds[name] = folder / name
    cv2.imwrite(str(folder / "photo16.png"), photo.astype(np.uint16) * 257)  # 16-bit PNG
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "one.png"), photo[:1, :1])  # 1x1
    (folder / "cmyk.jpg").write_bytes(cmyk_jpeg(photo))
    for name in ("photo16.png", "gray.png", "rgba.png", "one.png", "cmyk.jpg"):
        seeds[name] = folder / name
    return seeds


def cmyk_jpeg(bgr: np.ndarray) -> bytes:
    """A CMYK (Adobe) JPEG, as print workflows write them, made with Pillow when it is installed."""
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with torchvision; without it, a plain JPEG stands in
        import cv2

        return cv2.imencode(".jpg", bgr)[1].tobytes()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).convert("CMYK").save(buf, "JPEG")
    return buf.getvalue()


def image_special_cases(folder: Path) -> Iterator[tuple[str, Path]]:
    """Inputs no mutation finds by chance: declared sizes beyond memory (decompression bombs), empty files."""
    folder.mkdir(parents=True, exist_ok=True)
    for w, h in ((50000, 50000), (30000, 30000), (200000, 1)):
        # The header declares the size, the data holds a few rows: decoding would allocate the whole image
        # (7.5 GB for 50000x50000) before noticing; the header check refuses it without decoding.
        p = folder / f"bomb-{w}x{h}.png"
        p.write_bytes(png_bytes(w, h, rows=(b"\x00" + bytes(w * 3)) * min(h, 4)))
        yield f"PNG declaring {w}x{h}", p
    lie = folder / "lie-4000x4000.png"  # header says 4000x4000, data holds 8 rows: a truncated stream
    lie.write_bytes(png_bytes(4000, 4000, rows=(b"\x00" + bytes(12000)) * 8))
    yield "PNG header larger than its data", lie
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    yield "empty file", empty
    text = folder / "notes.png"
    text.write_text("not an image\n")
    yield "text named .png", text


def read_image_like_edgeres(path: Path) -> None:
    from edgeres.processing import read_image

    img = read_image(path)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, (img.shape, img.dtype)


# ----------------------------------------------------------------------------------------------- checkpoints


def safetensors_header_lies(data: bytes) -> Iterator[tuple[str, bytes]]:
    """A safetensors file with its 8-byte header length or JSON header edited."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    yield "header length 2**63", struct.pack("<Q", 2**63) + data[8:]
    yield "header length past the end", struct.pack("<Q", len(data) * 2) + data[8:]
    first = next(k for k in header if k != "__metadata__")

    def with_header(h: dict) -> bytes:
        raw = json.dumps(h).encode()
        raw += b" " * (-len(raw) % 8)
        return struct.pack("<Q", len(raw)) + raw + body

    for label, edit in (
        ("offsets past the end", lambda t: t.update(data_offsets=[0, len(body) * 4])),
        ("shape larger than its bytes", lambda t: t.update(shape=[1 << 20, 1 << 20])),
        ("unknown dtype", lambda t: t.update(dtype="Q7")),
        ("negative shape", lambda t: t.update(shape=[-1])),
    ):
        h = json.loads(json.dumps(header))
        edit(h[first])
        yield f"{label} ({first})", with_header(h)
    h = json.loads(json.dumps(header))
    h["__metadata__"]["edgeres"] = "{not json"
    yield "metadata block not JSON", with_header(h)
    h = json.loads(json.dumps(header))
    meta = json.loads(h["__metadata__"]["edgeres"])
    meta["config"]["class_names"] = 7
    h["__metadata__"]["edgeres"] = json.dumps(meta)
    yield "metadata class_names not a list", with_header(h)
    h = json.loads(json.dumps(header))
    meta = json.loads(h["__metadata__"]["edgeres"])
    meta["format_version"] = 99
    h["__metadata__"]["edgeres"] = json.dumps(meta)
    yield "format from the future", with_header(h)


def safetensors_value_cases(seed: Path) -> Iterator[tuple[str, bytes]]:
    """Well-formed files with bad contents: NaN / Inf weights, integer weights."""
    import torch
    from safetensors.torch import load_file, save_file

    from edgeres.models.checkpoint import METADATA_KEY

    with __import__("safetensors").safe_open(str(seed), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(seed))
    for label, value in (("NaN", float("nan")), ("Inf", float("inf"))):
        bad = dict(state)
        bad["fc.weight"] = state["fc.weight"].clone()
        bad["fc.weight"][0, 0] = value
        yield f"{label} in fc.weight", save_bytes(save_file, bad, meta)
    bad = dict(state)
    bad["conv1.weight"] = state["conv1.weight"].to(torch.int32)
    yield "conv1.weight stored as int32", save_bytes(save_file, bad, meta)
    bad = {k: v for k, v in state.items() if k != "fc.weight"}
    yield "fc.weight missing", save_bytes(save_file, bad, meta)
    assert METADATA_KEY in meta


def save_bytes(save_file, state: dict, meta: dict) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.safetensors"
        save_file(state, str(p), metadata=meta)
        return p.read_bytes()


def read_checkpoint_like_edgeres(path: Path, arch: str | None = None) -> None:
    """What every command does with --model: load the file, then build the network from it."""
    from edgeres.models.checkpoint import load_checkpoint

    load_checkpoint(path, arch=arch).build_model()


class RunsCode:
    """A pickle that would run a shell command when unpickled (the classic malicious checkpoint)."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/edgeres-fuzz-pwned",))


def pth_special_cases(state: dict, folder: Path) -> Iterator[tuple[str, Path]]:
    """.pth files that must be refused without running or unpacking anything."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "runs-code.pth"
    torch.save({"state_dict": state, "hook": RunsCode()}, p)
    yield "pickle that runs os.system", p
    p = folder / "legacy-runs-code.pth"
    import pickle

    p.write_bytes(pickle.dumps({"fc.weight": RunsCode()}, protocol=2))
    yield "plain pickle that runs os.system", p
    p = folder / "zip-bomb.pth"
    write_zip_bomb(p, state)
    yield "zip bomb: a 64 KB tensor record unpacking to 64 MiB", p
    p = folder / "not-a-dict.pth"
    torch.save([1, 2, 3], p)
    yield "a list, not a state dict", p


def write_zip_bomb(path: Path, state: dict, unpacked_mib: int = 64) -> None:
    """A torch zip checkpoint whose tensor record is ``unpacked_mib`` MiB of deflated zeros (1000:1 on disk)."""
    import torch

    buf = io.BytesIO()
    torch.save({"fc.weight": state["fc.weight"]}, buf)
    buf.seek(0)
    zeros = bytes(1 << 24)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            if "/data/" in info.filename and not info.filename.endswith(".pkl"):
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(entry, "w", force_zip64=True) as out:
                    for _ in range(unpacked_mib // 16):
                        out.write(zeros)
            else:
                dst.writestr(info.filename, src.read(info.filename))


# ----------------------------------------------------------------------------------------------- ONNX


def onnx_external_cases(model_file: Path, folder: Path) -> Iterator[tuple[str, Path, Path]]:
    """(case, model path, folder to watch): external data pointing outside the model's folder, through a link,
    to a missing file, and an initializer removed. The files outside are created, so only the check stops a read."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    base = onnx.load(str(model_file))
    outside = folder / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.bin").write_bytes(os.urandom(1 << 16))

    def external(name: str, location: str, link_to: Path | None = None) -> tuple[Path, Path]:
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        m = onnx.ModelProto()
        m.CopyFrom(base)
        convert_model_to_external_data(m, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
        onnx.save(m, str(d / "model.onnx"))  # writes weights.bin beside it
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(m, str(d / "model.onnx"))
        if link_to is not None:
            (d / location).symlink_to(link_to)
        return d / "model.onnx", d

    p, d = external("dotdot", "../outside/secret.bin")
    yield "external data ../outside/secret.bin", p, d
    p, d = external("absolute", str(outside / "secret.bin"))
    yield "external data at an absolute path", p, d
    p, d = external("link", "linked.bin", link_to=outside / "secret.bin")
    yield "external data through a symlink leaving the folder", p, d
    p, d = external("missing", "nowhere.bin")
    yield "external data file missing", p, d
    d = folder / "no-init"
    d.mkdir(parents=True, exist_ok=True)
    m = onnx.ModelProto()
    m.CopyFrom(base)
    del m.graph.initializer[0]
    onnx.save(m, str(d / "model.onnx"))
    yield "an initializer removed", d / "model.onnx", d
    d = folder / "empty-graph"
    d.mkdir(parents=True, exist_ok=True)
    m = onnx.ModelProto()
    m.CopyFrom(base)
    del m.graph.node[:]
    onnx.save(m, str(d / "model.onnx"))
    yield "a graph without nodes", d / "model.onnx", d


def read_onnx_like_edgeres(path: Path) -> None:
    """What opening an ONNX Runtime engine does: the file checks, then a session."""
    from edgeres.backends.onnxrt.loader import SessionLoader

    SessionLoader(path, threads=1)()


# ----------------------------------------------------------------------------------------------- manifests


def manifest_cases(engine_dir: Path, rng: random.Random, count: int) -> Iterator[tuple[str, Callable[[Path], None]]]:
    """Edits of an engine folder (applied to a copy): hypothesis-style field edits plus the named attacks."""
    from edgeres.manifest import MANIFEST_SUFFIX

    def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
        def apply(folder: Path) -> None:
            mf = next(folder.glob("*" + MANIFEST_SUFFIX))
            d = json.loads(mf.read_text())
            change(d)
            mf.write_text(json.dumps(d))

        return apply

    def set_path(keys: tuple, value) -> Callable[[dict], None]:
        def change(d: dict) -> None:
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value

        return change

    def swap_engine(folder: Path) -> None:
        eng = next(p for p in folder.iterdir() if p.suffix in (".onnx", ".plan"))
        data = bytearray(eng.read_bytes())
        data[len(data) // 2] ^= 0xFF
        eng.write_bytes(bytes(data))

    yield "engine bytes changed after the build", swap_engine
    yield "edited engine sha256", edit_manifest(set_path(("engine", "sha256"), "0" * 64))
    yield "schema from the future", edit_manifest(set_path(("schema_version",), 99))
    yield "engine file ../../etc/passwd", edit_manifest(set_path(("engine", "file"), "../../etc/passwd"))
    yield "manifest truncated", lambda folder: _truncate_manifest(folder, MANIFEST_SUFFIX)
    fields = (
        "engine",
        "backend",
        "input",
        "preprocess",
        "class_names",
        "task",
        "arch",
        "precision",
        "device",
        "source",
        "schema_version",
    )
    odd_values = (None, 7, -1, "x", [], {}, [1, 2], {"a": 1}, 1e308, True)
    for _ in range(count):
        key = rng.choice(fields)
        value = rng.choice(odd_values)
        sub = rng.choice((None, "file", "name", "sha256", "size", "max_batch", "version", "input_size", "mean"))
        if sub is None:
            yield f"{key} = {value!r}", edit_manifest(set_path((key,), value))
        else:
            yield f"{key}.{sub} = {value!r}", edit_manifest(_set_nested(key, sub, value))


def _set_nested(key: str, sub: str, value) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        if isinstance(d.get(key), dict):
            d[key][sub] = value
        else:
            d[key] = {sub: value}

    return change


def _truncate_manifest(folder: Path, suffix: str) -> None:
    mf = next(folder.glob("*" + suffix))
    raw = mf.read_bytes()
    mf.write_bytes(raw[: len(raw) // 2])


def open_engine_like_edgeres(folder: Path) -> None:
    """What predict/bench/eval/camera do first: resolve, check and open the engine, then run one batch."""
    from edgeres.engine import open_engine

    engine = open_engine(folder, threads=1)
    with engine:
        h, w = engine.preprocess.input_size
        engine.runner.infer(np.zeros((1, 3, h, w), np.float32))


# ----------------------------------------------------------------------------------------------- calibration


def scales_cases(rng: random.Random, count: int) -> Iterator[tuple[str, Callable[[dict], None]]]:
    """Edits of a scales.json document (each returns nothing; it edits in place)."""

    def first(section: str) -> Callable[[dict], dict]:
        return lambda d: next(iter(d[section].values()))

    yield "amax as text", lambda d: first("activations")(d).update(amax="big")
    yield "amax negative", lambda d: first("activations")(d).update(amax=-1.0)
    yield "amax NaN", lambda d: first("activations")(d).update(amax=float("nan"))
    yield "weight amax not a list", lambda d: first("weights")(d).update(amax=3)
    yield "weight axis 9", lambda d: first("weights")(d).update(axis=9)
    yield "unknown top-level field", lambda d: d.update(surprise=1)
    yield "format from the future", lambda d: d.update(version=99)
    yield "activations a list", lambda d: d.update(activations=[1, 2])
    yield "model a string", lambda d: d.update(model="resnet")
    yield "calibrated for another model", lambda d: d["model"].update(sha256="f" * 64)
    odd = (None, 0, -3, "x", [], {}, 1e400, [None])
    keys = ("activations", "weights", "method", "percentile", "model", "data", "source", "created")
    for _ in range(count):
        key, value = rng.choice(keys), rng.choice(odd)
        yield f"{key} = {value!r}", lambda d, key=key, value=value: d.update({key: value})


def load_calibration_like_edgeres(folder: Path, checkpoint: Path) -> None:
    """What ``build --calib`` does with a folder before building: load and check it, write the Q/DQ form."""
    import tempfile

    from edgeres.quant.qdq import write_qdq_file
    from edgeres.quant.workflow import load_calibration

    result = load_calibration(folder, checkpoint)
    with tempfile.TemporaryDirectory() as d:
        write_qdq_file(result.fp32_onnx, result.scales, Path(d) / "check.qdq.onnx")


# ----------------------------------------------------------------------------------------------- annotations


def write_coco_seed(folder: Path, images: list[Path]) -> Path:
    """A small real COCO split: the given real images with one box each."""
    import cv2

    (folder / "images").mkdir(parents=True, exist_ok=True)
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "plate"}]}
    for i, src in enumerate(images, start=1):
        img = cv2.imread(str(src))
        name = f"{i:03d}.png"
        cv2.imwrite(str(folder / "images" / name), img)
        h, w = img.shape[:2]
        doc["images"].append({"id": i, "file_name": name, "width": w, "height": h})
        doc["annotations"].append(
            {
                "id": i,
                "image_id": i,
                "category_id": 1 + i % 2,
                "bbox": [2, 3, w // 2, h // 2],
                "area": w * h / 4,
                "iscrowd": 0,
            }
        )
    path = folder / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def coco_cases(rng: random.Random, count: int) -> Iterator[tuple[str, Callable[[dict], None]]]:
    odd = (None, -1, 0, "7", [], {}, 1e30, [1, 2], [-5, -5, 10, 10], [0, 0, 1e9, 1e9], float("nan"))
    yield "images not a list", lambda d: d.update(images={"1": 2})
    yield "box outside the image", lambda d: d["annotations"][0].update(bbox=[5000, 5000, 10, 10])
    yield "unknown category", lambda d: d["annotations"][0].update(category_id=99)
    yield "unknown image id", lambda d: d["annotations"][0].update(image_id=99)
    yield "image file missing", lambda d: d["images"][0].update(file_name="nope.png")
    yield "file_name ../../etc/passwd", lambda d: d["images"][0].update(file_name="../../etc/passwd")
    yield "declared size differs", lambda d: d["images"][0].update(width=4000, height=4000)
    for _ in range(count):
        where = rng.choice(("images", "annotations", "categories"))
        field_name = rng.choice(
            {
                "images": ("id", "file_name", "width", "height"),
                "annotations": ("id", "image_id", "category_id", "bbox", "iscrowd"),
                "categories": ("id", "name"),
            }[where]
        )
        value = rng.choice(odd)
        yield f"{where}[0].{field_name} = {value!r}", lambda d, w=where, f=field_name, v=value: d[w][0].update({f: v})


def write_yolo_seed(folder: Path, images: list[Path]) -> Path:
    """A small real YOLO folder: images/, labels/ (one box each), classes.txt."""
    import cv2

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(images):
        cv2.imwrite(str(folder / "images" / f"{i:03d}.png"), cv2.imread(str(src)))
        (folder / "labels" / f"{i:03d}.txt").write_text(f"{i % 2} 0.5 0.5 0.25 0.3\n")
    (folder / "classes.txt").write_text("cup\nplate\n")
    return folder


def yolo_label_lines(rng: random.Random) -> str:
    """A label file with hypothesis-style noise: wrong field counts, out-of-range values, text, NaN, huge ids."""
    tokens = ("0", "1", "2", "-1", "0.5", "1.5", "-0.2", "nan", "inf", "x", "1e999", "99999999999", "", "0x1")
    lines = []
    for _ in range(rng.randrange(1, 4)):
        lines.append(" ".join(rng.choice(tokens) for _ in range(rng.choice((1, 4, 5, 6, 9)))))
    return "\n".join(lines) + "\n"


def load_coco_like_edgeres(path: Path) -> None:
    from edgeres.data.coco import load_coco

    load_coco(path)


def load_yolo_like_edgeres(folder: Path) -> None:
    from edgeres.data.yolo import load_yolo

    load_yolo(folder)


# ----------------------------------------------------------------------------------------------- helpers


def copy_tree(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


# ----------------------------------------------------------------------------------------------- campaigns
# One generator per reader: seeds in ``root``, ``count`` random mutations plus every named case, one Outcome each.


def fuzz_images(root: Path, rng: random.Random, count: int) -> Iterator[Outcome]:
    seeds = write_image_seeds(root / "seeds")
    work = root / "cases"
    for case, path in image_special_cases(work):
        yield attempt("image", case, lambda p=path: read_image_like_edgeres(p), (path.name,), work)
    for name, path in seeds.items():
        yield attempt("image", f"{name} as written", lambda p=path: read_image_like_edgeres(p), (name,), root)
    data = {name: path.read_bytes() for name, path in seeds.items()}
    for i in range(count):
        name = rng.choice(sorted(data))
        label, mutated = mutate_bytes(data[name], rng)
        path = work / f"m{i}-{name}"
        path.write_bytes(mutated)
        yield attempt("image", f"{name}: {label}", lambda p=path: read_image_like_edgeres(p), (path.name,), work)
        path.unlink()


def fuzz_safetensors(root: Path, checkpoint: Path, rng: random.Random, count: int) -> Iterator[Outcome]:
    data = Path(checkpoint).read_bytes()
    work = root / "safetensors"
    work.mkdir(parents=True, exist_ok=True)
    named = list(safetensors_header_lies(data)) + list(safetensors_value_cases(Path(checkpoint)))
    for i, (label, mutated) in enumerate(named):
        path = work / f"n{i}.safetensors"
        path.write_bytes(mutated)
        yield attempt("safetensors", label, lambda p=path: read_checkpoint_like_edgeres(p), (path.name,), work)
        path.unlink()
    for i in range(count):
        label, mutated = mutate_bytes(data, rng)
        path = work / f"m{i}.safetensors"
        path.write_bytes(mutated)
        yield attempt("safetensors", label, lambda p=path: read_checkpoint_like_edgeres(p), (path.name,), work)
        path.unlink()


def fuzz_pth(root: Path, checkpoint: Path, rng: random.Random, count: int) -> Iterator[Outcome]:
    import torch
    from safetensors.torch import load_file

    state = load_file(str(checkpoint))
    work = root / "pth"
    work.mkdir(parents=True, exist_ok=True)
    pwned = Path("/tmp/edgeres-fuzz-pwned")
    pwned.unlink(missing_ok=True)
    for label, path in pth_special_cases(state, work):
        out = attempt("pth", label, lambda p=path: read_checkpoint_like_edgeres(p, "resnet18"), (path.name,), work)
        if pwned.exists():
            out = Outcome("pth", label, "problem", "the pickle's code ran")
        yield out
    seed = work / "seed.pth"
    torch.save(state, seed)
    data = seed.read_bytes()
    seed.unlink()
    for i in range(count):
        label, mutated = mutate_bytes(data, rng)
        path = work / f"m{i}.pth"
        path.write_bytes(mutated)
        yield attempt("pth", label, lambda p=path: read_checkpoint_like_edgeres(p, "resnet18"), (path.name,), work)
        path.unlink()


def fuzz_onnx(root: Path, model_file: Path, rng: random.Random, count: int) -> Iterator[Outcome]:
    work = root / "onnx"
    for label, path, _folder in onnx_external_cases(model_file, work):
        yield attempt("onnx", label, lambda p=path: read_onnx_like_edgeres(p), (str(path.parent.name), path.name), work)
    data = Path(model_file).read_bytes()
    for i in range(count):
        label, mutated = mutate_bytes(data, rng)
        path = work / f"m{i}.onnx"
        path.write_bytes(mutated)
        yield attempt("onnx", label, lambda p=path: read_onnx_like_edgeres(p), (path.name,), work)
        path.unlink()


def fuzz_manifests(root: Path, engine_dir: Path, rng: random.Random, count: int) -> Iterator[Outcome]:
    work = root / "engines"
    for i, (label, apply) in enumerate(manifest_cases(engine_dir, rng, count)):
        folder = copy_tree(engine_dir, work / f"e{i}")
        apply(folder)
        yield attempt("engine manifest", label, lambda f=folder: open_engine_like_edgeres(f), (folder.name,), folder)
        shutil.rmtree(folder)


def fuzz_calibration(
    root: Path, calib_dir: Path, checkpoint: Path, rng: random.Random, count: int
) -> Iterator[Outcome]:
    work = root / "calib"
    for i, (label, change) in enumerate(scales_cases(rng, count)):
        folder = copy_tree(calib_dir, work / f"c{i}")
        edit_json(folder / "scales.json", change)
        yield attempt(
            "calibration folder",
            label,
            lambda f=folder: load_calibration_like_edgeres(f, checkpoint),
            ("scales.json", folder.name),
            folder,
        )
        shutil.rmtree(folder)
    folder = copy_tree(calib_dir, work / "swapped")
    shutil.copyfile(folder / "model.qdq.onnx", folder / "model.fp32.onnx")
    yield attempt(
        "calibration folder",
        "model.fp32.onnx swapped for another file",
        lambda f=folder: load_calibration_like_edgeres(f, checkpoint),
        ("model.fp32.onnx", "swapped"),
        folder,
    )
    shutil.rmtree(folder)


def fuzz_annotations(root: Path, rng: random.Random, count: int) -> Iterator[Outcome]:
    seeds = write_image_seeds(root / "ann-seeds")
    images = [seeds["photo.jpg"], seeds["photo.png"], seeds["gray.png"]]
    coco_dir = root / "coco"
    seed = write_coco_seed(coco_dir, images)
    original = seed.read_text()
    yield attempt("COCO annotations", "as written", lambda: load_coco_like_edgeres(seed), (seed.name,), coco_dir)
    for label, change in coco_cases(rng, count):
        seed.write_text(original)
        edit_json(seed, change)
        yield attempt("COCO annotations", label, lambda: load_coco_like_edgeres(seed), (seed.name,), coco_dir)
    for _i in range(max(1, count // 2)):
        label, mutated = mutate_bytes(original.encode(), rng)
        seed.write_bytes(mutated)
        yield attempt("COCO annotations", label, lambda: load_coco_like_edgeres(seed), (seed.name,), coco_dir)
    yolo_dir = write_yolo_seed(root / "yolo", images)
    label_file = yolo_dir / "labels" / "000.txt"
    good = label_file.read_text()
    yield attempt("YOLO labels", "as written", lambda: load_yolo_like_edgeres(yolo_dir), ("yolo",), yolo_dir)
    for _ in range(count):
        text = yolo_label_lines(rng)
        label_file.write_text(text)
        yield attempt(
            "YOLO labels",
            f"000.txt = {text.strip()[:40]!r}",
            lambda: load_yolo_like_edgeres(yolo_dir),
            ("000.txt", "yolo"),
            yolo_dir,
        )
    label_file.write_bytes(b"\xff\xfe\x00garbage")
    yield attempt(
        "YOLO labels", "label file not UTF-8", lambda: load_yolo_like_edgeres(yolo_dir), ("000.txt",), yolo_dir
    )
    label_file.write_text(good)
    (yolo_dir / "classes.txt").write_text("")
    yield attempt(
        "YOLO labels", "classes.txt empty", lambda: load_yolo_like_edgeres(yolo_dir), ("classes.txt",), yolo_dir
    )
