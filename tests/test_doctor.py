"""`edgeseg doctor`: the truth about this machine, and simulated robots and missing pieces."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.doctor import INT8_SLOW, TENSORRT_INSTALL, X86_INT8, Probes, diagnose, parse_video_io
from edgeseg.errors import EngineError
from edgeseg.runtime.cuda_buffers import GpuInfo

JETSON_BUILD_INFO = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      NO
    GStreamer:                   YES (1.20.3)
    v4l/v4l2:                    YES (linux/videodev2.h)

  Parallel framework:            pthreads
"""


def status(report, area: str, name: str) -> tuple[str, str]:
    check = report.find(area, name)
    assert check is not None, f"no {area}/{name} row in {[(c.area, c.name) for c in report.checks]}"
    return check.status, check.detail


def test_doctor_tells_the_truth_about_this_machine(capsys):
    import onnxruntime

    from edgeseg.stream.sources import opencv_has_gstreamer

    assert main(["doctor"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["area", "check", "status", "found"]
    report = diagnose()
    for provider in onnxruntime.get_available_providers():
        assert provider in status(report, "onnxruntime", "providers")[1]
    trt_status, trt_detail = status(report, "tensorrt", "TensorRT")
    if importlib.util.find_spec("tensorrt") is None:
        assert trt_status == "missing" and TENSORRT_INSTALL in table
    assert status(report, "opencv", "csi:// and gst: sources")[0] == ("ok" if opencv_has_gstreamer() else "warn")
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    int8_labels = [label for flag, label in X86_INT8 if flag in cpuinfo.split()]
    if int8_labels:  # this machine's own flags: the same test passes on a VNNI-only CPU and on one with AMX
        cpu_status, cpu_detail = status(report, "cpu", "INT8 instructions")
        assert cpu_status == "ok" and cpu_detail.startswith(f"x86_64: {', '.join(int8_labels)}")
    if not Path("/proc/driver/nvidia").exists() and importlib.util.find_spec("cuda") is None \
            and importlib.util.find_spec("pycuda") is None:
        assert status(report, "cuda", "GPU")[0] == "missing"


def test_doctor_json_to_stdout_and_to_a_file(tmp_path, capsys):
    assert main(["doctor", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"area", "name", "status", "detail", "hint"} == set(printed["checks"][0])
    assert main(["doctor", "--json", str(tmp_path / "doctor.json")]) == 0
    written = json.loads((tmp_path / "doctor.json").read_text())
    assert [c["name"] for c in written["checks"]] == [c["name"] for c in printed["checks"]]


class FakeCudaApi:
    name = "cuda-python"

    def device_count(self) -> int:
        return 1

    def device_info(self, index: int) -> GpuInfo:
        return GpuInfo("Orin", "8.7", index)


def jetson_probes(**changes) -> Probes:
    """A Jetson Orin on JetPack 6: TensorRT 10.3, cuda-python, OpenCV with GStreamer, a CSI camera."""
    modules = {
        "tensorrt": types.SimpleNamespace(__version__="10.3.0"),
        "onnxruntime": types.SimpleNamespace(__version__="1.19.0", get_available_providers=lambda: [
            "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
    }

    def import_module(name: str):
        if name not in modules:
            raise ImportError(f"No module named {name!r}")
        return modules[name]

    files = {"/proc/cpuinfo": "processor : 0\nFeatures : fp asimd evtstrm aes asimddp\n",
             "/etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 36923193\n"}
    base = dict(package_version=lambda names: (names[0], "1.0"), import_module=import_module,
                read_text=files.get, video_devices=lambda: [("/dev/video0", "vi-output, imx219 9-0010")],
                cuda_api=FakeCudaApi, opencv_build=lambda: ("4.8.0", JETSON_BUILD_INFO), machine=lambda: "aarch64",
                driver_gpus=lambda: [], system_modules=lambda name: [])
    base.update(changes)
    return Probes(**base)


def test_a_simulated_jetson_with_everything():
    report = diagnose(jetson_probes())
    assert status(report, "python", "Jetson") == ("info", "R36 (release), REVISION: 3.0, GCID: 36923193: "
                                                          "JetPack 6 (TensorRT 8.6 on 6.0, 10.3 on 6.1+)")
    assert status(report, "tensorrt", "TensorRT") == ("ok", "10.3.0 (FP16/INT8 builder flags, Q/DQ or calibration-cache INT8)")
    assert status(report, "cuda", "GPU 0") == ("ok", "Orin (compute 8.7)")
    assert "TensorrtExecutionProvider" in status(report, "onnxruntime", "providers")[1]
    assert status(report, "opencv", "csi:// and gst: sources")[0] == "ok"
    assert status(report, "camera", "V4L2") == ("ok", "/dev/video0 (vi-output, imx219 9-0010)")
    assert status(report, "cpu", "INT8 instructions") == ("ok", "aarch64: NEON dot product: INT8 can beat FP32 here")
    assert not [c for c in report.checks if c.status in ("missing", "warn")]


def test_simulated_missing_pieces_each_say_what_to_do():
    def no_cuda():
        raise EngineError("neither cuda-python nor pycuda is installed: pip install cuda-python")

    report = diagnose(jetson_probes(
        import_module=lambda name: (_ for _ in ()).throw(ImportError(f"No module named {name!r}")),
        cuda_api=no_cuda, opencv_build=lambda: ("4.10.0", "Video I/O:\n    GStreamer: NO\n    FFMPEG: YES\n"),
        video_devices=lambda: [], package_version=lambda names: None,
        read_text={"/proc/cpuinfo": "flags : fpu sse avx2 avx512f avx512bw\n"}.get, machine=lambda: "x86_64",
        driver_gpus=lambda: ["NVIDIA GeForce RTX 3060"]))
    assert status(report, "tensorrt", "TensorRT")[0] == "missing"
    assert report.find("tensorrt", "TensorRT").hint == TENSORRT_INSTALL
    assert "JetPack 5/6" in TENSORRT_INSTALL and "pip install tensorrt" in TENSORRT_INSTALL
    assert status(report, "onnxruntime", "providers")[0] == "missing"
    assert status(report, "cuda", "CUDA bindings") == ("missing", "neither cuda-python nor pycuda is installed: pip install cuda-python")
    assert status(report, "cuda", "GPU") == ("warn", "the driver lists NVIDIA GeForce RTX 3060, unusable without CUDA bindings")
    csi = report.find("opencv", "csi:// and gst: sources")
    assert csi.status == "warn" and "JetPack's OpenCV" in csi.hint
    assert status(report, "camera", "V4L2")[0] == "info"
    cpu = report.find("cpu", "INT8 instructions")
    assert (cpu.status, cpu.detail, cpu.hint) == ("warn", "x86_64: no AVX-512 VNNI, AVX-VNNI, AMX-INT8", INT8_SLOW)
    assert status(report, "package", "numpy") == ("missing", "not installed (needed for runtime)")
    assert status(report, "package", "tensorflow")[0] == "info"  # optional: training only
    table = report.table()
    assert "what to do:" in table and INT8_SLOW in table


@pytest.mark.parametrize("version, expected", [
    ("11.4.0.106", ("ok", "11.4.0.106 (strongly typed: INT8 from Q/DQ models, FP16 by converting the ONNX)")),
    ("8.4.3", ("warn", "8.4.3 is older than 8.5.0, which edgeseg needs")),
])
def test_tensorrt_versions(version, expected):
    modules = {"tensorrt": types.SimpleNamespace(__version__=version)}
    report = diagnose(jetson_probes(import_module=lambda name: modules[name] if name in modules else
                                    (_ for _ in ()).throw(ImportError(name))))
    assert status(report, "tensorrt", "TensorRT") == expected


def test_parse_video_io_reads_only_the_video_section():
    found = parse_video_io(JETSON_BUILD_INFO)
    assert found == {"DC1394": False, "FFMPEG": False, "GStreamer": True, "v4l/v4l2": True}
    assert parse_video_io("no such section") == {}


def test_a_jetson_virtualenv_without_system_site_packages_is_told_so():
    hidden = {"tensorrt": ["/usr/lib/python3.10/dist-packages/tensorrt"], "cv2": ["/usr/lib/python3.10/dist-packages/cv2"]}
    report = diagnose(jetson_probes(
        import_module=lambda name: (_ for _ in ()).throw(ImportError(f"No module named {name!r}")),
        opencv_build=lambda: ("4.10.0", "Video I/O:\n    GStreamer: NO\n"), system_modules=lambda name: hidden.get(name, [])))
    trt = report.find("tensorrt", "TensorRT")
    assert trt.detail == "installed at /usr/lib/python3.10/dist-packages/tensorrt, but this Python does not see it"
    assert trt.hint.startswith("recreate the virtualenv with --system-site-packages")
    assert "the system's OpenCV is at /usr/lib/python3.10/dist-packages/cv2" in report.find("opencv", "csi:// and gst: sources").detail
