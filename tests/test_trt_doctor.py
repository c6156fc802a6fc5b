"""``edgeres doctor``: verdicts from hand-written facts, clock detection on a fake sysfs, engine judgement, CLI."""

from __future__ import annotations

import json

from fixtures_trt import ORIN_10_3, engine_folder
from helpers import run_cli

from edgeres.device.doctor import collect, judge, judge_engine, read_clocks

PKGS = {"python": "3.10.12", "tensorrt": "10.3.0", "import_errors": {}, "opencv_gstreamer": True}
ORIN_CUDA = {
    "binding": "cuda-python",
    "device": {"count": 1, "name": "Orin", "compute_capability": "8.7"},
    "error": None,
}
JETSON = {"l4t": "36.4.0", "model": "NVIDIA Jetson AGX Orin Developer Kit", "power_mode": {"name": "MAXN", "id": 0}}


def verdicts(checks) -> dict[str, str]:
    return {c.name: c.verdict for c in checks}


def test_a_well_set_up_orin():
    facts = {
        "packages": PKGS,
        "gpus": [],
        "cuda": ORIN_CUDA,
        "jetson": JETSON,
        "clocks_locked": True,
        "cameras": ["/dev/video0"],
        "camera_access": {"/dev/video0": True},
        "nvargus": True,
    }
    assert verdicts(judge(facts)) == {
        "python": "ok",
        "tensorrt": "ok",
        "cuda": "ok",
        "dla": "ok",
        "jetson": "ok",
        "power mode": "ok",
        "clocks": "ok",
        "camera": "ok",
        "csi camera": "ok",
    }


def test_an_orin_set_up_for_misleading_benchmarks():
    facts = {
        "packages": PKGS | {"opencv_gstreamer": False},
        "gpus": [],
        "cuda": ORIN_CUDA,
        "jetson": JETSON | {"power_mode": {"name": "15W", "id": 1}},
        "clocks_locked": False,
        "cameras": ["/dev/video0"],
        "camera_access": {"/dev/video0": False},
        "nvargus": True,
    }
    checks = {c.name: c for c in judge(facts)}
    assert checks["power mode"].verdict == "warn" and "nvpmodel -m 0" in checks["power mode"].fix
    assert checks["clocks"].verdict == "warn" and "jetson_clocks" in checks["clocks"].fix
    assert checks["camera"].verdict == "warn" and "video" in checks["camera"].fix
    assert checks["csi camera"].verdict == "warn"


def test_old_jetpack_and_broken_tensorrt_fail():
    facts = {
        "packages": PKGS | {"tensorrt": None, "import_errors": {"tensorrt": "OSError: libnvinfer.so.8"}},
        "gpus": [],
        "cuda": {"binding": None, "device": None, "error": "not installed"},
        "jetson": JETSON | {"l4t": "35.4.1"},
        "clocks_locked": None,
        "cameras": [],
    }
    v = verdicts(judge(facts))
    assert v["tensorrt"] == "fail" and v["cuda"] == "fail" and v["jetpack"] == "fail" and v["clocks"] == "warn"


def test_cpu_box_is_not_a_failure():
    facts = {
        "packages": PKGS | {"tensorrt": None},
        "gpus": [],
        "cuda": {"binding": None, "device": None, "error": "x"},
        "jetson": None,
        "cameras": [],
    }
    assert "fail" not in verdicts(judge(facts)).values()


def test_int8_without_fast_int8_and_unsupported_tensorrt():
    cuda = ORIN_CUDA | {"device": {"count": 1, "name": "Tesla V100", "compute_capability": "7.0"}}
    facts = {
        "packages": PKGS | {"tensorrt": "9.3.0"},
        "gpus": [{"name": "Tesla V100"}],
        "cuda": cuda,
        "jetson": None,
        "cameras": [],
    }
    v = verdicts(judge(facts))
    assert v["int8 speed"] == "warn" and v["tensorrt"] == "fail"


def test_clock_lock_from_sysfs(tmp_path):
    def write(folder, lo, hi, names):
        folder.mkdir(parents=True)
        (folder / names[0]).write_text(f"{lo}\n")
        (folder / names[1]).write_text(f"{hi}\n")

    cpu = ("scaling_min_freq", "scaling_max_freq")
    for i in range(2):
        write(tmp_path / f"sys/devices/system/cpu/cpu{i}/cpufreq", 2201600, 2201600, cpu)
    write(tmp_path / "sys/class/devfreq/17000000.gpu", 1300500000, 1300500000, ("min_freq", "max_freq"))
    assert read_clocks(tmp_path) is True
    (tmp_path / "sys/class/devfreq/17000000.gpu/min_freq").write_text("306000000\n")
    assert read_clocks(tmp_path) is False
    assert read_clocks(tmp_path / "nothing") is None


def test_judge_engine(tmp_path):
    folder = engine_folder(tmp_path)
    assert verdicts(judge_engine(folder, ORIN_10_3))["engine fits"] == "ok"
    fails = [c for c in judge_engine(folder, ORIN_10_3 | {"backend_version": "10.7.0"}) if c.verdict == "fail"]
    assert len(fails) == 1 and "10.7.0" in fails[0].detail and "edgeres build" in fails[0].fix
    assert verdicts(judge_engine(tmp_path / "missing"))["engine"] == "fail"


def test_collect_runs_here():
    facts = collect()
    assert facts["packages"]["python"] and "cuda" in facts and isinstance(facts["cameras"], list)


def test_cli_doctor(tmp_path):
    proc = run_cli("doctor", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    checks = json.loads(proc.stdout)
    assert {"python", "tensorrt", "cuda"} <= {c["name"] for c in checks}
    assert (proc.returncode == 1) == any(c["verdict"] == "fail" for c in checks)
    folder = engine_folder(tmp_path)
    (folder / "r18-trt.plan").write_bytes(b"tampered")
    proc = run_cli("doctor", "--engine", folder)
    assert proc.returncode == 1 and "FAIL" in proc.stdout and "do not match" in proc.stdout


def test_dla_line_on_a_jetson_follows_the_tensorrt_version():
    base = {"gpus": [], "cuda": ORIN_CUDA, "jetson": JETSON, "clocks_locked": True, "cameras": []}
    checks = {c.name: c for c in judge(base | {"packages": PKGS})}
    assert checks["dla"].verdict == "ok" and "one fixed batch" in checks["dla"].detail
    assert "--int8-from cache" in checks["dla"].detail
    checks = {c.name: c for c in judge(base | {"packages": PKGS | {"tensorrt": "10.16.1"}})}
    assert checks["dla"].verdict == "info" and "10.7 was the last 10.x release with DLA" in checks["dla"].detail
    assert "dla" not in verdicts(judge(base | {"packages": PKGS, "jetson": None}))


def test_cuda_python_of_another_cuda_major_than_tensorrt_fails():
    facts = {
        "packages": PKGS,
        "gpus": [{"name": "NVIDIA A10"}],
        "cuda": ORIN_CUDA,
        "jetson": None,
        "cameras": [],
        "cuda_majors": {"tensorrt": 12, "cuda_python": 13},
    }
    check = {c.name: c for c in judge(facts)}["cuda majors"]
    assert check.verdict == "fail" and "CUDA 12, cuda-python for CUDA 13" in check.detail
    assert "cuda-python>=12,<13" in check.fix
    same = facts | {"cuda_majors": {"tensorrt": 12, "cuda_python": 12}}
    assert "cuda majors" not in verdicts(judge(same))
