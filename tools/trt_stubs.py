"""Import TensorRT's (and cuda-python's) real Python bindings on a machine without TensorRT or a GPU.

NVIDIA publishes the compiled bindings as small wheels (`tensorrt-bindings`,
`tensorrt-cu12-bindings`, `tensorrt-cu13-bindings`); the native libraries they link against
(libnvinfer, libnvonnxparser, ...) are not installable here. The bindings need only a handful
of C symbols from those libraries to load, so this script:

1. downloads one bindings wheel per supported TensorRT version (`pip download --no-deps
   --only-binary=:all:`, cached);
2. lists the symbols the compiled module leaves undefined (`nm -D --undefined-only`) and the
   libraries it needs (`readelf -d`), and builds a stub library per soname with gcc whose
   functions return NULL (nothing native ever runs);
3. imports the real module in a subprocess with LD_LIBRARY_PATH pointing at the stubs and
   dumps its API surface as JSON: every class, method (with pybind11's typed signatures from
   `__doc__`), property (and whether it is writable) and enum member with its value.

tests/engine/test_trt_conformance.py checks edgeseg's TensorRT code and the test fakes against
these surfaces. cuda-python's runtime bindings need no stubs: they import without a driver and
answer every call with a real CUDA error (`prepare_cuda`; tests/engine/test_cuda_python_real.py).

Cache: $EDGESEG_TRT_STUBS, else .cache/trt-stubs/ in the repository (ignored by git). Needs
network access once, gcc and binutils.

Usage:
    python tools/trt_stubs.py                 # prepare every version, print where
    python tools/trt_stubs.py surface 10.3    # print one version's surface as JSON
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# The TensorRT versions edgeseg supports, each as the bindings wheel that has it.
WHEELS = {
    "8.6": "tensorrt-bindings==8.6.1",  # JetPack 5 (8.5 has no bindings-only wheel)
    "10.3": "tensorrt-cu12-bindings==10.3.0",  # JetPack 6
    "10.16": "tensorrt-cu12-bindings==10.16.1.11",  # the last 10.x, desktops
    "11.4": "tensorrt-cu13-bindings==11.4.0.106",  # strongly typed only
}
# cuda-python's runtime bindings for CUDA 12 (JetPack 6, desktops) and 13, each with what it imports.
CUDA_WHEELS = {
    "12.9": ("cuda-bindings==12.9.10", "cuda-pathfinder==1.9.1"),
    "13.5": ("cuda-bindings==13.5.0", "cuda-pathfinder==1.9.1"),
}
STUB_SYMBOLS_SKIPPED = re.compile(r"^(_?Py|dl(open|sym|close|error)$)")
SURFACE_FORMAT = 1


UNREACHABLE = re.compile(r"Could not fetch URL|Retrying \(|NewConnectionError|Network is unreachable|"
                         r"Name or service not known|Temporary failure in name resolution|timed out")
_offline: list[str] = []  # why the package index could not be reached, once it could not


class StubsUnavailable(RuntimeError):
    """The bindings cannot be had here (no network, no wheel for this Python, no gcc)."""


@dataclass(frozen=True)
class Prepared:
    """One version's bindings, importable with `env()` (site folder + stub libraries)."""

    key: str
    site: Path
    libs: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.site)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.libs), env.get("LD_LIBRARY_PATH")]))
        return env


def cache_root() -> Path:
    override = os.environ.get("EDGESEG_TRT_STUBS")
    return Path(override) if override else Path(__file__).resolve().parents[1] / ".cache" / "trt-stubs"


def _run(command: list[str], what: str, **kwargs) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    except FileNotFoundError:
        raise StubsUnavailable(f"{what}: {command[0]} is not installed") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        error = StubsUnavailable(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
        error.output = done.stderr + done.stdout
        raise error
    return done.stdout


def fetch_wheel(requirement: str, folder: Path) -> Path:
    """The wheel for `requirement` in `folder`, downloaded for this Python if not there yet."""
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    abi = f"-cp{sys.version_info.major}{sys.version_info.minor}-"
    found = sorted(w for w in folder.glob(f"{stem}*.whl") if abi in w.name or w.name.endswith("-none-any.whl"))
    if found:
        return found[0]
    if _offline:  # one network failure is enough: do not wait for every wheel's timeout
        raise StubsUnavailable(_offline[0])
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        try:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                  "--retries", "1", "--timeout", "20", "-d", scratch, requirement], f"pip download {requirement}")
        except StubsUnavailable as err:
            if UNREACHABLE.search(getattr(err, "output", "")):  # the index, not this wheel, is missing
                _offline.append(f"{err} (package index unreachable)")
            raise
        wheels = list(Path(scratch).glob("*.whl"))
        if len(wheels) != 1:
            raise StubsUnavailable(f"pip download {requirement} gave {len(wheels)} wheels")
        return Path(shutil.move(str(wheels[0]), folder / wheels[0].name))


def trt_symbols(module: Path) -> tuple[list[str], list[str]]:
    """(TensorRT libraries the module needs, TensorRT symbols it leaves undefined)."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[\w.]+)\]", _run(["readelf", "-d", str(module)], "readelf"))
    symbols = []
    for line in _run(["nm", "-D", "--undefined-only", str(module)], "nm").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1] and not STUB_SYMBOLS_SKIPPED.match(parts[1]):
            symbols.append(parts[1])
    return needed, sorted(set(symbols))


def library_for(symbol: str, needed: list[str]) -> str:
    """Which needed library a symbol belongs in (any would load; this keeps the stubs honest)."""
    rules = (("NvOnnxParser", "libnvonnxparser"), ("initLibNvInferPlugins", "libnvinfer_plugin"),
             ("nvuffparser", "libnvparsers"), ("nvcaffeparser", "libnvparsers"))
    prefix = next((lib for key, lib in rules if key in symbol), "libnvinfer")
    return next((lib for lib in needed if lib.startswith(prefix + ".so")), needed[0])


def build_stubs(module: Path, libs: Path) -> None:
    """One stub library per needed soname; each exported symbol is a function returning NULL."""
    needed, symbols = trt_symbols(module)
    if not needed:
        raise StubsUnavailable(f"{module} links no TensorRT library; is it the bindings module?")
    libs.mkdir(parents=True, exist_ok=True)
    for lib in needed:
        source = libs / f"{lib}.c"
        mine = [s for s in symbols if library_for(s, needed) == lib]
        source.write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in mine) or "int edgeseg_stub;\n")
        _run(["gcc", "-shared", "-fPIC", "-O0", f"-Wl,-soname,{lib}", "-o", str(libs / lib), str(source)],
             f"gcc stub {lib}")


def prepare(key: str, root: Path | None = None) -> Prepared:
    """Download, unpack and stub one version (cached: a second call costs nothing).

    Raises:
        StubsUnavailable: the wheel cannot be downloaded or the stubs cannot be built.
    """
    if key not in WHEELS:
        raise StubsUnavailable(f"unknown TensorRT version {key!r}; known: {', '.join(WHEELS)}")
    root = root or cache_root()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    folder = root / f"{key}-{tag}"
    prepared = Prepared(key, folder / "site", folder / "libs")
    if (folder / "ready").is_file():
        return prepared
    wheel = fetch_wheel(WHEELS[key], root / "wheels")
    with _building(folder) as scratch:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(scratch / "site")
        modules = sorted((scratch / "site").glob("tensorrt_bindings/tensorrt*.so"))
        if not modules:
            raise StubsUnavailable(f"{wheel.name} has no tensorrt_bindings/tensorrt*.so")
        build_stubs(modules[0], scratch / "libs")
        (scratch / "ready").write_text(wheel.name + "\n")
    return prepared


@contextlib.contextmanager
def _building(folder: Path):
    """A scratch folder that becomes `folder` only when complete (parallel test runs share the cache)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield scratch
        if not (folder / "ready").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier build
            os.replace(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare_cuda(key: str, root: Path | None = None) -> Path:
    """A folder to put on PYTHONPATH that holds cuda-python's bindings of one CUDA version (cached).

    Raises:
        StubsUnavailable: a wheel cannot be downloaded.
    """
    if key not in CUDA_WHEELS:
        raise StubsUnavailable(f"unknown cuda-python version {key!r}; known: {', '.join(CUDA_WHEELS)}")
    root = root or cache_root()
    folder = root / f"cuda-{key}-py{sys.version_info.major}{sys.version_info.minor}"
    if (folder / "ready").is_file():
        return folder / "site"
    wheels = [fetch_wheel(requirement, root / "wheels") for requirement in CUDA_WHEELS[key]]
    with _building(folder) as scratch:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(scratch / "site")
        (scratch / "ready").write_text("".join(f"{wheel.name}\n" for wheel in wheels))
    return folder / "site"


def surface(prepared: Prepared) -> dict:
    """The API surface of one version, read by importing its real bindings in a subprocess."""
    out = _run([sys.executable, str(Path(__file__).resolve()), "_dump"], f"import TensorRT {prepared.key} bindings",
               env=prepared.env(), timeout=120)
    return json.loads(out)


# --- the dump (runs in the subprocess, with the real bindings importable) ---------------------

_SIGNATURE = re.compile(r"^(?:\d+\.\s*)?(\w+)\((.*)\)\s*->\s*(.+?)\s*$")
_PROPERTY = re.compile(r"^\((.*)\)\s*->\s*(.+?)\s*$")


_TYPE_ALIASES = {"typing.SupportsInt": "int", "typing.SupportsFloat": "float", "typing_extensions.Buffer": "buffer"}


def short_type(text: str) -> str:
    """One spelling per type across versions: 'tensorrt_bindings.tensorrt.IBuilderConfig' ->
    'IBuilderConfig', 'nvinfer1::ILogger::Severity' -> 'ILogger.Severity', 'typing.SupportsInt' -> 'int'."""
    text = re.sub(r"\btensorrt(?:_bindings)?\.(?:tensorrt\.)?|\bnv(?:infer1|onnxparser)::", "", text.strip())
    text = re.sub(r"\b(typing\.SupportsInt|typing\.SupportsFloat|typing_extensions\.Buffer)\b",
                  lambda m: _TYPE_ALIASES[m.group(1)], text)
    return text.replace("::", ".").replace("list[", "List[")


def split_params(text: str) -> list[str]:
    """'a: int, b: Dict[str, int] = {}' -> ['a: int', 'b: Dict[str, int] = {}'] (commas in brackets kept)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [part for part in parts + [current.strip()] if part]


def parse_param(text: str) -> dict:
    """'name: type = default' -> {"name", "type", "default"}; '*args' keeps its stars in name."""
    head, _, default = text.partition("=")
    name, _, kind = head.partition(":")
    return {"name": name.strip(), "type": short_type(kind) if kind else "", "default": bool(default.strip())}


def pybind_signatures(function: object, name: str) -> list[dict]:
    """Every overload in a pybind11 docstring: params (self first) and return type."""
    found = []
    for line in (getattr(function, "__doc__", None) or "").splitlines():
        match = _SIGNATURE.match(line.strip())
        if match and match.group(1) == name:
            found.append({"params": [parse_param(p) for p in split_params(match.group(2))],
                          "returns": short_type(match.group(3))})
    if not found:  # a Python function (e.g. tensorrt.nptype)
        try:
            sig = inspect.signature(function)
        except (TypeError, ValueError):
            return []
        params = [{"name": ("*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind == p.VAR_KEYWORD else "") + p.name,
                   "type": "", "default": p.default is not p.empty} for p in sig.parameters.values()]
        found.append({"params": params, "returns": ""})
    return found


def describe_class(cls: type, qualname: str, classes: dict) -> None:
    members = {}
    enum_members = getattr(cls, "__members__", None) or {}
    for name in dir(cls):
        if name.startswith("__") and name != "__init__":
            continue
        raw = inspect.getattr_static(cls, name, None)
        value = getattr(cls, name, None)
        if name in enum_members:
            members[name] = {"kind": "member", "value": int(enum_members[name])}
        elif isinstance(raw, property):  # pybind11 puts "(self: X) -> TYPE" first in the getter's __doc__
            first_line = ((getattr(raw.fget, "__doc__", None) or "").strip().splitlines() or [""])[0]
            match = _PROPERTY.match(first_line)
            members[name] = {"kind": "property", "writable": raw.fset is not None,
                             "type": short_type(match.group(2)) if match else ""}
        elif inspect.isclass(value):
            nested = f"{qualname}.{name}"
            members[name] = {"kind": "class", "ref": value.__name__ if value.__qualname__ == value.__name__ and
                             value.__name__ in classes else nested}
            if members[name]["ref"] == nested:
                describe_class(value, nested, classes)
        elif callable(value):
            static = isinstance(raw, staticmethod)
            members[name] = {"kind": "method", "static": static, "signatures": pybind_signatures(value, name)}
        else:
            enum_type = type(value)
            members[name] = {"kind": "value", "type": short_type(getattr(enum_type, "__qualname__", "")),
                             "value": int(value) if hasattr(enum_type, "__members__") else None}
    classes[qualname] = {"bases": [b.__name__ for b in cls.__mro__[1:] if b is not object], "members": members}


def dump() -> dict:
    import tensorrt_bindings as trt

    classes: dict = {}
    module: dict = {}
    names = [n for n in dir(trt) if not n.startswith("_") or n == "__version__"]
    for name in names:  # top-level classes first, so nested references resolve to them
        if inspect.isclass(getattr(trt, name)):
            classes[name] = None
    for name in names:
        value = getattr(trt, name)
        if inspect.isclass(value):
            module[name] = {"kind": "class"}
            describe_class(value, name, classes)
        elif callable(value):
            module[name] = {"kind": "function", "signatures": pybind_signatures(value, name)}
        elif not inspect.ismodule(value):
            module[name] = {"kind": "value"}
    return {"format": SURFACE_FORMAT, "version": str(trt.__version__), "module": module, "classes": classes}


def main(argv: list[str]) -> int:
    if argv[:1] == ["_dump"]:
        json.dump(dump(), sys.stdout)
        return 0
    try:
        if argv[:1] == ["surface"] and len(argv) == 2:
            json.dump(surface(prepare(argv[1])), sys.stdout, indent=1)
            return 0
        for key in WHEELS:
            prepared = prepare(key)
            print(f"TensorRT {key}: PYTHONPATH={prepared.site} LD_LIBRARY_PATH={prepared.libs}")
        for key in CUDA_WHEELS:
            print(f"cuda-python for CUDA {key}: PYTHONPATH={prepare_cuda(key)}")
    except StubsUnavailable as err:
        print(f"trt_stubs: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
