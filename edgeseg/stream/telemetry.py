"""Telemetry for the streaming pipeline: per-stage latency percentiles, FPS, counters, logs.

Nothing here grows with the number of frames: latencies live in fixed-size ring buffers (the
percentiles are over the most recent `window` samples, count/mean/max over the whole run), frame
rates in bounded deques, and the per-frame JSON lines go straight to a file.

Thread-safe: the pipeline's capture, inference and output threads all report here, the main
thread prints the status line and the HTTP server reads snapshots.
"""

from __future__ import annotations

import collections
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.fileio import check_writable

# The stages measured for every frame, in pipeline order (seconds internally, ms in reports).
STAGES = (
    "capture",  # inside source.read() for the frame (for a camera, includes waiting for it)
    "queue",  # frame delivered -> the inference stage took it (waiting in the slot)
    "preprocess",  # resize and normalise (Segmenter)
    "infer",  # the model's forward pass
    "postprocess",  # argmax and resize back to the frame
    "handoff",  # segmented -> the navigation stage took it
    "nav",  # Navigator.step
    "output",  # drawing the view and writing every view sink (window, recording, server, folder)
    "capture_to_command",  # frame read -> command sent (or result ready without navigation)
    "capture_to_output",  # frame read -> view written by every sink
)
# Counters, all monotonically increasing.
COUNTERS = (
    "captured",  # frames read from the source
    "processed",  # frames segmented
    "output",  # frames drawn and written to the view sinks
    "dropped_capture",  # stale frames replaced before inference could take them
    "dropped_output",  # results replaced before the output stage could take them
    "corrupt",  # frames or files the source skipped as unreadable
    "reconnects",  # successful reconnections of a live source
    "size_changes",  # frame size changes from the source
    "failed_outputs",  # side outputs (recording, telemetry file, view) disabled after failing
    "stale_stops",  # stop commands sent because no fresh frame came within the command timeout
)
PERCENTILES = (50, 95, 99)


class LatencyWindow:
    """Latency samples of one stage: a ring buffer of the last `size` for percentiles, plus totals."""

    def __init__(self, size: int = 2048) -> None:
        if size < 1:
            raise EdgesegError(f"latency window size must be at least 1, got {size}")
        self._ring = np.zeros(size, dtype=np.float64)
        self._next = 0
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self._ring[self._next] = seconds
        self._next = (self._next + 1) % len(self._ring)
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    @property
    def recent(self) -> np.ndarray:
        """The samples in the window (a copy, unordered)."""
        return self._ring[: min(self.count, len(self._ring))].copy()

    def percentiles_ms(self, percentiles: Iterable[int] = PERCENTILES) -> dict[str, float]:
        """{"p50": ms, ...} over the window; empty when there are no samples."""
        samples = self.recent
        if not len(samples):
            return {}
        values = np.percentile(samples * 1000.0, list(percentiles))
        return {f"p{p}": float(v) for p, v in zip(percentiles, values)}

    @property
    def mean_ms(self) -> float:
        return 1000.0 * self.total / self.count if self.count else 0.0


class RateMeter:
    """Events per second over the last `window_s` seconds (at most `max_events` remembered)."""

    def __init__(self, window_s: float = 2.0, max_events: int = 512) -> None:
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque(maxlen=max_events)

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.perf_counter() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        times = [t for t in self._times if now - t <= self.window_s]
        if len(times) < 2:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0


class Telemetry:
    """Latencies, rates, counters and the latest command of one streaming run.

    Args:
        jsonl_path: write one JSON object per frame to this file (`--telemetry`); checked now, so
            an unwritable path fails before the run, and created by `start()`, so a run that
            cannot start leaves no empty file.
        window: samples per stage kept for percentiles.
    """

    def __init__(self, jsonl_path: str | Path | None = None, window: int = 2048) -> None:
        self._lock = threading.Lock()
        self.latency = {stage: LatencyWindow(window) for stage in STAGES}
        self.counters = {name: 0 for name in COUNTERS}
        self.rates = {name: RateMeter() for name in ("captured", "processed", "output")}
        self.info: dict[str, Any] = {}
        self.latest: dict[str, Any] | None = None
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.jsonl_path = check_writable(jsonl_path, "telemetry") if jsonl_path else None
        self._jsonl: IO[str] | None = None
        self._jsonl_failed = False

    def start(self) -> None:
        """Create the JSON lines file, if one was asked for."""
        if self.jsonl_path is None or self._jsonl is not None or self._jsonl_failed:
            return
        try:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.jsonl_path, "w", encoding="utf-8")
        except OSError as err:
            raise EdgesegError(
                f"cannot write telemetry to {self.jsonl_path}: {err.strerror}; choose a writable path"
            ) from None

    # -- reporting from the pipeline

    def add_timing(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.latency[stage].add(seconds)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount
            if name in self.rates:
                self.rates[name].tick()

    def set_counter(self, name: str, value: int) -> None:
        """Set a counter another component keeps (e.g. the source's corrupt-frame count)."""
        with self._lock:
            self.counters[name] = value

    def set_latest(self, latest: dict[str, Any]) -> None:
        """The newest processed frame's command and index, for the status line and /status.json."""
        with self._lock:
            self.latest = latest

    def frame(self, record: dict[str, Any]) -> None:
        """Write one frame's record as a JSON line (if a telemetry file was given).

        Raises:
            EdgesegError: the file cannot be written (disk full); raised once, then the file is
                closed and later records are dropped, so the caller can report it and go on.
        """
        if self._jsonl is None and self.jsonl_path is not None and self.finished is None:
            self.start()  # a caller that never started the run
        if self._jsonl is None:
            return
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if self._jsonl is None:
                return
            try:
                self._jsonl.write(line + "\n")
            except OSError as err:
                self._drop_file()
                raise EdgesegError(f"cannot write telemetry to {self.jsonl_path}: {err.strerror}") from None

    def _drop_file(self) -> None:
        jsonl, self._jsonl, self._jsonl_failed = self._jsonl, None, True
        with contextlib.suppress(OSError):  # what is buffered cannot be written either
            jsonl.close()  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop the clock and close the JSON lines file.

        Raises:
            EdgesegError: the last buffered lines cannot be written (disk full).
        """
        with self._lock:
            if self.finished is None:
                self.finished = time.perf_counter()
            if self._jsonl is not None:
                try:
                    self._jsonl.close()
                except OSError as err:
                    self._jsonl_failed = True
                    raise EdgesegError(f"cannot write telemetry to {self.jsonl_path}: {err.strerror}") from None
                finally:
                    self._jsonl = None

    # -- reading

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started

    def snapshot(self) -> dict[str, Any]:
        """Everything as plain JSON-ready values (the /status.json body)."""
        with self._lock:
            elapsed = self.elapsed
            latency = {}
            for stage, window in self.latency.items():
                if window.count:
                    latency[stage] = {**window.percentiles_ms(), "mean": window.mean_ms,
                                      "max": window.max * 1000.0, "count": window.count}
            live = self.finished is None
            fps = {name: (meter.rate() if live else 0.0) for name, meter in self.rates.items()}
            overall = self.counters["processed"] / elapsed if elapsed > 0 else 0.0
            return {
                "running": live,
                "elapsed_s": elapsed,
                "fps": fps,
                "fps_overall": overall,
                "counters": dict(self.counters),
                "latency_ms": latency,
                "latest": dict(self.latest) if self.latest else None,
                "info": dict(self.info),
            }

    def status_line(self) -> str:
        """One short line for the terminal: FPS, latency, drops and the current command."""
        snap = self.snapshot()
        lat = snap["latency_ms"]
        counters = snap["counters"]

        def p(stage: str, q: str = "p50") -> str:
            return f"{lat[stage][q]:.0f}" if stage in lat else "-"

        parts = [
            f"{snap['fps']['processed']:5.1f} fps",
            f"infer {p('infer')} ms",
            f"capture->cmd p50 {p('capture_to_command')} p95 {p('capture_to_command', 'p95')} ms",
            f"dropped {counters['dropped_capture'] + counters['dropped_output']}",
        ]
        if counters["corrupt"]:
            parts.append(f"corrupt {counters['corrupt']}")
        if counters["reconnects"]:
            parts.append(f"reconnects {counters['reconnects']}")
        latest = snap["latest"] or {}
        if "steering" in latest:
            state = "STOP" if latest["stop"] else "go"
            parts.append(f"steer {latest['steering']:+.2f} thr {latest['throttle']:.2f} {state}")
        return " | ".join(parts)

    def summary_table(self) -> str:
        """The end-of-run report: a latency table per stage and the counters."""
        snap = self.snapshot()
        counters = snap["counters"]
        rows = [f"{'stage':<20}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}{'count':>8}"]
        for stage in STAGES:
            stats = snap["latency_ms"].get(stage)
            if not stats:
                continue
            rows.append(
                f"{stage:<20}{stats['p50']:>9.1f}{stats['p95']:>9.1f}{stats['p99']:>9.1f}"
                f"{stats['mean']:>9.1f}{stats['max']:>9.1f}{stats['count']:>8d}"
            )
        elapsed = snap["elapsed_s"]
        rows.append(
            f"{counters['processed']} frames processed in {elapsed:.1f} s ({snap['fps_overall']:.1f} fps); "
            f"captured {counters['captured']}, written {counters['output']}, dropped "
            f"{counters['dropped_capture']} before inference and {counters['dropped_output']} before output, "
            f"corrupt {counters['corrupt']}, reconnects {counters['reconnects']}, size changes "
            f"{counters['size_changes']}"
            + (f", stale stops {counters['stale_stops']}" if counters["stale_stops"] else "")
            + (f", failed outputs {counters['failed_outputs']}" if counters["failed_outputs"] else "")
        )
        return "\n".join(rows)


class StatusLine:
    """Rewrites one status line on a terminal (carriage return) at most every `interval_s`.

    Args:
        enabled: None: only when `stream` is a terminal; True/False forces it.
    """

    def __init__(self, telemetry: Telemetry, stream: IO[str] | None = None, enabled: bool | None = None,
                 interval_s: float = 0.5) -> None:
        self.telemetry = telemetry
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled if enabled is not None else bool(isatty and isatty())
        self.interval_s = interval_s
        self._last = 0.0
        self._width = 0

    def update(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        line = self.telemetry.status_line()
        padding = " " * max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + padding)
        self.stream.flush()

    def finish(self) -> None:
        """End the status line so later output starts on a fresh line."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
