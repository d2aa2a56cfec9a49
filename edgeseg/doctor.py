"""`edgeseg doctor`: what this machine can run, and what to install for the rest.

The first command to run on a new robot or workstation. Each check looks at one piece (Python
and packages, ONNX Runtime's providers, TensorRT, the CUDA host bindings and GPUs, OpenCV's
video back-ends, cameras, the CPU's INT8 instructions) and says what it found, in one row with
a status: "ok", "warn" (works, but not as well as it could) or "missing" (with the install
line). Nothing here fails: a missing piece is a finding, not an error.

Every probe of the machine is a field of `Probes`, so tests can simulate a Jetson, a machine
without TensorRT or a CPU without VNNI by passing other functions. Heavy modules (ONNX Runtime,
TensorRT, CUDA bindings, OpenCV) are imported only by the probes that report on them;
TensorFlow is never imported (its version comes from the package metadata).
"""

from __future__ import annotations

import glob
import importlib
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import edgeseg
from edgeseg.runtime.cuda_buffers import CUDA_INSTALL_HINT

# (what it is for, the distributions that provide it: the first one installed is reported)
PACKAGES = {
    "numpy": ("runtime", ("numpy",)),
    "opencv": ("runtime: cameras, video, drawing", ("opencv-python-headless", "opencv-python",
                                                     "opencv-contrib-python", "opencv-contrib-python-headless")),
    "pillow": ("runtime: image files", ("pillow",)),
    "onnxruntime": ("runtime: ONNX models on CPU/GPU", ("onnxruntime", "onnxruntime-gpu")),
    "onnx": ("export, calibration, engine building", ("onnx",)),
    "tensorflow": ("training, export", ("tensorflow", "tensorflow-cpu")),
    "tf2onnx": ("export", ("tf2onnx",)),
    "onnxconverter-common": ("FP16 engines on TensorRT 11", ("onnxconverter-common",)),
    "tensorrt": ("GPU engines", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-bindings",
                                 "tensorrt-cu12-bindings", "tensorrt-cu13-bindings")),
    "cuda-python": ("CUDA host memory for TensorRT", ("cuda-python", "cuda-bindings")),
    "pycuda": ("CUDA host memory for TensorRT (older JetPacks)", ("pycuda",)),
}
TENSORRT_INSTALL = (
    "JetPack 5/6: TensorRT ships with JetPack (sudo apt install python3-libnvinfer); make the virtualenv "
    "with --system-site-packages to see it. Desktop: pip install tensorrt (or 'edgeseg[tensorrt]')"
)
OPENCV_GSTREAMER_HINT = (
    "pip's opencv-python wheels have no GStreamer, so csi:// cameras and gst: pipelines cannot open; "
    "on a Jetson use JetPack's OpenCV (pip uninstall opencv-python opencv-python-headless; "
    "sudo apt install python3-opencv; virtualenv with --system-site-packages)"
)
# L4T major release -> JetPack (TensorRT): what a Jetson should have
JETPACK_OF_L4T = {35: "JetPack 5.1 (TensorRT 8.5)", 36: "JetPack 6 (TensorRT 8.6 on 6.0, 10.3 on 6.1+)"}
INT8_SLOW = "without it ONNX Runtime's INT8 is often slower than FP32 on this CPU: prefer FP32 here, or INT8 on a GPU"


@dataclass(frozen=True)
class Check:
    """One finding.

    Attributes:
        area: what was checked ("python", "package", "onnxruntime", "tensorrt", "cuda", "opencv", "camera", "cpu").
        name: the piece ("numpy", "GPU 0", "INT8 instructions", ...).
        status: "ok", "warn", "missing" or "info".
        detail: what was found.
        hint: what to do about it ("" when nothing).
    """

    area: str
    name: str
    status: str
    detail: str
    hint: str = ""


def _package_version(names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        try:
            return name, version(name)
        except PackageNotFoundError:
            continue
    return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _video_devices() -> list[tuple[str, str]]:
    """(device, name) of each V4L2 device (/dev/videoN, name from sysfs)."""
    found = []
    for device in sorted(glob.glob("/dev/video*")):
        name = _read_text(f"/sys/class/video4linux/{Path(device).name}/name")
        found.append((device, (name or "").strip()))
    return found


def _system_modules(name: str) -> list[str]:
    """Where the system Python (apt, JetPack) has module `name` that this Python cannot see."""
    found = glob.glob(f"/usr/lib/python3*/dist-packages/{name}") + glob.glob(f"/usr/local/lib/python3*/dist-packages/{name}")
    return [path for path in sorted(found) if str(Path(path).parent) not in sys.path]


def _driver_gpus() -> list[str]:
    """GPU models the NVIDIA driver lists (/proc/driver/nvidia/gpus; desktops), without CUDA bindings."""
    found = []
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        match = re.search(r"^Model:\s*(.+)$", _read_text(info) or "", flags=re.M)
        found.append(match.group(1).strip() if match else Path(info).parent.name)
    return found


def _cuda_api() -> Any:
    from edgeseg.runtime.cuda_buffers import load_cuda_api

    return load_cuda_api()


def _opencv_build() -> tuple[str, str]:
    import cv2

    return cv2.__version__, cv2.getBuildInformation()


@dataclass(frozen=True)
class Probes:
    """How the doctor looks at the machine; tests pass their own functions.

    Attributes:
        package_version: distribution names -> (the installed one, its version), or None.
        import_module: imports a module by name (raises ImportError when it cannot).
        read_text: a file's text, or None (/proc/cpuinfo, /etc/nv_tegra_release).
        video_devices: the V4L2 devices as (path, name).
        cuda_api: the CUDA bindings (`edgeseg.runtime.cuda_buffers.CudaApi`); raises EdgesegError without them.
        driver_gpus: GPU models the NVIDIA driver lists, for when there are no CUDA bindings to ask.
        system_modules: where the system Python has a module this one does not see (a virtualenv
            made without --system-site-packages on a Jetson).
        opencv_build: (cv2 version, cv2.getBuildInformation()); raises ImportError without OpenCV.
        machine: "x86_64", "aarch64", ...
    """

    package_version: Callable[[tuple[str, ...]], tuple[str, str] | None] = _package_version
    import_module: Callable[[str], Any] = importlib.import_module
    read_text: Callable[[str], str | None] = _read_text
    video_devices: Callable[[], list[tuple[str, str]]] = _video_devices
    cuda_api: Callable[[], Any] = _cuda_api
    driver_gpus: Callable[[], list[str]] = _driver_gpus
    system_modules: Callable[[str], list[str]] = _system_modules
    opencv_build: Callable[[], tuple[str, str]] = _opencv_build
    machine: Callable[[], str] = platform.machine


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.checks.append(Check(*args, **kwargs))

    def find(self, area: str, name: str) -> Check | None:
        return next((c for c in self.checks if c.area == area and c.name == name), None)

    def to_dict(self) -> dict:
        return {"edgeseg": edgeseg.__version__, "checks": [asdict(c) for c in self.checks]}

    def table(self) -> str:
        rows = [("area", "check", "status", "found")] + [(c.area, c.name, c.status, c.detail) for c in self.checks]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
        hints = [f"- {c.name}: {c.hint}" for c in self.checks if c.hint]
        return "\n".join(lines + (["", "what to do:"] + hints if hints else []))


# --- the checks -------------------------------------------------------------------------------


def check_python(report: Report, probes: Probes) -> None:
    machine = probes.machine()
    report.add("python", "python", "ok", f"{platform.python_version()} on {machine} ({sys.executable})")
    report.add("python", "edgeseg", "ok", f"{edgeseg.__version__} ({Path(edgeseg.__file__).parent})")
    release = probes.read_text("/etc/nv_tegra_release")
    if release:
        text = release.splitlines()[0].strip("# ").strip()
        match = re.match(r"R(\d+)", text)
        jetpack = JETPACK_OF_L4T.get(int(match.group(1))) if match else None
        report.add("python", "Jetson", "info", text + (f": {jetpack}" if jetpack else ""))


def check_packages(report: Report, probes: Probes) -> None:
    for name, (purpose, distributions) in PACKAGES.items():
        found = probes.package_version(distributions)
        if found:
            dist, ver = found
            report.add("package", name, "ok", f"{ver}" + (f" ({dist})" if dist != name else ""))
        else:
            status = "missing" if purpose.startswith("runtime") else "info"
            report.add("package", name, status, f"not installed (needed for {purpose})",
                       f"pip install {distributions[0]}" if status == "missing" else "")


def check_onnxruntime(report: Report, probes: Probes) -> None:
    try:
        ort = probes.import_module("onnxruntime")
    except ImportError as err:
        report.add("onnxruntime", "providers", "missing", f"ONNX Runtime does not import ({err})",
                   "pip install onnxruntime (onnxruntime-gpu for CUDA; on a Jetson the Jetson Zoo wheel)")
        return
    providers = list(ort.get_available_providers())
    gpu = [p for p in providers if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    report.add("onnxruntime", "providers", "ok", f"{ort.__version__}: {', '.join(providers)}"
               + ("" if gpu else " (CPU only)"))


def check_tensorrt(report: Report, probes: Probes) -> None:
    try:
        trt = probes.import_module("tensorrt")
    except ImportError as err:
        hidden = probes.system_modules("tensorrt")
        if hidden:
            report.add("tensorrt", "TensorRT", "missing", f"installed at {hidden[0]}, but this Python does not see it",
                       f"recreate the virtualenv with --system-site-packages ({sys.prefix})")
        else:
            report.add("tensorrt", "TensorRT", "missing", f"not importable ({err}); GPU engines cannot be built here",
                       TENSORRT_INSTALL)
        return
    from edgeseg.engine.trt_build import MIN_VERSION, TrtVersion, is_strongly_typed

    text = str(getattr(trt, "__version__", "?"))
    try:
        parsed = TrtVersion.parse(text)
    except edgeseg.EdgesegError as err:
        report.add("tensorrt", "TensorRT", "warn", str(err))
        return
    if parsed < MIN_VERSION:
        report.add("tensorrt", "TensorRT", "warn", f"{text} is older than {MIN_VERSION}, which edgeseg needs",
                   "JetPack 5.1+ (TensorRT 8.5) or pip install tensorrt")
        return
    mode = "strongly typed: INT8 from Q/DQ models, FP16 by converting the ONNX" if is_strongly_typed(parsed) else \
        "FP16/INT8 builder flags, Q/DQ or calibration-cache INT8"
    report.add("tensorrt", "TensorRT", "ok", f"{text} ({mode})")


def check_cuda(report: Report, probes: Probes) -> None:
    try:
        api = probes.cuda_api()
    except edgeseg.EdgesegError as err:
        report.add("cuda", "CUDA bindings", "missing", str(err).replace(f": {CUDA_INSTALL_HINT}", ""), CUDA_INSTALL_HINT)
        gpus = probes.driver_gpus()
        if gpus:
            report.add("cuda", "GPU", "warn", f"the driver lists {', '.join(gpus)}, unusable without CUDA bindings")
        elif probes.read_text("/etc/nv_tegra_release"):
            report.add("cuda", "GPU", "warn", "a Jetson's GPU, unusable without CUDA bindings")
        else:
            report.add("cuda", "GPU", "missing", "no NVIDIA GPU (no driver in /proc/driver/nvidia, no CUDA bindings)")
        return
    report.add("cuda", "CUDA bindings", "ok", str(api.name))
    try:
        count = api.device_count()
    except edgeseg.EdgesegError as err:
        report.add("cuda", "GPU", "missing", f"no usable NVIDIA GPU: {err}", "check the driver: nvidia-smi (tegrastats on a Jetson)")
        return
    if count == 0:
        report.add("cuda", "GPU", "missing", "CUDA reports 0 devices")
    for index in range(count):
        gpu = api.device_info(index)
        report.add("cuda", f"GPU {index}", "ok", gpu.describe())


def parse_video_io(build_info: str) -> dict[str, bool]:
    """{"GStreamer": True, "V4L/V4L2": True, "FFMPEG": False, ...} from cv2.getBuildInformation()."""
    section = build_info.split("Video I/O:", 1)[1] if "Video I/O:" in build_info else ""
    section = re.split(r"\n\s*\n|\n  [A-Z][^\n]*:\n", section, maxsplit=1)[0]
    found = {}
    for name, value in re.findall(r"^\s*([\w/ ]+?):\s*(\S+)", section, flags=re.M):
        found[name.strip()] = value.upper() not in ("NO", "OFF")
    return found


def check_opencv(report: Report, probes: Probes) -> None:
    try:
        ver, info = probes.opencv_build()
    except ImportError as err:
        report.add("opencv", "OpenCV", "missing", f"cv2 does not import ({err})", "pip install opencv-python-headless")
        return
    video = parse_video_io(info)
    backends = ", ".join(name for name, on in video.items() if on) or "none"
    report.add("opencv", "video back-ends", "ok", f"OpenCV {ver}: {backends}")
    if video.get("GStreamer"):
        report.add("opencv", "csi:// and gst: sources", "ok", "OpenCV has GStreamer: CSI cameras and gst: pipelines can open")
    else:
        hidden = probes.system_modules("cv2")
        where = f" (the system's OpenCV is at {hidden[0]}, unseen by this Python)" if hidden else ""
        report.add("opencv", "csi:// and gst: sources", "warn", "OpenCV has no GStreamer: csi:// and gst: sources cannot open "
                   f"(camera indices, video files and RTSP via FFmpeg still work){where}", OPENCV_GSTREAMER_HINT)


def check_cameras(report: Report, probes: Probes) -> None:
    devices = probes.video_devices()
    if not devices:
        report.add("camera", "V4L2", "info", "no /dev/video* devices (no USB/CSI camera seen)")
        return
    report.add("camera", "V4L2", "ok", ", ".join(f"{path} ({name})" if name else path for path, name in devices))


# (flag in /proc/cpuinfo, what it is); the first group that is present decides
X86_INT8 = (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"), ("amx_int8", "AMX-INT8"))
ARM_INT8 = (("asimddp", "NEON dot product"), ("i8mm", "NEON int8 matrix multiply"))


def check_cpu(report: Report, probes: Probes) -> None:
    cpuinfo = probes.read_text("/proc/cpuinfo") or ""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    machine = probes.machine()
    wanted = ARM_INT8 if machine in ("aarch64", "arm64") else X86_INT8
    present = [label for flag, label in wanted if flag in flags]
    if not cpuinfo:
        report.add("cpu", "INT8 instructions", "info", f"{machine}: /proc/cpuinfo unreadable, cannot tell")
    elif present:
        extra = " + AVX-512" if "avx512bw" in flags else ""
        report.add("cpu", "INT8 instructions", "ok", f"{machine}: {', '.join(present)}{extra}: INT8 can beat FP32 here")
    else:
        looked = ", ".join(label for _, label in wanted)
        report.add("cpu", "INT8 instructions", "warn", f"{machine}: no {looked}", INT8_SLOW)


CHECKS = (check_python, check_packages, check_onnxruntime, check_tensorrt, check_cuda, check_opencv, check_cameras,
          check_cpu)


def diagnose(probes: Probes | None = None) -> Report:
    """Run every check; never raises for a missing piece (that is a finding)."""
    probes = probes or Probes()
    report = Report()
    for check in CHECKS:
        check(report, probes)
    return report
