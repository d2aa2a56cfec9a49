"""`describe(path)`: what a model file is, in one answer, and the spec a model runs with.

Every command asks here instead of reading metadata on its own: the kind (from the format
table), the precision (from the graph, or the manifest of an engine), the spec (embedded, from
a spec file or flags, or exactly which fields are missing and why), the quantization record,
the manifest, and the graph's inputs and outputs (several heads, dynamic dims).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edgeseg.artifact.formats import format_for_path
from edgeseg.artifact.manifest import EngineManifest, manifest_path, read_manifest
from edgeseg.artifact.onnxmeta import (
    OnnxFacts,
    TensorInfo,
    quantization_from_metadata,
    read_onnx,
    spec_from_metadata,
)
from edgeseg.artifact.spec import SPEC_FILENAME, ModelSpec
from edgeseg.errors import EngineError, SpecError

# Ops whose output is already a probability map, and the spec's `output` (activation) for them.
_ACTIVATION_OPS = {"Sigmoid": "sigmoid", "Softmax": "probabilities"}


@dataclass(frozen=True)
class Description:
    """What `describe` found.

    Attributes:
        kind, runner: the format-table row (`edgeseg.artifact.formats`).
        precision: "fp32", "fp16", "int8", "int8+fp16" or "unknown".
        spec: the spec the model runs with, or None when fields are missing.
        missing: the spec fields that must still be given, each with the flag and why.
        inputs, outputs: the graph's tensors (ONNX), empty for other kinds.
        quantization: the record `edgeseg calibrate` wrote into a quantized model.
        manifest: the manifest of an engine (or of a CPU model built by build-engine).
        notes: remarks a user should see (several heads, dynamic dims, ...).
    """

    path: Path
    kind: str
    runner: str
    precision: str
    spec: ModelSpec | None
    missing: tuple[str, ...] = ()
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    opset: int | None = None
    quantization: dict[str, Any] | None = None
    manifest: EngineManifest | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "runner": self.runner,
            "precision": self.precision,
            "spec": self.spec.to_dict() if self.spec else None,
            "missing": list(self.missing),
            "inputs": [_tensor_dict(t) for t in self.inputs],
            "outputs": [_tensor_dict(t) for t in self.outputs],
            "opset": self.opset,
            "quantization": self.quantization,
            "manifest": self.manifest.to_dict() if self.manifest else None,
            "notes": list(self.notes),
        }

    def text(self) -> str:
        """Aligned lines for `edgeseg inspect`."""
        lines = [f"file        {self.path}", f"kind        {self.kind} (runs with {self.runner})",
                 f"precision   {self.precision}"]
        if self.opset is not None:
            lines.append(f"opset       {self.opset}")
        lines += [f"input       {t.describe()}" for t in self.inputs]
        lines += [f"output      {t.describe()}" for t in self.outputs]
        if self.spec is not None:
            spec = self.spec
            head = spec.output_name or (self.outputs[0].name if self.outputs else "the first output")
            lines += [
                f"spec        {spec.num_classes} classes: {', '.join(spec.class_names)}",
                f"            input {spec.input_height}x{spec.input_width} {spec.layout} {spec.channel_order}, "
                f"scale {spec.scale:g}, mean {_triple(spec.mean)}, std {_triple(spec.std)}",
                f"            head {head} ({spec.task}, {spec.output})"
                + (f", traversable {', '.join(spec.traversable)}" if spec.traversable else ""),
            ]
        else:
            lines.append("spec        none; missing: " + "; ".join(self.missing))
        if self.quantization:
            q = self.quantization
            lines.append(f"quantized   edgeseg calibrate --target {q.get('target', '?')} ({q.get('format', '?')}, "
                         f"{q.get('method', '?')} on {q.get('frames', '?')} frames)")
        if self.manifest is not None:
            m = self.manifest
            lines.append(f"built       {m.backend} {m.precision} with {m.built_on()} at {m.built_at or '?'}")
            lines.append(f"rebuild     {m.build_command}")
        lines += [f"note        {note}" for note in self.notes]
        return "\n".join(lines)


def describe(
    path: str | Path, spec: ModelSpec | None = None, overrides: Mapping[str, Any] | None = None
) -> Description:
    """Describe the model file at `path`; `spec` / `overrides` are what the user gave (see resolve_spec).

    Raises:
        EngineError: no such file, an unknown kind, or an unreadable model or manifest.
        SpecError: a given spec field is invalid (missing fields are reported, not raised).
    """
    path = Path(path)
    if not path.exists():
        raise EngineError(f"no model at {path}; check the path")
    row = format_for_path(path)
    has_manifest = manifest_path(path).is_file() or row.kind == "tensorrt-engine"
    manifest = read_manifest(path) if has_manifest else None  # an engine without one fails, saying how to rebuild
    if row.runner == "onnxruntime":
        facts = read_onnx(path)
        base = spec or (manifest.spec if manifest else None) or spec_from_metadata(facts.metadata, path)
        resolved, missing = _try_resolve(facts, base, overrides or {})
        precision = manifest.precision if manifest else facts.precision
        return Description(path, row.kind, row.runner, precision, resolved, missing, facts.inputs, facts.outputs,
                           facts.opset, quantization_from_metadata(facts.metadata), manifest, _notes(facts, resolved))
    if manifest is not None:
        found = spec or manifest.spec
        found = found.replace(**overrides) if overrides else found
        return Description(path, row.kind, row.runner, manifest.precision, found, manifest=manifest)
    spec_path = (path if path.is_dir() else path.parent) / SPEC_FILENAME
    found = spec or (ModelSpec.load(spec_path) if spec_path.is_file() else None)
    overrides = dict(overrides or {})
    if found is not None:
        found = found.replace(**overrides)
    elif {"class_names", "input_height", "input_width"} <= set(overrides):
        found = ModelSpec(**overrides)
    missing = () if found else (f"a spec ({spec_path} is absent): pass --spec FILE, or --classes and --size",)
    return Description(path, row.kind, row.runner, "fp32", found, missing)


def resolve_spec(facts: OnnxFacts, base: ModelSpec | None, overrides: Mapping[str, Any]) -> ModelSpec:
    """The spec to run an ONNX model with: `base` (embedded or a file), flags over it where given,
    and for a model without one, what its graph tells (layout, size, head, task, activation).

    Raises:
        SpecError: fields are still missing (each named with its flag), or a value is invalid.
    """
    spec, missing = _try_resolve(facts, base, overrides)
    if spec is None:
        raise SpecError(
            f"{facts.path} carries no edgeseg spec and the flags do not complete one: missing "
            + "; ".join(missing) + ". Pass them (e.g. --classes road,background), or --spec FILE; "
            "`edgeseg spec MODEL.onnx ... -o OUT.onnx` writes them into the model once"
        )
    return spec


def _try_resolve(
    facts: OnnxFacts, base: ModelSpec | None, overrides: Mapping[str, Any]
) -> tuple[ModelSpec | None, tuple[str, ...]]:
    """The spec, or None and the fields still missing (each with its flag and why)."""
    fields: dict[str, Any] = base.to_dict() if base is not None else {}
    fields.update(overrides)
    missing: list[str] = []
    if len(facts.inputs) != 1:
        names = [t.name for t in facts.inputs]
        raise SpecError(
            f"{facts.path} has {len(facts.inputs)} inputs {names}; edgeseg runs models with one image input"
        )
    shape = facts.inputs[0].shape
    if "layout" not in fields:
        layout = _layout_of(shape)
        if layout:
            fields["layout"] = layout
        else:
            missing.append(f"layout (--layout NCHW|NHWC: input {facts.inputs[0].describe()} has no axis of 3 channels)")
    if "input_height" not in fields and fields.get("layout"):
        dims = shape[2:4] if fields["layout"] == "NCHW" else shape[1:3]
        if len(shape) == 4 and all(isinstance(d, int) for d in dims):
            fields["input_height"], fields["input_width"] = dims
        else:
            missing.append(f"size (--size HxW: the model's height and width are dynamic, {facts.inputs[0].describe()})")
    head_name = fields.get("output_name") or ""
    if head_name:
        facts.output(head_name)  # raises, naming the outputs there are
    head = facts.output(head_name) if head_name else (facts.outputs[0] if facts.outputs else None)
    if base is None and head is not None:
        channels = _channels_of(head.shape, fields.get("layout"))
        if "task" not in fields and channels == 1:
            fields["task"] = "binary"
        if "output" not in fields:
            fields["output"] = _activation(facts, head.name)
        if "class_names" not in fields:
            count = "2 names, background first (a 1-channel head)" if channels == 1 else (
                f"{channels} names, one per channel" if channels else "one name per output channel")
            missing.insert(0, f"classes (--classes A,B,...: {count} of head {head.name!r})")
    if missing:
        return None, tuple(missing)
    return ModelSpec(**fields), ()


def _layout_of(shape: tuple[Any, ...]) -> str | None:
    if len(shape) != 4:
        return None
    if shape[1] == 3 and shape[3] != 3:
        return "NCHW"
    if shape[3] == 3:
        return "NHWC"
    return None


def _channels_of(shape: tuple[Any, ...], layout: str | None) -> int | None:
    if len(shape) == 3:
        return 1  # (N, H, W): one channel, squeezed
    if len(shape) != 4:
        return None
    axes = (1, 3) if layout == "NCHW" else (3, 1)  # the input's layout first; outputs may differ
    return next((shape[axis] for axis in axes if isinstance(shape[axis], int)), None)


def _activation(facts: OnnxFacts, output_name: str) -> str:
    """"sigmoid" / "probabilities" when the head ends in that op, else "logits"."""
    return _ACTIVATION_OPS.get(facts.producers.get(output_name, ""), "logits")


def _notes(facts: OnnxFacts, spec: ModelSpec | None) -> tuple[str, ...]:
    notes = []
    if len(facts.outputs) > 1:
        chosen = spec.output_name if spec and spec.output_name else facts.outputs[0].name
        notes.append(f"{len(facts.outputs)} heads ({', '.join(t.name for t in facts.outputs)}); {chosen!r} drives "
                     "(--output NAME picks another; engines are built from the graph pruned to it)")
    dynamic = facts.inputs[0].dynamic_axes if facts.inputs else ()
    if dynamic:
        notes.append(f"input has dynamic axes {list(dynamic)}; build-engine fixes them from --size / --batch")
    return tuple(notes)


def _tensor_dict(tensor: TensorInfo) -> dict[str, Any]:
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": tensor.dtype}


def _triple(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def description_json(description: Description) -> str:
    return json.dumps(description.to_dict(), indent=2)
