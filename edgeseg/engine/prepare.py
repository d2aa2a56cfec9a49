"""Graph preparation before a build: fix dynamic input dims, prune to the head that drives.

`build_engine` runs these on the source ONNX once, so both builders (TensorRT and ONNX
Runtime) get the same finished model: static height and width (TensorRT then needs no
spatial profile, ONNX Runtime plans its memory once), and only the nodes the chosen head
needs (the other heads of a multi-head model cost no time). Needs the `onnx` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgeseg.artifact.onnxmeta import OnnxFacts, load_onnx_model, write_spec_metadata
from edgeseg.artifact.spec import ModelSpec

Log = Callable[[str], None]


def dims_to_fix(facts: OnnxFacts, spec: ModelSpec, batch: int | None) -> dict[int, int]:
    """Axis -> size for the input's dynamic dims: height and width from the spec, batch if given."""
    shape = facts.inputs[0].shape
    if len(shape) != 4:
        return {}
    h_axis, w_axis = (2, 3) if spec.layout == "NCHW" else (1, 2)
    fixed: dict[int, int] = {}
    if h_axis in facts.inputs[0].dynamic_axes or w_axis in facts.inputs[0].dynamic_axes:
        fixed[h_axis], fixed[w_axis] = spec.input_size
    if batch is not None and 0 in facts.inputs[0].dynamic_axes:
        fixed[0] = batch
    return fixed


def prepare_graph(
    source: Path, facts: OnnxFacts, spec: ModelSpec, batch: int | None, output: Path, log: Log
) -> Path:
    """Write `source` with fixed dims and pruned to the spec's head; returns `source` if nothing changes."""
    fixed = dims_to_fix(facts, spec, batch)
    prune = bool(spec.output_name) and len(facts.outputs) > 1
    if not fixed and not prune:
        return source
    import onnx

    model = load_onnx_model(source, load_weights=True)
    if fixed:
        tensor = next(v for v in model.graph.input if v.name == facts.inputs[0].name)
        for axis, size in fixed.items():
            dim = tensor.type.tensor_type.shape.dim[axis]
            dim.Clear()
            dim.dim_value = size
        old = facts.inputs[0].describe()
        new = "x".join(str(d.dim_value or d.dim_param) for d in tensor.type.tensor_type.shape.dim)
        reason = "height and width from the spec's size (--size)" + (", batch from --batch" if 0 in fixed else "")
        log(f"input: {old} has dynamic dims; fixed to {new} ({reason})")
    if prune:
        kept, total = prune_to_outputs(model, [spec.output_name])
        dropped = [t.name for t in facts.outputs if t.name != spec.output_name]
        log(f"head: {spec.output_name!r} drives; graph pruned to it ({kept} of {total} nodes kept, "
            f"head(s) {', '.join(dropped)} dropped)")
    write_spec_metadata(model, spec)
    onnx.save(model, str(output))
    return output


def prune_to_outputs(model: object, names: list[str]) -> tuple[int, int]:
    """Keep only the graph outputs `names` and the nodes and initializers they need (in place).

    Returns:
        (nodes kept, nodes before).
    """
    graph = model.graph  # type: ignore[attr-defined]
    total = len(graph.node)
    keep_outputs = [value for value in graph.output if value.name in names]
    del graph.output[:]
    graph.output.extend(keep_outputs)
    needed = set(names)
    kept = []
    for node in reversed(graph.node):  # ONNX nodes are topologically sorted
        if any(output in needed for output in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
            needed.update(_subgraph_inputs(node))
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    used_inits = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used_inits)
    produced = {output for node in kept for output in node.output} | {v.name for v in graph.input}
    value_info = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    return len(kept), total


def _subgraph_inputs(node: object) -> set[str]:
    """Names a node's subgraphs (If / Loop bodies) read from the outer graph."""
    names: set[str] = set()
    for attribute in node.attribute:  # type: ignore[attr-defined]
        graphs = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
        for graph in graphs:
            for inner in graph.node:
                names.update(inner.input)
    return names
