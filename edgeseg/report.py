"""The demo's summary: a plain-text table for the terminal and one self-contained HTML page.

Both are made from the stage records `edgeseg.demo` writes (plain dicts), so the page can be
rebuilt from a finished demo folder without running anything. Pictures are embedded (base64),
so `report.html` can be mailed or attached to a ticket as one file.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from edgeseg.fileio import atomic_path, atomic_write_text

Records = dict[str, dict[str, Any]]


# --- numbers in words -------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def _ms(value: Any) -> str:
    return f"{value:.2f} ms" if isinstance(value, (int, float)) else "-"


def _num(value: Any, fmt: str = ".1f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "-"


def summary_rows(records: Records) -> list[tuple[str, str]]:
    """(topic, result) pairs: what a newcomer wants to know after the demo."""
    rows: list[tuple[str, str]] = []
    train = records.get("train")
    if train:
        rows.append(("training", f"{train['model']}, {train['epochs']} epochs in {train['train_seconds'] / 60:.1f} min, "
                                 f"best validation {train['monitor']} {train['best']:.3f}"))
    evaluation = records.get("evaluate")
    if evaluation:
        rows.append(("float model", f"test mean IoU {_pct(evaluation['mean_iou'])} on {evaluation['images']} "
                                    "frames of unseen worlds"))
    export = records.get("export")
    if export:
        rows.append(("export", f"ONNX vs Keras max |diff| {export['max_abs_diff']:.2g}, "
                               f"argmax agreement {_pct(export['argmax_agreement'])}"))
    for result in (records.get("verify") or {}).get("engines", []):
        rows.append((f"INT8 parity ({Path(result['engine']).name})",
                     f"mean IoU {_pct(result['float_mean_iou'])} -> {_pct(result['engine_mean_iou'])} "
                     f"(drop {result['miou_drop_pp']:.2f} pp), pixel agreement {_pct(result['agreement'])}"))
    bench_rows = (records.get("bench") or {}).get("rows", [])
    if bench_rows:
        rows.append(("latency (batch 1)", "; ".join(
            f"{r['backend']} {r['precision']} {_ms(r['p50_ms'])}" for r in bench_rows)))
        speedup = _speedup(bench_rows)
        if speedup:
            rows.append(("INT8 speed-up", speedup))
    for mode in (records.get("sim") or {}).get("summary", []):
        rows.append((f"simulator {mode['mode']}",
                     f"{mode['collisions']} collisions in {mode['episodes']} episodes, "
                     f"{mode['distance_per_minute_m']:.1f} m per minute, mean speed {mode['mean_speed_mps']:.2f} m/s"))
    stream = records.get("stream")
    if stream:
        rows.append(("stream", f"{stream['frames']} frames of a synthetic drive -> {stream['video']}"))
    return rows


def _speedup(bench_rows: Sequence[dict[str, Any]]) -> str:
    """INT8 against float ONNX Runtime on the same backend, from the bench rows."""
    float_ms = next((r["p50_ms"] for r in bench_rows if r["backend"].startswith("onnxruntime") and r["precision"] == "fp32"), None)
    int8_ms = next((r["p50_ms"] for r in bench_rows if r["backend"].startswith("onnxruntime") and r["precision"] == "int8"), None)
    if not float_ms or not int8_ms:
        return ""
    return f"ONNX Runtime INT8 {float_ms / int8_ms:.2f}x faster than FP32 ({_ms(int8_ms)} vs {_ms(float_ms)})"


def summary_table(records: Records) -> str:
    """The summary as aligned plain text."""
    rows = summary_rows(records)
    if not rows:
        return "(no results)"
    width = max(len(topic) for topic, _ in rows)
    return "\n".join(f"{topic.ljust(width)}  {result}" for topic, result in rows)


# --- the page ---------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: .2em; }
table { border-collapse: collapse; margin: .8em 0; } td, th { border: 1px solid #ccc; padding: .3em .6em; }
th { background: #f2f2f2; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .5em; vertical-align: top; } figure img { max-width: 520px; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9em; } code { background: #f4f4f4; padding: 0 .2em; }
"""


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f"<td{' class=n' if i >= numeric_from else ''}>{html.escape(str(c))}</td>" for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(path: str | Path | None, caption: str, base: Path) -> str:
    """An embedded PNG/JPEG, or nothing when the file is missing."""
    if not path:
        return ""
    file = Path(path)
    if not file.is_absolute() and not file.exists():
        file = base / file
    if not file.is_file():
        return ""
    kind = "jpeg" if file.suffix.lower() in (".jpg", ".jpeg") else "png"
    data = base64.b64encode(file.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/{kind};base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _accuracy_section(records: Records, base: Path) -> str:
    verify = records.get("verify") or {}
    parts = ["<h2>Accuracy: float against INT8</h2>"]
    for result in verify.get("engines", []):
        deltas = result.get("per_class_delta_pp") or {}
        parts.append(f"<p>{verify.get('frames', '?')} held-out frames, <code>{html.escape(result['engine'])}</code></p>")
        parts.append(_table(("", "float", "INT8", "drop / agreement"), [
            ("mean IoU", _pct(result["float_mean_iou"]), _pct(result["engine_mean_iou"]),
             f"{result['miou_drop_pp']:.2f} pp"),
            ("pixel agreement", "", "", _pct(result["agreement"])),
        ]))
        if deltas:
            parts.append(_table(("class", "IoU change (pp)"),
                                [(name, _num(delta, "+.2f")) for name, delta in deltas.items()]))
        parts += [_figure(p, f"where float and INT8 disagree most: {Path(p).stem}", base)
                  for p in result.get("pictures", [])[:2]]
    return "\n".join(parts)


def _latency_section(records: Records, base: Path) -> str:
    bench = records.get("bench") or {}
    rows = bench.get("rows", [])
    if not rows:
        return ""
    table = _table(("model", "backend", "precision", "p50", "p95", "FPS", "peak memory"), [
        (Path(r["model"]).name, r["backend"], r["precision"], _ms(r["p50_ms"]), _ms(r["p95_ms"]),
         _num(r.get("fps"), ".0f"), f"{_num(r.get('peak_mib'), '.0f')} MiB") for r in rows
    ], numeric_from=3)
    return ("<h2>Latency on this machine (batch 1, end to end: preprocessing, inference, class map)</h2>"
            + table + _figure(bench.get("picture"), "median latency per backend and precision", base))


def _sim_section(records: Records, base: Path) -> str:
    sim = records.get("sim") or {}
    if not sim:
        return ""
    table = _table(("mode", "episodes", "collisions", "m per minute", "mean speed m/s", "min clearance m", "stopped"), [
        (m["mode"], m["episodes"], m["collisions"], _num(m["distance_per_minute_m"]), _num(m["mean_speed_mps"], ".2f"),
         _num(m["min_clearance_m"], ".2f"), _pct(m["stopped_fraction"])) for m in sim.get("summary", [])
    ])
    figures = "".join(_figure(p, f"{mode}: top-down trajectories (blue slow, red fast)", base)
                      for mode, p in sim.get("pictures", {}).items())
    return (f"<h2>Closed-loop simulator: the car sees through the INT8 engine</h2>"
            f"<p>{sim.get('episodes')} episodes of {sim.get('seconds_per_episode')} s per mode, the same worlds "
            "for every mode.</p>" + table + figures)


def _training_section(records: Records, base: Path) -> str:
    train = records.get("train") or {}
    evaluation = records.get("evaluate") or {}
    figures = [_figure(train.get("curves"), "training curves", base),
               _figure(train.get("samples"), "validation samples: image, truth, prediction", base)]
    figures += [_figure(p, f"evaluation: {label}", base) for label, p in (evaluation.get("pictures") or {}).items()]
    return "<h2>Training</h2>" + "".join(figures)


def _stream_section(records: Records, base: Path) -> str:
    stream = records.get("stream") or {}
    if not stream:
        return ""
    video = Path(stream["video"])
    link = video.name if video.parent == base else str(video)
    still = _figure(stream.get("still"), "a frame of the recorded drive (overlay and driving command)", base)
    return (f"<h2>Streaming</h2><p>{stream['frames']} frames of a synthetic drive through the INT8 engine and the "
            f"navigator: <a href=\"{html.escape(link)}\">{html.escape(video.name)}</a>, commands in "
            f"<code>{html.escape(Path(stream['commands']).name)}</code>.</p>{still}")


def render_html(records: Records, base: Path) -> str:
    """The whole page as a string."""
    summary = _table(("", "result"), summary_rows(records), numeric_from=2)
    total = sum(r.get("seconds", 0.0) for r in records.values())
    sections = [
        "<h2>Summary</h2>" + summary,
        _accuracy_section(records, base),
        _latency_section(records, base),
        _sim_section(records, base),
        _training_section(records, base),
        _stream_section(records, base),
    ]
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>edgeseg demo report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>edgeseg demo report</h1>"
        f"<p class=sub>{time.strftime('%Y-%m-%d %H:%M')} · stages took {total / 60:.1f} min in all · "
        "synthetic RC-car world, no download, no GPU needed</p>"
        + "\n".join(s for s in sections if s) + "</body></html>\n"
    )


def write_report(path: str | Path, records: Records, base: str | Path = ".") -> Path:
    """Write the page atomically; pictures are read relative to `base` when not found as given."""
    page = render_html(records, Path(base))
    atomic_write_text(path, page)
    return Path(path)


def latency_picture(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """A horizontal bar chart of median latency per model (matplotlib, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{Path(r['model']).name}\n{r['backend']} {r['precision']}" for r in rows]
    values = [r["p50_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.7 * len(rows)))
    bars = ax.barh(labels, values, color=["#888" if r["precision"] == "fp32" else "#2a7" for r in rows])
    ax.bar_label(bars, labels=[f"{v:.1f} ms" for v in values], padding=3)
    ax.invert_yaxis()
    ax.set_xlabel("median latency, batch 1 (ms)")
    ax.set_xlim(0, max(values) * 1.25)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
