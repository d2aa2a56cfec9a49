"""Where the time goes, per op type, in float and INT8: and keeping in float what is faster there.

An INT8 model is only worth shipping if it is faster than the float one on the machine that
runs it. Quantized convolutions are 2-4x faster on a VNNI CPU, but every op without a good
INT8 kernel (PRelu with per-channel slopes, HardSwish) costs a DequantizeLinear and a
QuantizeLinear over its whole tensor, and some INT8 kernels are slower than their float
twins (QLinearSoftmax here). So, at calibration time:

* `profile_ops` runs a model under ONNX Runtime's profiler and sums each op type's kernel
  time per run (op types as ONNX Runtime runs them: QLinearConv, QuantizeLinear, ...).
* `choose_float_ops` tries keeping each op type that still costs time in the INT8 model in
  float, slowest first, and keeps that choice only if the whole model gets measurably faster
  in two timings in a row (`kernel_latency`: the sum of each node's fastest kernel time, which
  holds on a loaded machine where wall-clock minima swung 2-3x).
* `OpAccount` is the result: time by op type in float and INT8, which nodes stay in float
  and why, the measured speed-up, and a plain verdict when INT8 does not pay. It is stored in
  the quantized model's `edgeseg.quantization` metadata (`read_account`), so `inspect`,
  `build-engine` and `bench` can show it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.artifact.onnxmeta import ort_session

PROFILE_RUNS = 10
MAX_TRIALS = 4  # op types tried in float per calibration (each costs a quantization and a timing)
MIN_GAIN = 0.05  # a float op type must make the whole model this much faster to be kept,
MIN_GAIN_MS = 0.2  # and by this much: below it the choice would follow timer noise
PAYS_RATIO = 1.05  # INT8 below this speed-up over FP32 does not pay for its accuracy cost
# ops INT8 is for: never tried in float
QUANTIZE_ALWAYS = ("Conv", "Gemm")  # ConvTranspose is tried: ONNX Runtime's CPU has no INT8 kernel for it
MIN_SHARE = 0.02  # op types under this share of the INT8 time are not worth a trial
# ops that only move or reshape bytes: keeping them in float saves nothing
SHAPE_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Shape", "Gather", "Slice",
             "Constant", "Identity", "Split", "Pad", "Cast")
QDQ_ROW = "Quantize/Dequantize"

Timer = Callable[[dict[str, Path], np.ndarray], dict[str, float]]


def float_op_type(op_type: str) -> str:
    """The float op an INT8 kernel stands for: QLinearConv -> Conv; Q/DQ are their own row."""
    if op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
        return QDQ_ROW
    if op_type.startswith("QLinear"):
        return op_type[len("QLinear"):]
    return {"QGemm": "Gemm", "ConvInteger": "Conv", "MatMulInteger": "MatMul", "NhwcMaxPool": "MaxPool",
            "FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul", "Upsample": "Resize",
            "MatMulIntegerToFloat": "MatMul", "DynamicQuantizeMatMul": "MatMul",
            "ReorderInput": "layout", "ReorderOutput": "layout"}.get(
        op_type, op_type)


def profile_ops(path: Path, batch: np.ndarray, runs: int = PROFILE_RUNS, threads: int = 1) -> dict[str, float]:
    """Milliseconds of each op type (as ONNX Runtime runs it) per run, from its profiler.

    Each node counts with its fastest run, on one thread: background load only ever adds time,
    and a single thread never waits for a sibling the load has descheduled, so on a shared
    machine the sum of fastest kernels is the stable estimate of a quiet run (with 2 threads
    at load 6 the same model's sum still moved 12 -> 19 ms between two calls).
    """
    with tempfile.TemporaryDirectory(prefix="edgeseg-profile-") as folder:
        session = ort_session(path, threads=threads, enable_profiling=True,
                              profile_file_prefix=str(Path(folder) / "profile"))
        feed = {session.get_inputs()[0].name: batch}
        for _ in range(runs + 2):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    # the profiler cannot start late: count only the kernels inside the last `runs` runs
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run"][-runs:]
    fastest: dict[str, tuple[str, float]] = {}  # node -> (op type, its fastest run in ms)
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if any(start <= event["ts"] <= end for start, end in spans):
            name, ms = event["name"], event["dur"] / 1000
            fastest[name] = (event["args"]["op_name"], min(ms, fastest.get(name, ("", ms))[1]))
    per_op: dict[str, float] = {}
    for op, ms in fastest.values():
        per_op[op] = per_op.get(op, 0.0) + ms
    return dict(sorted(per_op.items(), key=lambda item: -item[1]))


@dataclass
class OpAccount:
    """Where an INT8 model's time goes against its float model's, on the machine that calibrated.

    Attributes:
        float_ms, int8_ms: ms per run by op type, float and INT8 model (ONNX Runtime profiler,
            each node's fastest of PROFILE_RUNS runs),
            ONNX Runtime's kernels merged into the op they run (QLinearConv and FusedConv count
            as Conv); quantize/dequantize nodes have their own row, NCHWc reorders "layout".
        float_latency_ms, int8_latency_ms: whole-model latency (`kernel_latency`).
        float_nodes: op type -> (node count, why they stay in float).
        trials: op types tried in float: (op type, INT8 ms with it quantized, with it in float, kept).
    """

    float_ms: dict[str, float]
    int8_ms: dict[str, float]
    float_latency_ms: float
    int8_latency_ms: float
    float_nodes: dict[str, tuple[int, str]] = field(default_factory=dict)
    trials: list[tuple[str, float, float, bool]] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.float_latency_ms / self.int8_latency_ms if self.int8_latency_ms > 0 else 0.0

    @property
    def pays(self) -> bool:
        return self.speedup >= PAYS_RATIO

    def verdict(self) -> str:
        """One line: the speed-up, or a plain statement that INT8 does not pay here."""
        timing = (f"FP32 {self.float_latency_ms:.1f} ms, INT8 {self.int8_latency_ms:.1f} ms: fastest kernels summed, "
                  "1 thread, on this machine")
        if self.pays:
            return f"INT8 is {self.speedup:.2f}x faster than FP32 ({timing})"
        return (f"INT8 is NOT faster than FP32 here ({self.speedup:.2f}x: {timing}); use the float model "
                "(`edgeseg build-engine` without --int8) unless the target CPU differs")

    def lines(self) -> list[str]:
        """The account as aligned text lines for the CLI."""
        rows = list(dict.fromkeys([*self.float_ms, *self.int8_ms]))
        rows.sort(key=lambda op: -max(self.float_ms.get(op, 0.0), self.int8_ms.get(op, 0.0)))
        out = ["op type              FP32 ms   INT8 ms  (ONNX Runtime profiler: fastest run per node, 1 thread)"]
        for op in rows:
            fp, q = self.float_ms.get(op), self.int8_ms.get(op)
            if max(fp or 0.0, q or 0.0) < 0.005:
                continue
            note = f"  {self.float_nodes[op][0]} in float: {self.float_nodes[op][1]}" if op in self.float_nodes else ""
            out.append(f"  {op:<18}{_ms(fp):>8}  {_ms(q):>8}{note}")
        out.append(f"  {'total':<18}{sum(self.float_ms.values()):>8.2f}  {sum(self.int8_ms.values()):>8.2f}")
        shown = set(rows)
        for op, (count, why) in self.float_nodes.items():
            if op not in shown:
                out.append(f"  {count} {op} node(s) in float: {why}")
        for op, before, after, kept in self.trials:
            out.append(f"  tried {op} in float: INT8 {before:.2f} -> {after:.2f} ms, {'kept' if kept else 'not kept'}")
        out.append(self.verdict())
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["float_nodes"] = {op: list(v) for op, v in self.float_nodes.items()}
        data["trials"] = [list(t) for t in self.trials]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OpAccount":
        return cls(
            float_ms={str(k): float(v) for k, v in data["float_ms"].items()},
            int8_ms={str(k): float(v) for k, v in data["int8_ms"].items()},
            float_latency_ms=float(data["float_latency_ms"]),
            int8_latency_ms=float(data["int8_latency_ms"]),
            float_nodes={str(k): (int(v[0]), str(v[1])) for k, v in data.get("float_nodes", {}).items()},
            trials=[(str(t[0]), float(t[1]), float(t[2]), bool(t[3])) for t in data.get("trials", [])],
        )


def kernel_latency(paths: dict[str, Path], sample: np.ndarray) -> dict[str, float]:
    """Each model's latency as the sum of its nodes' fastest kernel times (`profile_ops`).

    Wall-clock timing on a shared 2-core machine swung 2-3x between trials of the same model
    (load 4-6), and decided trials by the load; the fastest run of each kernel barely moves.
    """
    return {key: sum(profile_ops(path, sample).values()) for key, path in paths.items()}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def by_float_op(per_op: dict[str, float]) -> dict[str, float]:
    """Merge an INT8 profile's op types into their float equivalents (QLinearConv -> Conv)."""
    merged: dict[str, float] = {}
    for op, ms in per_op.items():
        key = float_op_type(op)
        merged[key] = merged.get(key, 0.0) + ms
    return merged


def quantized_ops(model: Any, float_nodes: Sequence[str] = ()) -> dict[str, int]:
    """How many nodes of each op type run on INT8 inputs: fed by a DequantizeLinear (Q/DQ), or QLinear*.

    `float_nodes` (kept in float: a DequantizeLinear may still feed them) are not counted. For
    the TensorRT target this is where Q/DQ sits, i.e. which layers TensorRT runs in INT8.
    """
    dq_outputs = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    skip = set(float_nodes)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        op = float_op_type(node.op_type)
        if node.name in skip:
            continue
        if op != QDQ_ROW and (op != node.op_type or dq_outputs & set(node.input)):
            counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def account_from_metadata(metadata: dict[str, str]) -> OpAccount | None:
    """The per-op account in a model's quantization record (`edgeseg.quantization`), or None (for `inspect`)."""
    from edgeseg.artifact.onnxmeta import quantization_from_metadata

    record = quantization_from_metadata(metadata) or {}
    try:
        return OpAccount.from_dict(record["op_account"]) if "op_account" in record else None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def read_account(path: str | Path) -> OpAccount | None:
    """The per-op account an `edgeseg calibrate` model (or the CPU engine built from it) carries."""
    from edgeseg.artifact.onnxmeta import read_metadata

    return account_from_metadata(read_metadata(path))


# --------------------------------------------------------------------------------------------
# Keeping in float what is faster in float


@dataclass
class FloatChoice:
    model: Path  # the INT8 model chosen
    float_nodes: dict[str, str]  # node name -> why it stays in float (this search's nodes only)
    account: OpAccount


def choose_float_ops(
    float_model: Path,
    candidate: Path,
    quantize: Callable[[Sequence[str], str], Path],
    graph: Any,
    sample: np.ndarray,
    fixed_float: dict[str, str],
    timer: Timer,
    profile: Callable[[Path, np.ndarray], dict[str, float]] = profile_ops,
    max_trials: int = MAX_TRIALS,
    min_gain: float = MIN_GAIN,
) -> FloatChoice:
    """Keep in float each op type whose INT8 form makes the model slower; then account for it.

    Args:
        float_model: the model as a user would run it in FP32.
        candidate: the INT8 model with only `fixed_float` in float.
        quantize: (nodes to keep in float besides `fixed_float`, file name) -> INT8 model.
        graph: the prepared float onnx.ModelProto the INT8 models are quantized from.
        sample: one input batch.
        fixed_float: node name -> reason, kept in float whatever the timing says.
        timer: {key: model} -> {key: ms}, e.g. `kernel_latency`.
        profile: `profile_ops`-like.
    """
    nodes_by_type: dict[str, list[str]] = {}
    for node in graph.graph.node:
        if node.name not in fixed_float:
            nodes_by_type.setdefault(node.op_type, []).append(node.name)
    int8_profile = by_float_op(profile(candidate, sample))
    total = sum(int8_profile.values())
    tried = [op for op in sorted(int8_profile, key=lambda op: -int8_profile[op])
             if op in nodes_by_type and op not in QUANTIZE_ALWAYS and op not in SHAPE_OPS
             and int8_profile[op] >= MIN_SHARE * total][:max_trials]
    chosen, float_nodes, trials = candidate, {}, []
    current_ms = None
    for op in tried:
        names = nodes_by_type[op]
        trial = quantize([*float_nodes, *names], f"float-{op}.onnx")
        def faster() -> tuple[bool, dict[str, float]]:
            timing = timer({"current": chosen, "trial": trial}, sample)
            return timing["trial"] < min(timing["current"] * (1 - min_gain), timing["current"] - MIN_GAIN_MS), timing

        kept, timing = faster()
        if kept:  # a load spike during one timing must not decide: the gain has to show twice
            kept, timing = faster()
        current_ms = timing["current"]
        trials.append((op, current_ms, timing["trial"], kept))
        if kept:
            chosen = trial
            float_nodes.update({name: f"faster in float (measured {timing['trial']:.2f} vs {current_ms:.2f} ms)"
                                for name in names})
    timing = timer({"fp32": float_model, "int8": chosen}, sample)
    reasons = {**fixed_float, **float_nodes}
    types = {node.name: node.op_type for node in graph.graph.node}
    groups: dict[str, list[str]] = {}
    for name, why in reasons.items():
        groups.setdefault(types.get(name, "?"), []).append(why.split(" (measured")[0])
    summary = {op: (len(whys), "; ".join(dict.fromkeys(whys))) for op, whys in groups.items()}
    account = OpAccount(
        float_ms=by_float_op(profile(float_model, sample)),
        int8_ms=by_float_op(profile(chosen, sample)) if chosen != candidate or not trials else int8_profile,
        float_latency_ms=timing["fp32"], int8_latency_ms=timing["int8"],
        float_nodes=summary, trials=trials,
    )
    return FloatChoice(chosen, float_nodes, account)
