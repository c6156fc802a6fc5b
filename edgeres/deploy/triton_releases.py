"""Which Triton Inference Server release serves a TensorRT plan.

A TensorRT plan runs only on the TensorRT version that built it (unless built version-compatible, then on
later versions of the same major) and on the GPU it was built for (unless hardware-compatible, then on any
Ampere or later GPU). Triton's TensorRT backend links one TensorRT per release, so the plan picks the release.

The table is NVIDIA's Frameworks Support Matrix for the Triton containers (x86-64 and the JetPack/iGPU builds
of the same release number), TensorRT major.minor -> releases. Releases newer than the table: look the
version up there; edgeres says so rather than guessing.
"""

from __future__ import annotations

from edgeres.backends.trt.versions import TrtVersion

RELEASES: dict[tuple[int, int], tuple[str, ...]] = {
    (8, 6): (
        "23.05",
        "23.06",
        "23.07",
        "23.08",
        "23.09",
        "23.10",
        "23.11",
        "23.12",
        "24.01",
        "24.02",
        "24.03",
        "24.04",
    ),
    (10, 0): ("24.05",),
    (10, 1): ("24.06",),
    (10, 2): ("24.07",),
    (10, 3): ("24.08",),
    (10, 4): ("24.09",),
    (10, 5): ("24.10",),
    (10, 6): ("24.11",),
    (10, 7): ("24.12",),
    (10, 8): ("25.01", "25.02"),
    (10, 9): ("25.03", "25.04"),
}
RELEASE_TRT = {release: key for key, releases in RELEASES.items() for release in releases}


def releases_for(trt_version: str) -> tuple[str, ...]:
    """The Triton releases whose TensorRT has this major.minor (empty when the table does not know it)."""
    v = TrtVersion.parse(trt_version)
    return RELEASES.get((v.major, v.minor), ())


def plan_release_problem(trt_version: str, version_compatible: bool, release: str | None) -> str | None:
    """A one-line warning when ``release`` cannot serve a plan built with ``trt_version`` (None when it can, or
    when no release was named and the table knows a matching one)."""
    v = TrtVersion.parse(trt_version)
    matching = releases_for(trt_version)
    use = (
        f"serve it with Triton {matching[0]}" + (f"-{matching[-1]}" if len(matching) > 1 else "")
        if matching
        else "look up the Triton release with this TensorRT in NVIDIA's Frameworks Support Matrix"
    )
    if release is None:
        return None if matching else f"the plan was built with TensorRT {trt_version}, not in edgeres's table: {use}"
    if release not in RELEASE_TRT:
        known = ", ".join(sorted(RELEASE_TRT))
        return f"Triton release '{release}' is not in edgeres's table ({known}); {use}"
    major, minor = RELEASE_TRT[release]
    if (major, minor) == (v.major, v.minor):
        return None
    if version_compatible and major == v.major and (major, minor) > (v.major, v.minor):
        return None  # a version-compatible plan runs on later TensorRT of the same major
    return (
        f"Triton {release} ships TensorRT {major}.{minor}, but the plan was built with TensorRT {trt_version} "
        f"and will not load there: {use}, or rebuild the engine with TensorRT {major}.{minor}"
    )
