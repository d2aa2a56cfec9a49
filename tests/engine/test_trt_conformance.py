"""edgeseg's TensorRT code and the test fakes, checked against TensorRT's real Python API.

`tools/trt_stubs.py` downloads the real bindings wheel of each supported version (8.6 for
JetPack 5, 10.3 for JetPack 6, 10.16 for desktops, 11.4), builds stub native libraries so the
compiled module imports on this CPU machine, and dumps its API surface (classes, methods with
pybind11's typed signatures, properties, enum members). Nothing native runs: names, arities,
argument types and enum values are checked, not behaviour.

Which names edgeseg uses is found by reading the code, not from a list: an AST scan of every
edgeseg module that imports TensorRT (today trt_build.py and tensorrt_backend.py) and of
test_tensorrt_real.py follows the `trt` module and the objects TensorRT returns (their types
come from the real signatures' return types), starting from a few parameter names
(`RECEIVERS`). Names used only on some versions are the small `GATED` table, tied to the
code's own version predicates and checked both ways: present where edgeseg uses
them, absent where edgeseg relies on their removal.

The suite skips, with the reason, when the wheels cannot be downloaded or gcc is missing.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from edgeseg.engine import trt_build
from edgeseg.engine.trt_build import TrtVersion, supports_implicit_int8, supports_precision_flags

ROOT = Path(__file__).resolve().parents[2]
_tool_spec = importlib.util.spec_from_file_location("edgeseg_trt_stubs", ROOT / "tools" / "trt_stubs.py")
trt_stubs = sys.modules.setdefault("edgeseg_trt_stubs", importlib.util.module_from_spec(_tool_spec))
_tool_spec.loader.exec_module(trt_stubs)

# edgeseg's TensorRT code (every module that imports it, so a new one is covered without a list), and
# the tests that run it on a Jetson (they must not misuse the API either)
SOURCES = tuple(path for path in sorted((ROOT / "edgeseg").rglob("*.py"))
                if re.search(r"^\s*import tensorrt\b|\bimport_tensorrt\(", path.read_text(), re.M)) + (
    Path(__file__).with_name("test_tensorrt_real.py"),)
MODULE = "<module>"

# Parameters and attributes holding TensorRT objects that the scan cannot see being created.
RECEIVERS = {
    "trt": MODULE, "builder": "Builder", "config": "IBuilderConfig", "network": "INetworkDefinition",
    "self.network": "INetworkDefinition", "parsed.network": "INetworkDefinition", "parsed.input": "ITensor",
    "engine": "ICudaEngine", "error": "ParserError",
}


def before_10(v: TrtVersion) -> bool:
    return v.major < 10


def removed(predicate: Callable[[TrtVersion], bool]) -> Callable[[TrtVersion], bool]:
    return lambda v: not predicate(v)


# (owner, name) -> (the versions on which edgeseg uses it, the versions on which edgeseg relies on it being gone)
GATED = {
    ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"): (before_10, trt_build.is_strongly_typed),
    ("BuilderFlag", "INT8"): (supports_precision_flags, removed(supports_precision_flags)),
    ("BuilderFlag", "FP16"): (supports_precision_flags, removed(supports_precision_flags)),
    (MODULE, "IInt8EntropyCalibrator2"): (supports_implicit_int8, removed(supports_implicit_int8)),
    ("IBuilderConfig", "int8_calibrator"): (supports_implicit_int8, removed(supports_implicit_int8)),
}
# Names the scan must find: if it misses one, its type inference broke.
EXPECTED = {("Builder", "build_serialized_network"), ("IBuilderConfig", "set_memory_pool_limit"),
            ("IExecutionContext", "execute_async_v3"), ("IExecutionContext", "set_tensor_address"),
            ("Runtime", "deserialize_cuda_engine"), ("OnnxParser", "parse_from_file"),
            ("ICudaEngine", "get_tensor_profile_shape"), ("ParserError", "desc"), ("ILogger", "log"),
            ("IInt8EntropyCalibrator2", "read_calibration_cache"), ("ITimingCache", "serialize"),
            ("ITensor", "shape"), ("ILayer", "type"), ("LayerType", "QUANTIZE"), ("TensorIOMode", "INPUT")}
FAKE_PLUMBING = {"calls", "cuda"}  # the fake module's test-only attributes


# --- the real surfaces ------------------------------------------------------------------------


class Api:
    """One version's API surface (the JSON of `trt_stubs.surface`)."""

    def __init__(self, data: dict, key: str = "") -> None:
        self.data, self.key = data, key  # key: trt_stubs.WHEELS's name of this version
        self.version = TrtVersion.parse(data["version"])
        self.classes: dict[str, dict] = data["classes"]

    def resolve(self, name: str) -> str | None:
        """A class name as the real module spells it ('IParserError' is 'ParserError' in Python)."""
        for candidate in (name, name[1:] if name.startswith("I") else name):
            if candidate in self.classes:
                return candidate
        return None

    def member(self, owner: str, name: str) -> dict | None:
        if owner == MODULE:
            return self.data["module"].get(name)
        cls = self.classes.get(owner)
        return None if cls is None else cls["members"].get(name)


@pytest.fixture(scope="session")
def surfaces() -> dict[str, Any]:
    """Every version's surface, or the reason none can be had (wheels, gcc)."""
    found: dict[str, Any] = {}
    for key in trt_stubs.WHEELS:
        try:
            found[key] = Api(trt_stubs.surface(trt_stubs.prepare(key)), key)
        except trt_stubs.StubsUnavailable as err:
            found[key] = str(err)
    return found


@pytest.fixture(params=list(trt_stubs.WHEELS))
def api(request: pytest.FixtureRequest, surfaces: dict[str, Any]) -> Api:
    found = surfaces[request.param]
    if isinstance(found, str):
        pytest.skip(f"TensorRT {request.param} bindings unavailable: {found} (see tools/trt_stubs.py)")
    return found


# --- what edgeseg uses: an AST scan with light type inference ------------------------------------

Type = tuple  # (class name or MODULE, is_class), or ("method", owner, name, via_class, its Use)


@dataclass
class Use:
    where: str
    owner: str
    name: str
    action: str  # "read", "write", "call", "override"
    args: list = field(default_factory=list)  # inferred types of positional args (None: unknown)
    keywords: list = field(default_factory=list)
    via_class: bool = False  # a method taken from the class, so `self` is passed explicitly
    optional: bool = False  # guarded by hasattr()


class Scanner:
    """Records every TensorRT name one source file reaches, with inferred receiver types."""

    BUILTINS = {"int": "int", "str": "str", "bytes": "bytes", "float": "float", "bool": "bool"}

    def __init__(self, path: Path, api: Api) -> None:
        self.path, self.api = path, api
        self.tree = ast.parse(path.read_text())
        self.uses: list[Use] = []
        self.consts = {node.targets[0].id: [e.value for e in node.value.elts]
                       for node in self.tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple)
                       and isinstance(node.targets[0], ast.Name) and all(isinstance(e, ast.Constant) for e in node.value.elts)}
        self.attributes: dict[str, Type] = {}

    def scan(self) -> list[Use]:
        for _ in range(2):  # first pass: learn `self.x = ...` types; second: record
            self.uses = []
            self._block(self.tree.body, {})
        return self.uses

    # statements
    def _block(self, body: list, env: dict) -> None:
        for stmt in body:
            self._statement(stmt, env)

    def _statement(self, stmt: ast.stmt, env: dict) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = dict(env)
            for arg in stmt.args.args + stmt.args.kwonlyargs:
                inner.pop(arg.arg, None)
                if arg.arg in RECEIVERS:
                    inner[arg.arg] = self._seed(arg.arg)
            for dotted in RECEIVERS:
                if "." in dotted:
                    inner.setdefault(dotted, self._seed(dotted))
            inner.update(self.attributes)
            inner["<hasattr>"] = {(ast.unparse(c.args[0]), c.args[1].value) for c in ast.walk(stmt)
                                  if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "hasattr"}
            for default in stmt.args.defaults:
                self.type_of(default, inner)
            self._block(stmt.body, inner)
            return
        if isinstance(stmt, ast.ClassDef):
            bases = [self.type_of(base, env) for base in stmt.bases]
            trt_base = next((b for b in bases if b and len(b) == 2 and b[1] and b[0] != MODULE), None)
            for item in stmt.body:
                if trt_base and isinstance(item, ast.FunctionDef) and item.name != "__init__":
                    self.uses.append(Use(self._where(item), trt_base[0], item.name, "override",
                                         args=[_arity(item)]))
                self._statement(item, env)
            return
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.name == "tensorrt":
                    env[alias.asname or alias.name] = (MODULE, False)
            return
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            value_type = self.type_of(stmt.value, env) if stmt.value is not None else None
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                self._assign(target, value_type, env)
            return
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.expr):
                self.type_of(child, env)
            elif isinstance(child, ast.stmt):
                self._statement(child, env)
            elif isinstance(child, ast.excepthandler):
                self._block(child.body, env)
            elif isinstance(child, ast.withitem):
                self.type_of(child.context_expr, env)

    def _assign(self, target: ast.expr, value_type: Type | None, env: dict) -> None:
        if isinstance(target, ast.Attribute):
            owner = self.type_of(target.value, env)
            if owner and owner[0] != MODULE and len(owner) == 2 and self.api.resolve(owner[0]):
                self.uses.append(Use(self._where(target), self.api.resolve(owner[0]), target.attr, "write",
                                     args=[value_type and value_type[0]]))
        dotted = _dotted(target)
        if dotted and value_type:
            env[dotted] = value_type
            if dotted.startswith("self."):
                self.attributes[dotted] = value_type
        elif dotted in RECEIVERS:  # e.g. `trt = import_tensorrt()`: still the seeded type
            env[dotted] = self._seed(dotted)
        elif dotted:
            env.pop(dotted, None)
        if isinstance(target, ast.Tuple):
            for element in target.elts:
                self._assign(element, None, env)

    # expressions
    def type_of(self, node: ast.expr, env: dict) -> Type | None:
        dotted = _dotted(node)
        if dotted in env and dotted != "<hasattr>":
            return env[dotted]
        if isinstance(node, ast.Attribute):
            return self._attribute(node, env)
        if isinstance(node, ast.Call):
            return self._call(node, env)
        if isinstance(node, ast.Constant):
            return (type(node.value).__name__, False)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = dict(env)
            for generator in node.generators:
                self.type_of(generator.iter, inner)
                if isinstance(generator.iter, ast.Name) and generator.iter.id in self.consts:
                    inner[f"<strings>{ast.unparse(generator.target)}"] = self.consts[generator.iter.id]
                else:
                    for name in ast.walk(generator.target):
                        inner.pop(_dotted(name), None)
            for condition in (c for generator in node.generators for c in generator.ifs):
                self.type_of(condition, inner)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.type_of(child, inner)
            return None
        if isinstance(node, ast.IfExp):
            self.type_of(node.test, env)
            body = self.type_of(node.body, env)
            other = self.type_of(node.orelse, env)
            return body or other
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.type_of(child, env)
            elif isinstance(child, ast.comprehension):
                self.type_of(child.iter, env)
        return None

    def _attribute(self, node: ast.Attribute, env: dict, action: str = "read") -> Type | None:
        base = self.type_of(node.value, env)
        if not base or base[0] == "method" or (base[0] != MODULE and not self.api.resolve(base[0])):
            return None
        owner = MODULE if base[0] == MODULE else self.api.resolve(base[0])
        optional = (ast.unparse(node.value), node.attr) in env.get("<hasattr>", ())
        use = Use(self._where(node), owner, node.attr, action, optional=optional)
        self.uses.append(use)
        member = self.api.member(owner, node.attr)
        if member is None:
            return None
        kind = member["kind"]
        if kind == "class":
            return (member.get("ref", node.attr), True)
        if kind in ("method", "function"):
            return ("method", owner, node.attr, bool(base[1]) if owner != MODULE else False, use)
        if kind == "member":
            return (owner, False)
        return (member["type"], False) if member.get("type") else None  # a property's or value's type

    def _call(self, node: ast.Call, env: dict) -> Type | None:
        args = [self.type_of(arg, env) for arg in node.args]
        for keyword in node.keywords:
            self.type_of(keyword.value, env)
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.BUILTINS:
            return (self.BUILTINS[func.id], False)
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            base = args[0]
            names = env.get(f"<strings>{ast.unparse(node.args[1])}") if isinstance(node.args[1], ast.Name) else None
            if isinstance(node.args[1], ast.Constant):
                names = [node.args[1].value]
            if base and base[0] != "method" and names:
                owner = MODULE if base[0] == MODULE else self.api.resolve(base[0])
                for name in names:
                    self.uses.append(Use(self._where(node), owner or base[0], name, "read"))
            return None
        target = self.type_of(func, env)
        if not target:
            return None
        arg_types = [a[0] if a and a[0] != "method" and len(a) == 2 else None for a in args]
        if target[0] == "method":
            _, owner, name, via_class, use = target
            use.action, use.args, use.via_class = "call", arg_types, via_class
            use.keywords = [k.arg for k in node.keywords]
            member = self.api.member(owner, name)
            returns = _returns(member, len(node.args) + len(node.keywords) + (0 if via_class else 1))
            resolved = self.api.resolve(returns) if returns else None
            return (resolved, False) if resolved else None
        if len(target) == 2 and target[1] and self.api.resolve(target[0]):  # a constructor
            owner = self.api.resolve(target[0])
            self.uses.append(Use(self._where(node), owner, "__init__", "call", args=arg_types,
                                 keywords=[k.arg for k in node.keywords]))
            return (owner, False)
        return None

    def _seed(self, name: str) -> Type:
        kind = RECEIVERS[name]
        return (MODULE, False) if kind == MODULE else (kind, False)

    def _where(self, node: ast.AST) -> str:
        return f"{self.path.name}:{node.lineno}"


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _arity(function: ast.FunctionDef | Callable) -> tuple[int, float]:
    """(fewest, most) positional arguments a Python function takes, `self` included."""
    if isinstance(function, ast.FunctionDef):
        positional = function.args.posonlyargs + function.args.args
        return len(positional) - len(function.args.defaults), math.inf if function.args.vararg else len(positional)
    params = inspect.signature(function).parameters.values()
    plain = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    most = math.inf if any(p.kind == p.VAR_POSITIONAL for p in params) else len(plain)
    return sum(p.default is p.empty for p in plain), most


def _signature_range(signature: dict) -> tuple[int, float]:
    params = signature["params"]
    if any(p["name"].startswith("*") for p in params):
        return sum(not p["default"] and not p["name"].startswith("*") for p in params), math.inf
    return sum(not p["default"] for p in params), len(params)


def _returns(member: dict | None, count: int) -> str | None:
    for signature in (member or {}).get("signatures", []):
        low, high = _signature_range(signature)
        if low <= count <= high:
            return signature["returns"]
    return None


ACCEPTS = {"int": {"int", "bool"}, "float": {"float", "int"}, "bool": {"bool"}, "str": {"str"},
           "buffer": {"bytes", "bytearray", "memoryview"}, "Dims": {"tuple", "list", "Dims"}}


def _accepts(declared: str, given: str | None, api: Api) -> bool:
    if given is None or not declared or declared in ("object", "capsule"):
        return True
    if declared in ACCEPTS:
        return given in ACCEPTS[declared]
    wanted, actual = api.resolve(declared), api.resolve(given)
    if wanted is None or actual is None:
        return given not in ("int", "float", "str", "bool", "bytes")  # a TensorRT class never takes a plain value
    return actual == wanted or wanted in api.classes[actual]["bases"]


def check_use(use: Use, api: Api) -> str | None:
    """Why `use` does not fit this version's API, or None."""
    member = api.member(use.owner, use.name)
    text = f"{use.where}: {'trt' if use.owner == MODULE else use.owner}.{use.name}"
    if member is None:
        return f"{text} does not exist in TensorRT {api.version}"
    kind = member["kind"]
    if use.action == "write":
        if kind != "property" or not member.get("writable"):
            return f"{text} is assigned, but it is a {'read-only ' if kind == 'property' else ''}{kind} in TensorRT {api.version}"
        return None if _accepts(member.get("type", ""), use.args[0], api) else (
            f"{text} is assigned a {use.args[0]}, but takes {member['type']} in TensorRT {api.version}")
    if use.action == "override":
        if kind != "method":
            return f"{text} is overridden, but it is a {kind} in TensorRT {api.version}"
        low, high = use.args[0]
        if not any(low <= _signature_range(s)[1] <= high for s in member["signatures"]):
            wanted = [len(s["params"]) for s in member["signatures"]]
            return f"{text} is overridden taking {low}..{high} arguments, TensorRT {api.version} calls it with {wanted}"
        return None
    if use.action == "call":
        if kind not in ("method", "function"):
            return f"{text} is called, but it is a {kind} in TensorRT {api.version}"
        offset = 0 if use.via_class or kind == "function" else 1  # `self` is passed implicitly
        count = len(use.args) + len(use.keywords) + offset
        fits = []
        for signature in member["signatures"]:
            low, high = _signature_range(signature)
            params = signature["params"]
            if not low <= count <= high or not set(use.keywords) <= {p["name"] for p in params}:
                continue
            if all(_accepts(p["type"], given, api) for p, given in zip(params[offset:], use.args)):
                fits.append(signature)
        if not fits:
            shown = "; ".join(", ".join(f"{p['name']}: {p['type']}" for p in s["params"]) for s in member["signatures"])
            return f"{text} is called with {use.args} (keywords {use.keywords}); TensorRT {api.version} takes ({shown})"
        return None
    return None  # read: existence is enough


def uses_of(api: Api) -> list[Use]:
    return [use for path in SOURCES for use in Scanner(path, api).scan()]


def gate(use: Use) -> tuple[Callable, Callable] | None:
    return GATED.get((use.owner, use.name)) or (GATED.get((MODULE, use.owner)))


# --- the tests --------------------------------------------------------------------------------


def test_the_scan_reads_edgeseg_s_tensorrt_modules():
    names = {path.name for path in SOURCES}
    assert {"trt_build.py", "tensorrt_backend.py", "test_tensorrt_real.py"} <= names, names


def test_the_scan_finds_what_edgeseg_uses(api):
    found = {(use.owner, use.name) for use in uses_of(api)}
    expected = {pair for pair in EXPECTED if api.version.major < 11 or pair[0] != "IInt8EntropyCalibrator2"}
    assert expected <= found, f"the scan missed {sorted(expected - found)}: its type inference broke"
    assert set(GATED) <= found, f"GATED lists names edgeseg no longer uses: {sorted(set(GATED) - found)}"


def test_every_name_edgeseg_uses_exists_with_a_compatible_signature(api):
    problems = []
    for use in uses_of(api):
        gated = gate(use)
        if use.optional or (gated and not gated[0](api.version)):
            continue
        problem = check_use(use, api)
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(sorted(set(problems)))


def test_what_edgeseg_relies_on_being_removed_is_removed(api):
    for (owner, name), (used_on, removed_on) in GATED.items():
        present = api.member(owner, name) is not None
        if used_on(api.version):
            assert present, f"{owner}.{name} is used on TensorRT {api.version} but does not exist there"
        if removed_on(api.version):
            assert not present, f"edgeseg treats {owner}.{name} as removed in TensorRT {api.version}, but it exists"


def _public_instance_attributes(cls: type) -> set[str]:
    """`self.X = ...` in a fake class's methods, public X only (the fake's state must be private)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return set()
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name) and node.value.id == "self" and not node.attr.startswith("_")}


def fake_problems(fake: Any, api: Api) -> list[str]:
    problems = []
    for name in sorted(n for n in vars(fake) if not n.startswith("_") and n not in FAKE_PLUMBING):
        if api.member(MODULE, name) is None:
            problems.append(f"fake trt.{name}: TensorRT {api.version} has no {name}")
    for real_name, cls in fake._fake_classes.items():
        real = api.resolve(real_name)
        if real is None:
            problems.append(f"fake class {real_name}: TensorRT {api.version} has no such class")
            continue
        members = api.classes[real]["members"]
        enum_members = getattr(cls, "__members__", {})
        own = [klass for klass in cls.__mro__ if klass.__module__ == cls.__module__]  # the fake and its fake bases
        names = set(enum_members).union(*({n for n in vars(k) if not n.startswith("_")} for k in own),
                                        *(_public_instance_attributes(k) for k in own))
        for name in sorted(names):
            member = members.get(name)
            if member is None:
                problems.append(f"fake {cls.__name__}.{name}: TensorRT {api.version} has no {real}.{name}")
            elif name in enum_members and member.get("value") != int(enum_members[name]):
                problems.append(f"fake {cls.__name__}.{name} = {int(enum_members[name])}, "
                                f"TensorRT {api.version} has {member.get('value')}")
            elif callable(getattr(cls, name, None)) and member["kind"] == "method" and name not in enum_members:
                low, high = _arity(getattr(cls, name))
                ranges = [_signature_range(s) for s in member["signatures"]]
                if not any(r_low <= low and high <= r_high for r_low, r_high in ranges):
                    problems.append(f"fake {cls.__name__}.{name} takes {low}..{high} arguments, "
                                    f"TensorRT {api.version} takes {ranges}")
            elif isinstance(vars(cls).get(name), property) and member["kind"] not in ("property", "value"):
                problems.append(f"fake {cls.__name__}.{name} is a property, TensorRT {api.version} has a {member['kind']}")
    return problems


def test_the_fakes_offer_nothing_the_real_version_lacks(api, helpers):
    fake = helpers.make_fake_tensorrt(str(api.version))
    problems = fake_problems(fake, api)
    assert not problems, "\n".join(problems)


def test_a_misspelt_name_fails_the_check(api, tmp_path):
    """The check can fail: the same code with one TensorRT name misspelt is caught."""
    backend = next(path for path in SOURCES if path.name == "tensorrt_backend.py")
    source = backend.read_text().replace("execute_async_v3", "execute_async_v4")
    mutated = tmp_path / "tensorrt_backend.py"
    mutated.write_text(source)
    problems = [check_use(use, api) for use in Scanner(mutated, api).scan()]
    assert any(p and "IExecutionContext.execute_async_v4 does not exist" in p for p in problems)


def test_pybind_signatures_are_read_with_overloads_defaults_and_one_spelling_of_types():
    """The parser the whole suite leans on, on docstrings as TensorRT 8.6 / 11.4 write them (no network)."""
    def doc(text):
        return type("F", (), {"__doc__": text})()

    single = doc("set_memory_pool_limit(self: tensorrt_bindings.tensorrt.IBuilderConfig, pool: "
                 "tensorrt_bindings.tensorrt.MemoryPoolType, pool_size: typing.SupportsInt) -> None\n\n    Set ...")
    assert trt_stubs.pybind_signatures(single, "set_memory_pool_limit") == [{"params": [
        {"name": "self", "type": "IBuilderConfig", "default": False},
        {"name": "pool", "type": "MemoryPoolType", "default": False},
        {"name": "pool_size", "type": "int", "default": False}], "returns": "None"}]
    overloaded = doc("set_input_shape(*args, **kwargs)\nOverloaded function.\n\n"
                     "1. set_input_shape(self: tensorrt.IExecutionContext, name: str, shape: tuple) -> bool\n\n"
                     "2. set_input_shape(self: tensorrt.IExecutionContext, name: str, shape: Dict[str, int] = {}) -> "
                     "nvinfer1::ILogger::Severity\n")
    first, second = trt_stubs.pybind_signatures(overloaded, "set_input_shape")
    assert [p["type"] for p in first["params"]] == ["IExecutionContext", "str", "tuple"]
    assert second["params"][2] == {"name": "shape", "type": "Dict[str, int]", "default": True}
    assert second["returns"] == "ILogger.Severity" and _signature_range(second) == (2, 3)


RUN_ON_REAL = r'''
import json, sys, tensorrt_bindings
sys.modules["tensorrt"] = tensorrt_bindings  # what `import tensorrt` gives on a Jetson or with pip's tensorrt
from edgeseg.engine import trt_build as tb
trt = tb.import_tensorrt()
version = tb.TrtVersion.parse(trt.__version__)
logger = tb.make_logger(trt)  # a Python subclass of the real ILogger
logger.log(trt.ILogger.Severity.ERROR, "parser failed")
logger.log(trt.ILogger.Severity.INFO, "chatter")
result = {"errors": logger.errors, "flags": tb.network_flags(trt, version),
          "qdq": sorted(int(getattr(trt.LayerType, n)) for n in tb.QDQ_LAYER_TYPES),
          "half": str(trt.nptype(trt.DataType.HALF)), "logger": type(trt.Logger(trt.Logger.WARNING)).__name__}
if tb.supports_implicit_int8(version):
    calibrator = tb.cache_calibrator(trt, b"TRT-8601-EntropyCalibration2\n")
    result["calibrator"] = [calibrator.read_calibration_cache().decode(), calibrator.get_batch(["image"]),
                            calibrator.get_batch_size(), isinstance(calibrator, trt.IInt8Calibrator)]
print(json.dumps(result))
'''


def test_edgeseg_trt_helpers_run_on_the_real_bindings(api):
    """What needs no GPU runs for real: the logger and calibrator subclasses, flags, enums, nptype."""
    import json
    import os
    import subprocess

    env = trt_stubs.prepare(api.key).env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT)])
    done = subprocess.run([sys.executable, "-c", RUN_ON_REAL], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == ["parser failed"] and result["logger"] == "Logger"
    assert result["flags"] == (1 if api.version.major < 10 else 0)  # 1 << EXPLICIT_BATCH (0) before 10
    assert result["qdq"] == [api.classes["LayerType"]["members"][n]["value"] for n in ("QUANTIZE", "DEQUANTIZE")]
    assert result["half"] == "<class 'numpy.float16'>"
    if api.version.major < 11:
        assert result["calibrator"] == ["TRT-8601-EntropyCalibration2\n", None, 1, True]
    else:
        assert "calibrator" not in result
