"""Engine manifests and the resolver: round trip, one engine from file/manifest/folder, every mismatch explained."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from engine_helpers import copy_engine, engine_files, link_engine

from edgeres.engine import EngineMismatchError, check_engine, open_engine, resolve
from edgeres.errors import EdgeresError
from edgeres.manifest import read_manifest

pytest_plugins = ["fixtures_models"]

OTHER_ISA = "aarch64-neon-dotprod"


@pytest.fixture(scope="module")
def here() -> dict:
    """This machine's facts as check_engine measures them (tests change one fact at a time)."""
    from edgeres.engine import current_facts

    return current_facts("onnxruntime")


def _manifest(folder) -> dict:
    return read_manifest(engine_files(folder)[1])


def test_manifest_round_trip(trained_engine, trained_checkpoint):
    import onnxruntime as ort

    from edgeres.device.cpu import cpu_facts
    from edgeres.manifest import SCHEMA_VERSION
    from edgeres.models.checkpoint import file_sha256, load_checkpoint
    from edgeres.onnx_model.export import DEFAULT_TOLERANCE

    engine_file, manifest_file = engine_files(trained_engine)
    assert sorted(p.name for p in trained_engine.iterdir()) == ["digits-fp32.manifest.json", "digits-fp32.onnx"]
    m = read_manifest(manifest_file)
    assert m["schema_version"] == SCHEMA_VERSION
    assert m["engine"] == {"file": "digits-fp32.onnx", "sha256": file_sha256(engine_file),
                           "size": engine_file.stat().st_size}
    assert m["source"] == {"checkpoint": str(trained_checkpoint.resolve()), "sha256": file_sha256(trained_checkpoint)}
    assert m["backend"]["name"] == "onnxruntime" and m["backend"]["version"] == ort.__version__
    assert m["device"]["cpu_isa"] == cpu_facts()["isa"]
    assert m["export"]["exporter"] == "torchscript" and m["export"]["opset"] == 17
    assert 0 <= m["export"]["max_abs_diff"] <= m["export"]["tolerance"] == DEFAULT_TOLERANCE
    assert m["input"] == {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "max_batch": 32}
    assert m["outputs"] == ["logits"] and m["precision"] == "fp32"

    # What the checkpoint says the model is comes back unchanged through the manifest.
    engine = open_engine(trained_engine)
    assert engine.model_config == load_checkpoint(trained_checkpoint).config
    assert engine.task == "classify" and engine.class_names == [str(i) for i in range(10)]
    assert engine.name == "digits-fp32" and engine.engine_file == engine_file


def test_one_resolver_for_file_manifest_and_folder(trained_engine, monkeypatch):
    from edgeres.data.samples import reference_images
    from edgeres.processing import preprocess

    engine_file, manifest_file = engine_files(trained_engine)
    expected = (engine_file, manifest_file)
    assert resolve(trained_engine) == expected
    assert resolve(engine_file) == expected
    assert resolve(manifest_file) == expected
    monkeypatch.chdir(trained_engine.parent)
    rel = resolve(trained_engine.name)  # a relative folder name, as users type it
    assert (rel[0].resolve(), rel[1].resolve()) == expected

    batch = None
    outputs = []
    for target in (trained_engine, engine_file, manifest_file):
        with open_engine(target, threads=1) as engine:
            batch = preprocess(reference_images(n_digits=3, photos=("rocket",)), engine.preprocess)
            outputs.append(engine.runner.infer(batch)["logits"])
    assert outputs[0].shape == (len(batch), 10)
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])


def test_engine_fits_the_machine_it_was_built_on(trained_engine, cli_engine, here):
    for folder in (trained_engine, cli_engine):
        engine_file, _ = engine_files(folder)
        assert check_engine(engine_file, _manifest(folder)) == []
        assert check_engine(engine_file, _manifest(folder), current=dict(here)) == []


def _set(d: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        d = d.setdefault(key, {})
    d[last] = value


# (manifest changes, facts changes, fragments the one problem must contain)
MISMATCHES = {
    "backend version": ({}, {"backend_version": "1.16.3"}, ["built with onnxruntime {version}", "has 1.16.3"]),
    "backend missing": ({}, {"backend_version": None}, ["built with onnxruntime {version}", "none installed"]),
    "isa": ({"backend.isa_bound": True}, {"cpu_isa": OTHER_ISA},
            ["optimized for CPU ISA {isa}", f"this CPU is {OTHER_ISA}"]),
    "gpu": ({"device.gpu": "Orin", "device.compute_capability": "8.7"},
            {"gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"},
            ["built for GPU Orin (sm 8.7)", "this machine has NVIDIA GeForce RTX 4090 (sm 8.9)"]),
    "no gpu here": ({"device.gpu": "Orin", "device.compute_capability": "8.7"}, {"gpu": None},
                    ["built for GPU Orin (sm 8.7)", "has no GPU"]),
    "same gpu name, other sm": ({"device.gpu": "Orin", "device.compute_capability": "8.7"},
                                {"gpu": "Orin", "compute_capability": "7.2"}, ["(sm 8.7)", "(sm 7.2)"]),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_each_mismatch_is_named(case, trained_engine, here, tmp_path):
    manifest_changes, fact_changes, fragments = MISMATCHES[case]
    engine_file, _ = engine_files(trained_engine)
    manifest = _manifest(trained_engine)
    for key, value in manifest_changes.items():
        _set(manifest, key, value)
    facts = {**here, **fact_changes}
    problems = check_engine(engine_file, manifest, current=facts)
    assert len(problems) == 1, problems
    for fragment in fragments:
        fragment = fragment.format(version=manifest["backend"]["version"], isa=manifest["device"]["cpu_isa"])
        assert fragment in problems[0], problems

    # open_engine refuses it before any session exists, and says how to rebuild
    folder = link_engine(trained_engine, tmp_path / "engine")
    engine_files(folder)[1].write_text(json.dumps(manifest))
    with pytest.raises(EngineMismatchError) as info:
        open_engine(folder, current=facts)
    assert problems[0] in str(info.value)
    assert str(info.value).startswith(f"cannot use engine {engine_files(folder)[0]}: ")
    assert str(info.value).endswith("rebuild it with 'edgeres build'")  # library build: no recorded command


def test_portable_engine_ignores_the_isa(trained_engine, cli_engine, here):
    """--opt-level extended (the default) is portable; --opt-level all is bound to the ISA it was built on."""
    other_cpu = {**here, "cpu_isa": OTHER_ISA}
    portable = _manifest(trained_engine)
    assert portable["backend"]["isa_bound"] is False
    assert check_engine(engine_files(trained_engine)[0], portable, current=other_cpu) == []
    bound = _manifest(cli_engine)
    assert bound["backend"]["isa_bound"] is True and bound["backend"]["saved_opt_level"] == "all"
    problems = check_engine(engine_files(cli_engine)[0], bound, current=other_cpu)
    assert problems == [f"optimized for CPU ISA {bound['device']['cpu_isa']}, this CPU is {OTHER_ISA}"]
    with pytest.raises(EngineMismatchError) as info:
        open_engine(cli_engine, current=other_cpu)
    assert str(info.value).endswith("rebuild it with: " + bound["build_command"])
    assert bound["build_command"].startswith("edgeres build --model ")


def test_every_problem_is_listed_at_once(trained_engine, here):
    manifest = _manifest(trained_engine)
    manifest["backend"]["isa_bound"] = True
    problems = check_engine(engine_files(trained_engine)[0], manifest,
                            current={**here, "cpu_isa": OTHER_ISA, "backend_version": "9.9"})
    assert len(problems) == 2
    assert "built with onnxruntime" in problems[0] and "optimized for CPU ISA" in problems[1]


def test_changed_bytes_stale_checkpoint_and_missing_file(trained_engine, trained_checkpoint, here, tmp_path):
    from edgeres.models.checkpoint import load_checkpoint, save_checkpoint

    folder = copy_engine(trained_engine, tmp_path / "engine")
    engine_file, manifest_file = engine_files(folder)
    manifest = read_manifest(manifest_file)

    # The checkpoint the engine was built from is retrained afterwards: the engine is stale.
    ckpt = tmp_path / "model.safetensors"
    shutil.copy(trained_checkpoint, ckpt)
    manifest["source"]["checkpoint"] = str(ckpt)
    assert check_engine(engine_file, manifest, current=here) == []
    loaded = load_checkpoint(ckpt)
    model = loaded.build_model()
    model.fc.bias.data += 0.5
    save_checkpoint(ckpt, model, loaded.config)
    assert check_engine(engine_file, manifest, current=here) == [
        f"stale: the checkpoint {ckpt} changed after this engine was built"]
    ckpt.unlink()  # a deployed engine travels without its checkpoint: that alone is not a problem
    assert check_engine(engine_file, manifest, current=here) == []

    # Bytes changed after the build (same size too): the hash catches it before anything parses the file.
    data = bytearray(engine_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine_file.write_bytes(bytes(data))
    problems = check_engine(engine_file, manifest, current=here)
    assert len(problems) == 1 and "bytes do not match its manifest" in problems[0]
    assert "modified or replaced after the build" in problems[0]
    engine_file.write_bytes(b"not an onnx file")
    with pytest.raises(EngineMismatchError, match=r"bytes do not match its manifest .size 16 vs"):
        open_engine(folder)

    engine_file.unlink()
    assert check_engine(engine_file, manifest, current=here) == [f"engine file {engine_file} is missing"]


@pytest.mark.parametrize("case, message", [
    ("newer schema", "uses manifest schema 2, newer than this edgeres reads (1); upgrade edgeres"),
    ("not json", "cannot read engine manifest"),
    ("no schema", "is not an edgeres engine manifest (no schema_version)"),
    ("missing fields", "is missing manifest fields: arch, backend"),
    ("path in file name", "engine file name '../digits-fp32.onnx' must be a plain file name beside the manifest"),
])
def test_bad_manifests_are_refused(case, message, trained_engine, tmp_path):
    folder = copy_engine(trained_engine, tmp_path / "engine")
    _, manifest_file = engine_files(folder)
    m = json.loads(manifest_file.read_text())
    if case == "newer schema":
        m["schema_version"] = 2
    elif case == "no schema":
        del m["schema_version"]
    elif case == "missing fields":
        del m["arch"], m["backend"]
    elif case == "path in file name":
        m["engine"]["file"] = "../digits-fp32.onnx"
    manifest_file.write_text("{ not json" if case == "not json" else json.dumps(m))
    for call in (lambda: read_manifest(manifest_file), lambda: resolve(folder), lambda: open_engine(folder)):
        with pytest.raises(EdgeresError) as info:
            call()
        assert message in str(info.value)


def test_resolver_explains_what_is_missing(trained_engine, tmp_path):
    engine_file, manifest_file = engine_files(trained_engine)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgeresError, match=r"must hold exactly one \*\.manifest\.json engine manifest \(found: none\)"):
        resolve(empty)
    twice = copy_engine(trained_engine, tmp_path / "twice")
    shutil.copy(manifest_file, twice / "other.manifest.json")
    with pytest.raises(EdgeresError, match=r"\(found: digits-fp32\.manifest\.json, other\.manifest\.json\)"):
        resolve(twice)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(engine_file, bare / engine_file.name)
    with pytest.raises(EdgeresError, match=r"has no manifest .digits-fp32.manifest.json is missing.*edgeres build"):
        resolve(bare / engine_file.name)
    with pytest.raises(EdgeresError, match=r"engine not found: .*give an engine file, its manifest or its folder"):
        resolve(tmp_path / "nowhere")
    with pytest.raises(EdgeresError, match="engine manifest not found"):
        resolve(tmp_path / "nowhere.manifest.json")
