"""`edgeres info`: the cpuinfo / L4T / nvidia-smi / OpenCV parsers on hand-written text, and the facts
this machine really reports."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from typer.testing import CliRunner

from edgeres.cli import info as info_cmd
from edgeres.device import cpu as device_cpu
from edgeres.device import facts as device_facts
from edgeres.device import gpu as device_gpu
from edgeres.device import jetson as device_jetson
from edgeres.device import packages as device_packages

HASWELL = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse \
sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 \
x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms invpcid
processor\t: 1
model name\t: Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw
"""

CASCADE_LAKE = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw \
avx512vl avx512_vnni
"""

ALDER_LAKE = """\
model name\t: 12th Gen Intel(R) Core(TM) i7-12700
flags\t\t: sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx_vnni
"""

SAPPHIRE_RAPIDS = """\
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: sse4_2 avx fma avx2 avx512f avx512bw avx_vnni avx512_vnni amx_bf16 amx_tile amx_int8
"""

JETSON_ORIN = """\
processor\t: 0
model name\t: ARMv8 Processor rev 1 (v8l)
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop \
asimddp uscat ilrcpc flagm paca pacg
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd42
CPU revision\t: 1
"""

RASPBERRY_PI_4 = """\
processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd08
Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

GRAVITON_3 = """\
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma \
lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm \
svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""

RASPBERRY_PI_3_32BIT = """\
model name\t: ARMv7 Processor rev 4 (v7l)
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
CPU implementer\t: 0x41
CPU part\t: 0xd03
"""


def test_x86_avx2_only():
    cpu = device_cpu.parse_cpuinfo(HASWELL, "x86_64")
    assert cpu["isa"] == "x86_64-avx2"
    assert cpu["model"] == "Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz"
    f = cpu["features"]
    assert f["sse4_2"] and f["avx"] and f["avx2"] and f["fma"]
    # The second core's (made-up) flags line must not leak into the answer: the first one counts.
    assert f["avx512f"] is False and f["avx512bw"] is False
    assert f["avx512_vnni"] is False and f["avx_vnni"] is False and f["amx"] is False


def test_x86_avx512_vnni():
    cpu = device_cpu.parse_cpuinfo(CASCADE_LAKE, "x86_64")
    assert cpu["isa"] == "x86_64-avx512-vnni"
    assert cpu["features"]["avx512_vnni"] is True
    assert cpu["features"]["avx_vnni"] is False
    assert cpu["features"]["amx"] is False


def test_x86_avx_vnni_without_avx512_and_amx():
    assert device_cpu.parse_cpuinfo(ALDER_LAKE, "x86_64")["isa"] == "x86_64-avx2-vnni"
    spr = device_cpu.parse_cpuinfo(SAPPHIRE_RAPIDS, "AMD64")
    assert spr["isa"] == "x86_64-avx512-vnni-amx"
    assert spr["features"]["amx"] is True


def test_aarch64_dotprod_jetson_orin():
    cpu = device_cpu.parse_cpuinfo(JETSON_ORIN, "aarch64")
    assert cpu["isa"] == "aarch64-neon-dotprod"
    assert cpu["model"] == "ARM Cortex-A78AE"
    assert cpu["features"] == {"asimd": True, "asimddp": True, "i8mm": False, "sve": False, "asimdhp": True}


def test_aarch64_without_dotprod_and_with_i8mm_sve():
    pi4 = device_cpu.parse_cpuinfo(RASPBERRY_PI_4, "aarch64")
    assert pi4["isa"] == "aarch64-neon"
    assert pi4["model"] == "ARM Cortex-A72"
    # "asimd" must be matched as a whole word, not as a prefix of "asimdhp"/"asimddp".
    assert pi4["features"]["asimddp"] is False and pi4["features"]["asimdhp"] is False
    grav = device_cpu.parse_cpuinfo(GRAVITON_3, "arm64")
    assert grav["isa"] == "aarch64-neon-dotprod-i8mm-sve"
    assert grav["model"] == "ARM Neoverse-V1"


def test_arm32_neon_and_unknown_cpuinfo():
    pi3 = device_cpu.parse_cpuinfo(RASPBERRY_PI_3_32BIT, "armv7l")
    assert pi3["isa"] == "armv7l-neon"
    assert pi3["features"]["asimd"] is True
    # No cpuinfo (macOS, Windows): features are unknown, not absent, and isa is the family alone.
    empty = device_cpu.parse_cpuinfo("", "x86_64")
    assert empty["isa"] == "x86_64"
    assert set(empty["features"].values()) == {None}
    assert empty["model"] is None
    assert device_cpu.parse_cpuinfo("", "riscv64")["isa"] == "riscv64"


def test_parse_tegra_release():
    r36 = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6\n"
    r32 = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19"
    assert device_jetson.parse_tegra_release(r36) == "36.3.0"
    assert device_jetson.parse_tegra_release(r32) == "32.7.1"
    assert device_jetson.parse_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178") == "35.4.1"
    assert device_jetson.parse_tegra_release("") is None
    assert device_jetson.parse_tegra_release("not a release file") is None


def test_parse_nvpmodel():
    assert device_jetson.parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert device_jetson.parse_nvpmodel("NV Fan Mode:quiet\nNV Power Mode: 15W\n2\n") == {"name": "15W", "id": 2}
    assert device_jetson.parse_nvpmodel("") == {"name": None, "id": None}


def test_parse_nvidia_smi():
    text = (
        "NVIDIA GeForce RTX 4090, 8.9, 550.54.14, 24564 MiB\n"
        "NVIDIA A100-SXM4-80GB, 8.0, 550.54.14, 81920 MiB\n"
    )
    gpus = device_gpu.parse_nvidia_smi(text)
    assert gpus == [
        {"name": "NVIDIA GeForce RTX 4090", "compute_cap": "8.9", "driver_version": "550.54.14",
         "memory_total_mib": 24564},
        {"name": "NVIDIA A100-SXM4-80GB", "compute_cap": "8.0", "driver_version": "550.54.14",
         "memory_total_mib": 81920},
    ]
    orin = device_gpu.parse_nvidia_smi("Orin (nvgpu), 8.7, 540.3.0, [N/A]\n")
    assert orin[0]["memory_total_mib"] is None and orin[0]["compute_cap"] == "8.7"
    assert device_gpu.parse_nvidia_smi("") == []


OPENCV_HEADLESS = """\
  GUI:                           NONE
    VTK support:                 NO

  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (62.28.101)
    GStreamer:                   NO
"""

# Before OpenCV 4.6 "GUI:" was a heading; JetPack's build has GTK and GStreamer but no FFmpeg.
OPENCV_JETPACK = """\
  GUI:
    GTK+:                        YES (ver 2.24.32)
      GThread :                  YES (ver 2.64.6)
      GtkGlExt:                  NO
    VTK support:                 NO

  Video I/O:
    FFMPEG:                      NO
    GStreamer:                   YES (1.16.3)
"""

OPENCV_OLD_HEADLESS = """\
  GUI:
    VTK support:                 YES

  Media I/O:
    ZLib:                        YES
"""


def test_parse_opencv_build():
    assert device_packages.parse_opencv_build(OPENCV_HEADLESS) == {"ffmpeg": True, "gstreamer": False, "gui": False}
    assert device_packages.parse_opencv_build(OPENCV_JETPACK) == {"ffmpeg": False, "gstreamer": True, "gui": True}
    assert device_packages.parse_opencv_build(OPENCV_OLD_HEADLESS)["gui"] is False
    assert device_packages.parse_opencv_build("  GUI:                           GTK3\n")["gui"] is True


def _family(machine: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())


def test_collect_on_this_machine():
    facts = device_facts.collect()
    assert set(facts) == {"os", "hostname", "cpu", "cpu_int8", "packages", "gpus", "cuda", "jetson"}
    assert json.loads(json.dumps(facts)) == facts
    cpu = facts["cpu"]
    assert cpu["arch"] == platform.machine()
    assert cpu["isa"] and cpu["isa"].split("-")[0] == _family(platform.machine())
    assert cpu["logical_cores"] >= 1
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        # The features are what the kernel reports, read from the real file.
        line = next(ln for ln in cpuinfo.read_text().splitlines() if re.match(r"(flags|Features)\s*:", ln))
        flags = set(line.split(":", 1)[1].split())
        for name in ("avx2", "avx512f", "asimd", "asimddp"):
            if name in cpu["features"]:
                assert cpu["features"][name] == (name in flags)
    assert (facts["jetson"] is None) == (not Path("/etc/nv_tegra_release").exists())
    assert facts["packages"]["python"] == platform.python_version()


def test_missing_and_broken_packages_are_reported_not_raised(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail as absent
    monkeypatch.setitem(sys.modules, "cv2", None)
    broken = tmp_path / "tensorrt"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "raise OSError('libnvinfer.so.10: cannot open shared object file')\n"
    )
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    pkgs = device_packages.package_versions()
    assert pkgs["onnxruntime"] is None and pkgs["onnxruntime_providers"] is None
    assert pkgs["opencv"] is None and pkgs["opencv_ffmpeg"] is None
    assert pkgs["tensorrt"] is None
    assert "onnxruntime" not in pkgs["import_errors"] and "cv2" not in pkgs["import_errors"]
    assert "libnvinfer.so.10" in pkgs["import_errors"]["tensorrt"]


def test_heavy_packages_not_imported_by_the_command_module():
    code = (
        "import sys, edgeres.device.facts, edgeres.cli.info; "
        "print(sorted(m for m in ('tensorrt', 'torch', 'cv2', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_render_jetson_and_gpu_without_memory():
    facts = device_facts.collect()
    facts["gpus"] = [{"name": "Orin (nvgpu)", "compute_cap": "8.7", "driver_version": "540.3.0",
                      "memory_total_mib": None}]
    facts["jetson"] = {"l4t": "36.3.0", "model": "NVIDIA Jetson AGX Orin Developer Kit",
                       "power_mode": {"name": "MAXN", "id": 0}}
    facts["packages"]["tensorrt"] = None
    console = Console(record=True, width=200)
    for table in info_cmd.render(facts):
        console.print(table)
    text = console.export_text()
    assert "Orin (nvgpu), compute 8.7, memory unknown, driver 540.3.0" in text
    assert "36.3.0" in text and "MAXN (id 0)" in text
    assert re.search(r"tensorrt\s+not installed", text)


def test_human_output_names_the_isa():
    app = typer.Typer()
    app.command()(info_cmd.info)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    for section in ("System", "CPU", "CPU INT8", "Packages", "GPU", "Jetson"):
        assert section in result.output
    assert device_cpu.cpu_facts()["isa"] in result.output


def test_info_says_which_int8_engine_auto_builds_and_what_each_guarantees_here():
    """The CPU INT8 section: how this CPU sums int8 products, the engine ``build --backend auto`` makes of an INT8
    classifier and why, and each CPU engine's guarantee on this CPU (the same words the build prints)."""
    from edgeres.backends.cpu_int8 import cpu_int8_summary, guarantee, int8_cpu_target, kernel_facts

    cpu = device_cpu.cpu_facts()
    summary = device_facts.collect()["cpu_int8"]
    assert summary == json.loads(json.dumps(cpu_int8_summary(cpu)))
    console = Console(record=True, width=400)
    for table in info_cmd.render(device_facts.collect()):
        console.print(table)
    text = console.export_text()
    assert re.search(rf"auto INT8 engine\s+{summary['auto_backend']} \(INT8 on {re.escape(cpu['isa'])}", text)
    for name in summary["guarantees"]:
        target, _ = int8_cpu_target("auto", name, cpu)  # the form auto builds here: the stem split where needed
        promise = guarantee(name, kernel_facts(name, cpu), saturation_free=target == "portable", int8_cpu=target)
        assert re.search(rf"{name} guarantee\s+{promise['level']}: {re.escape(promise['why'])}", text)


def test_info_json_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "edgeres.cli.main", "info", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)  # the whole of stdout is one JSON object
    assert facts["cpu"]["arch"] == platform.machine()
    pkgs = facts["packages"]
    try:
        import onnxruntime
    except ImportError:
        assert pkgs["onnxruntime_providers"] is None
    else:
        assert pkgs["onnxruntime_providers"] == onnxruntime.get_available_providers()
        assert "CPUExecutionProvider" in pkgs["onnxruntime_providers"]
    try:
        import cv2
    except ImportError:
        assert pkgs["opencv_ffmpeg"] is None
    else:
        assert pkgs["opencv_ffmpeg"] is bool(re.search(r"FFMPEG:\s+YES", cv2.getBuildInformation()))
