"""The streaming pipeline: capture, inference, navigation and output threads, newest frame wins.

    source ──▶ [capture] ──slot──▶ [inference] ──slot──▶ [navigation] ──slot──▶ [output]
               source.read()       segmenter.seg()       navigator.step()       render_view()
                                                          command sinks          window, recording,
                                                                                 server, frame folder

Between the stages sits a single-slot mailbox (`LatestSlot`), never a queue: for a live source
(camera, network stream) a new frame replaces one the next stage has not taken yet, and the
replaced frame is counted as dropped, so the robot always acts on the newest picture and memory
never grows. For files, folders and the non-real-time synthetic drive nothing is dropped: the
capture waits for the slot instead (`PipelineConfig.drop_stale` overrides either way).
Such a source is read just in time (`PipelineConfig.pace_reads`, the default): once inference
has taken the previous frame, and timed (from the recent read and inference times, medians) to
end about when inference is ready for it, so a frame barely waits and its command reflects the
world as it is now. Read ahead instead (`pace_reads=False`, `edgeseg stream --read-ahead`), the
next frame waits in the slot while the current one is inferred: a few percent more throughput
for offline work, at up to two inference times of capture-to-command latency.

Navigation and commands have a thread of their own: the inference thread hands a segmented frame
over and takes the next frame at once, so the model is never idle while the navigator and the
command sinks run (on another core, since ONNX Runtime and OpenCV release the GIL), and a command
never waits for drawing or video encoding. Every segmented frame gets its command: the inference
thread waits for the navigation thread rather than drop a frame there (navigation is far cheaper
than inference, so it never waits long). Every frame carries its `time.perf_counter()` capture
timestamp, from which capture-to-command and capture-to-output latencies are measured.

The pipeline closes its sinks when the run ends (finalising recordings) and aborts a sink that
failed; the source and the segmenter belong to the caller. It installs no signal handlers: the
CLI does that (in the main thread) and calls `stop()`.

Safety (docs/streaming.md, "Safety"): every way a run ends, the command sinks get a final stop
line (`kind: "final"`, steering 0, throttle 0, stop true, the reason), after the last frame's
command; while no fresh frame arrives (a stalled or reconnecting camera, a stuck model) a
watchdog thread sends a stop line (`kind: "stale"`) every `command_timeout_s`, so the commands
stream never goes quiet for much longer than that (at most 1.2 x) while the run lives. A view sink or the telemetry
file that fails (disk full, a window error) is reported once through `warn`, disabled and
counted (`failed_outputs`), and driving goes on; a command sink that fails stops the run, since
the car can no longer be told what to do.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Protocol, Sequence, TypeVar

import numpy as np

import cv2

from edgeseg.errors import EdgesegError
from edgeseg.sources import Read, ReadStatus, Source
from edgeseg.stream.sinks import FINAL_STOP, STALE_STOP, FrameResult, Sink, StopRequested, check_view, render_view
from edgeseg.stream.telemetry import Telemetry

T = TypeVar("T")
logger = logging.getLogger(__name__)

# Why a run ended (RunSummary.reason).
END_OF_STREAM = "end of stream"
MAX_FRAMES = "max frames reached"
STOPPED = "stopped"
SOURCE_FAILED = "source failed"
FAILED = "failed"
COMMANDS_FAILED = "commands output failed"
# What a side output can fail with in the world (full disk, lost display): reported, not fatal.
# Anything else is a bug and stops the run with its traceback.
OUTPUT_ERRORS = (OSError, EdgesegError, cv2.error)

THREAD_EXIT_S = 5.0  # how long join() waits for a stage thread after the run ended
PACE_WINDOW = 16  # recent frames whose read and inference times pace the reads (pace_reads)
PACE_MARGIN_S = 0.0002  # a paced read aims to end this long before inference is ready for the frame


class LatestSlot(Generic[T]):
    """A one-item mailbox between two threads: `put` replaces, `put_wait` waits, `get` takes.

    Holds at most one item, so nothing can pile up between stages.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False

    def put(self, item: T) -> T | None:
        """Store `item`, replacing an untaken one; returns the replaced item (a dropped frame) or None."""
        with self._cond:
            replaced = self._item if self._full else None
            self._item, self._full = item, True
            self._cond.notify_all()
            return replaced

    def put_wait(self, item: T, cancelled: threading.Event, poll_s: float = 0.05) -> bool:
        """Store `item` once the slot is empty; False (not stored) if `cancelled` is set or the slot closed."""
        with self._cond:
            while self._full and not self._closed and not cancelled.is_set():
                self._cond.wait(poll_s)
            if self._closed or cancelled.is_set():
                return False
            self._item, self._full = item, True
            self._cond.notify_all()
            return True

    def wait_empty(self, cancelled: threading.Event, poll_s: float = 0.05) -> bool:
        """Wait until the slot is empty; False if `cancelled` is set or the slot closed meanwhile."""
        with self._cond:
            while self._full and not self._closed and not cancelled.is_set():
                self._cond.wait(poll_s)
            return not (self._closed or cancelled.is_set())

    def get(self, timeout: float) -> T | None:
        """Take the item, waiting up to `timeout` seconds; None if there is none."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more puts: a taker drains the last item, then sees `finished`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and not self._full


class SegmenterLike(Protocol):
    """What the pipeline needs from `edgeseg.runtime.Segmenter` (tests may pass a fake)."""

    @property
    def spec(self) -> Any: ...

    def seg(self, frame: np.ndarray) -> Any: ...


class NavigatorLike(Protocol):
    config: Any

    def step(self, class_map: np.ndarray) -> Any: ...


@dataclass(frozen=True)
class PipelineConfig:
    """How a run draws and when it stops.

    Attributes:
        view: "overlay", "mask" or "side" (see `render_view`).
        alpha: weight of the class colours in the overlay view.
        legend: draw the class legend.
        max_frames: stop after this many frames were segmented (None: until the stream ends).
        drop_stale: drop frames the next stage has not taken yet (True) or wait for it (False);
            None: drop for live sources only.
        read_timeout_s: how long one source read may wait before the capture thread checks for stop.
        pace_reads: when frames are not dropped, read each frame just in time for inference
            (True) or read the next one while the current one is inferred (False: a little more
            throughput, much more capture-to-command latency; see the module notes). Live
            sources deliver at their own pace and ignore it.
        command_timeout_s: the longest the command sinks go without a line: when no fresh
            frame's command was sent for this long, a stale stop is sent (and repeated as long
            as it lasts). 0 turns the watchdog off. Set it above the model's frame time.
    """

    view: str = "overlay"
    alpha: float = 0.5
    legend: bool = True
    max_frames: int | None = None
    drop_stale: bool | None = None
    read_timeout_s: float = 0.2
    pace_reads: bool = True
    command_timeout_s: float = 0.5

    def __post_init__(self) -> None:
        check_view(self.view, self.alpha)
        if self.max_frames is not None and self.max_frames < 1:
            raise EdgesegError(f"max frames must be at least 1, got {self.max_frames}")
        if not 0 <= self.command_timeout_s < float("inf"):
            raise EdgesegError(f"the command timeout must be 0 (off) or more seconds, got {self.command_timeout_s}")


@dataclass
class RunSummary:
    """How a run went.

    Attributes:
        reason: why it ended (END_OF_STREAM, MAX_FRAMES, STOPPED or a stop reason, SOURCE_FAILED,
            COMMANDS_FAILED); the final stop command carried it.
        error: why the run failed (the CLI exits 1): the source failed for good or delivered no
            frame at all, or the commands output failed; None otherwise.
        counters: the telemetry counters (captured, processed, output, dropped_*, corrupt, ...).
        elapsed_s: run time.
        table: the telemetry summary table.
        sinks: one line per sink that reports what it wrote.
        failures: one line per side output that failed and was disabled (the CLI exits 1).
        detail: what the source said when it ended (e.g. a video that ended before its
            container's frame count), or "".
    """

    reason: str
    error: str | None
    counters: dict[str, int]
    elapsed_s: float
    table: str
    sinks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures

    @property
    def processed(self) -> int:
        return self.counters["processed"]

    @property
    def dropped(self) -> int:
        return self.counters["dropped_capture"] + self.counters["dropped_output"]


@dataclass(eq=False)
class _Captured:
    read: Read
    capture_s: float


@dataclass(eq=False)
class _Segmented:
    read: Read
    segmentation: Any
    timings: dict[str, float]
    segmented_at: float  # time.perf_counter() when seg() returned


class StreamPipeline:
    """Runs a segmenter (and optionally a navigator) on a source, feeding sinks, in four threads.

    Args:
        source: an opened `Source`.
        segmenter: an opened `Segmenter` (anything with `.spec` and `.seg(frame)`).
        navigator: a `Navigator`, or None to stream without driving commands.
        sinks: outputs; those with `needs_view` get the drawn view on the output thread, the
            others (commands) get each result on the navigation thread.
        config: `PipelineConfig`.
        telemetry: where timings and counters go (a new one if None).
        warn: receives one line when a side output fails (default: this module's logger).
    """

    def __init__(
        self,
        source: Source,
        segmenter: SegmenterLike,
        navigator: NavigatorLike | None = None,
        sinks: Sequence[Sink] = (),
        config: PipelineConfig = PipelineConfig(),
        telemetry: Telemetry | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.segmenter = segmenter
        self.navigator = navigator
        # Safe mode drives only on floor the model is confident about (NavConfig.min_free_probability),
        # so its frames are segmented with class probabilities, as `edgeseg sim` does.
        self._with_probabilities = navigator is not None and navigator.config.min_free_probability > 0.0
        self.sinks = list(sinks)
        self.config = config
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.drop_stale = config.drop_stale if config.drop_stale is not None else bool(source.live)
        self._command_sinks = [sink for sink in self.sinks if not sink.needs_view]
        self._view_sinks = [sink for sink in self.sinks if sink.needs_view]
        if self._command_sinks and navigator is None:
            names = ", ".join(sink.name for sink in self._command_sinks)
            raise EdgesegError(f"{names} need navigation commands; enable navigation (drop --no-nav)")
        self._max_heading = float(getattr(getattr(navigator, "config", None), "max_heading", 0.8))
        self._frames: LatestSlot[_Captured] = LatestSlot()
        self._segmented: LatestSlot[_Segmented] = LatestSlot()
        self._results: LatestSlot[FrameResult] = LatestSlot()
        self._stop_capture = threading.Event()  # capture ends; later stages drain what they hold
        self._abort = threading.Event()  # every stage ends at once
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._source_error: str | None = None
        self._error: BaseException | None = None
        self._failed_stage = ""
        self._failed_sinks: set[int] = set()  # aborted at the end: their output is not trusted
        self._disabled_sinks: set[int] = set()  # side outputs that failed: closed at the end
        self._failures: list[str] = []
        self._warn = warn or logger.warning
        self._end_detail = ""
        # The command sinks: written by the navigation thread, the watchdog and join(); a lock per
        # sink keeps its lines whole and in order, and one sink stuck in a write cannot hold up the others.
        self._command_locks = {id(sink): threading.Lock() for sink in self._command_sinks}
        self._ended_sinks: set[int] = set()  # got the final stop: nothing more is sent to them
        self._writing_since: dict[int, float] = {}  # sinks inside a write, since when (monotonic)
        self._commands_done = False
        self._commands_error: str | None = None
        self._last_frame = -1  # source index of the last frame whose command was sent
        self._last_frame_at = time.monotonic()  # when it was sent (or the run started)
        self._last_line_at = time.monotonic()  # when any command line was sent
        self._watchdog: threading.Thread | None = None
        self._watchdog_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._finished = False
        self._busy_s: float | None = None  # inference time per frame, median (pace_reads)
        self.telemetry.info.update(
            source=source.uri,
            view=config.view,
            navigation=getattr(navigator, "mode", None),
            drop_stale=self.drop_stale,
            classes=list(getattr(segmenter.spec, "class_names", ())),
            palette=[list(c) for c in getattr(segmenter.spec, "palette", ())],
        )

    # -- control

    def start(self) -> "StreamPipeline":
        """Start the four threads and return at once; `join()` waits for the end."""
        if self._threads:
            raise EdgesegError("this pipeline was already started; make a new one for another run")
        self.telemetry.start()  # outputs are created now that the run starts, not before
        for sink in self.sinks:
            start = getattr(sink, "start", None)
            if start is not None:
                start()
        self._last_frame_at = self._last_line_at = time.monotonic()
        if self._command_sinks and self.config.command_timeout_s > 0:
            self._watchdog = threading.Thread(target=self._watchdog_loop, name="edgeseg-watchdog", daemon=True)
            self._watchdog.start()
        for name, target in (("capture", self._capture_loop), ("inference", self._inference_loop),
                             ("navigation", self._navigation_loop), ("output", self._output_loop)):
            thread = threading.Thread(target=target, name=f"edgeseg-{name}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, reason: str = STOPPED) -> None:
        """End the run soon (safe from any thread and from signal handlers); join() finalises."""
        self._end(reason)
        self._stop_capture.set()
        self._abort.set()
        self.source.interrupt()

    @property
    def stopping(self) -> bool:
        return self._stop_capture.is_set()

    def run(self, tick: Callable[[], None] | None = None, tick_interval_s: float = 0.5) -> RunSummary:
        """Start, wait for the end and finalise; see `join`."""
        self.start()
        return self.join(tick, tick_interval_s)

    def join(self, tick: Callable[[], None] | None = None, tick_interval_s: float = 0.5) -> RunSummary:
        """Wait until the run ends, close (or abort) the sinks and return the summary.

        Args:
            tick: called about every `tick_interval_s` while waiting (the CLI's status line).

        Raises:
            The first exception raised inside a stage or a sink (after the final stop was sent
            and the sinks were handled); a source that fails for good, a commands output that
            fails and a failed side output are not exceptions: see `RunSummary`.
        """
        if not self._threads:
            raise EdgesegError("start() the pipeline before join()")
        capture, inference, navigation, output = self._threads
        try:
            while output.is_alive():
                output.join(tick_interval_s)
                if tick is not None:
                    tick()
        except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop now, still finalise
            self.stop("interrupted")
            raise
        finally:
            self._stop_capture.set()
            for thread in (output, navigation, inference, capture):
                thread.join(THREAD_EXIT_S)
            self._send_final_stop()
            if not any(thread.is_alive() for thread in (output, navigation, inference)):
                self._finish_sinks()
            try:
                self.telemetry.close()
            except EdgesegError as err:
                self._side_output_failed("telemetry", err)
        if self._error is not None:
            raise self._error
        snapshot = self.telemetry.snapshot()
        return RunSummary(
            reason=self._reason or STOPPED,
            error=self._run_error(snapshot["counters"]),
            counters=snapshot["counters"],
            elapsed_s=snapshot["elapsed_s"],
            table=self.telemetry.summary_table(),
            sinks=[sink.summary() for sink in self.sinks if hasattr(sink, "summary")],
            failures=list(self._failures),
            detail=self._end_detail,
        )

    def _run_error(self, counters: dict[str, int]) -> str | None:
        """Why the run failed, or None: the commands output, the source, or not one frame processed."""
        if self._commands_error is not None:
            return self._commands_error
        if self._source_error is not None:
            return self._source_error
        if counters["processed"] == 0 and self._reason == END_OF_STREAM:
            corrupt = counters["corrupt"]
            unreadable = f"; {corrupt} frame(s) or file(s) could not be decoded" if corrupt else ""
            return (f"{self.source.uri} ended without delivering a single frame{unreadable}: nothing was processed; "
                    "check the source (open it in a video player) and its format")
        return None

    # -- the stages

    def _capture_loop(self) -> None:
        source, telemetry = self.source, self.telemetry
        pace = self.config.pace_reads and not self.drop_stale
        read_times: collections.deque[float] = collections.deque(maxlen=PACE_WINDOW)
        try:
            while not self._stop_capture.is_set():
                if pace and not self._wait_for_read_time(read_times):
                    break
                started = time.perf_counter()
                read = source.read(timeout=self.config.read_timeout_s)
                self._copy_source_stats()
                if read.status is ReadStatus.FRAME:
                    capture_s = time.perf_counter() - started
                    read_times.append(capture_s)
                    telemetry.add_timing("capture", capture_s)
                    telemetry.count("captured")
                    item = _Captured(read, capture_s)
                    if self.drop_stale:
                        replaced = self._frames.put(item)
                        if replaced is not None:
                            self._dropped(replaced.read, "dropped_capture", "dropped_before_inference")
                    elif not self._frames.put_wait(item, self._stop_capture):
                        break
                elif read.status is ReadStatus.TIMEOUT:
                    continue
                elif read.status is ReadStatus.END:
                    self._end_detail = read.message
                    self._end(END_OF_STREAM)
                    break
                else:
                    with self._lock:
                        if self._source_error is None:
                            self._source_error = read.message or f"{source.uri} failed"
                    self._end(SOURCE_FAILED)
                    break
        except BaseException as err:  # noqa: BLE001 - handed to join(), which re-raises it
            self._fail(err, "capture")
        finally:
            self._frames.close()

    def _wait_for_read_time(self, read_times: collections.deque[float]) -> bool:
        """pace_reads: wait until inference took the last frame and the next read would end as it
        is ready for another (its median busy time minus a high estimate of the read time); False on stop."""
        if not self._frames.wait_empty(self._stop_capture):
            return False
        busy = self._busy_s
        if busy is None or not read_times:
            return True
        delay = busy - sorted(read_times)[len(read_times) * 3 // 4] - PACE_MARGIN_S
        return delay <= 0 or not self._stop_capture.wait(delay)

    def _inference_loop(self) -> None:
        processed = 0
        max_frames = self.config.max_frames
        busy_times: collections.deque[float] = collections.deque(maxlen=PACE_WINDOW)
        try:
            for item in self._take_all(self._frames):
                taken = time.perf_counter()
                segmented = self._segment(item)
                processed += 1
                if not self._segmented.put_wait(segmented, self._abort):
                    break
                busy_times.append(time.perf_counter() - taken)
                self._busy_s = sorted(busy_times)[len(busy_times) // 2]
                if max_frames is not None and processed >= max_frames:
                    self._end(MAX_FRAMES)
                    self._stop_capture.set()
                    break
        except BaseException as err:  # noqa: BLE001 - handed to join(), which re-raises it
            self._fail(err, "inference")
        finally:
            self._segmented.close()

    def _segment(self, item: _Captured) -> _Segmented:
        read = item.read
        timings = {"capture": item.capture_s, "queue": time.perf_counter() - read.timestamp}
        if self._with_probabilities:
            segmentation = self.segmenter.seg(read.frame, probabilities=True)
        else:
            segmentation = self.segmenter.seg(read.frame)
        segmented_at = time.perf_counter()
        for stage in ("preprocess", "infer", "postprocess"):
            timings[stage] = float(segmentation.timings.get(stage, 0.0))
        return _Segmented(read, segmentation, timings, segmented_at)

    def _navigation_loop(self) -> None:
        try:
            for item in self._take_all(self._segmented):
                result = self._navigate(item)
                if self.drop_stale:
                    replaced = self._results.put(result)
                    if replaced is not None:
                        self.telemetry.count("dropped_output")
                        self._log_frame(_frame_record(replaced, "dropped_before_output"))
                elif not self._results.put_wait(result, self._abort):
                    break
        except BaseException as err:  # noqa: BLE001 - handed to join(), which re-raises it
            self._fail(err, "navigation")
        finally:
            self._results.close()

    def _navigate(self, item: _Segmented) -> FrameResult:
        """Navigate and send the command for one segmented frame."""
        read, segmentation, timings, telemetry = item.read, item.segmentation, item.timings, self.telemetry
        timings["handoff"] = time.perf_counter() - item.segmented_at
        command = None
        if self.navigator is not None:
            started = time.perf_counter()
            probabilities = getattr(segmentation, "probabilities", None)
            free = self.navigator.free_probability(probabilities) if probabilities is not None else None
            command = self.navigator.step(segmentation.class_map, free_probability=free)
            timings["nav"] = time.perf_counter() - started
        result = FrameResult(
            index=read.index, frame=read.frame, class_map=segmentation.class_map,  # type: ignore[arg-type]
            command=command, captured_at=read.timestamp, wall_time=read.wall_time, timings=timings,
            spec=self.segmenter.spec,
        )
        if self._command_sinks:
            self._send_command(result)
        timings["capture_to_command"] = time.perf_counter() - read.timestamp
        for stage, seconds in timings.items():
            if stage != "capture":
                telemetry.add_timing(stage, seconds)
        telemetry.count("processed")
        latest: dict[str, Any] = {"frame": read.index, "time": read.wall_time}
        if command is not None:
            latest.update(steering=command.steering, throttle=command.throttle, stop=command.stop,
                          clearance=command.clearance, confidence=command.confidence, reason=command.reason)
        telemetry.set_latest(latest)
        return result

    def _output_loop(self) -> None:
        telemetry = self.telemetry
        config = self.config
        try:
            for result in self._take_all(self._results):
                started = time.perf_counter()
                view = None
                active = [sink for sink in self._view_sinks if id(sink) not in self._disabled_sinks]
                if active:
                    view = render_view(result, config.view, config.alpha, config.legend, self._max_heading)
                for sink in active:
                    self._write_view(sink, result, view)
                done = time.perf_counter()
                result.timings["output"] = done - started
                result.timings["capture_to_output"] = done - result.captured_at
                telemetry.add_timing("output", result.timings["output"])
                telemetry.add_timing("capture_to_output", result.timings["capture_to_output"])
                telemetry.count("output")
                self._log_frame(_frame_record(result, "output"))
        except StopRequested as request:
            self.stop(str(request) or STOPPED)
        except BaseException as err:  # noqa: BLE001 - handed to join(), which re-raises it
            self._fail(err, "output")

    # -- helpers

    def _take_all(self, slot: LatestSlot[T]) -> Iterator[T]:
        """The items of `slot` as they come, until it is closed and drained or the run is aborted."""
        while not self._abort.is_set():
            item = slot.get(timeout=0.1)
            if item is not None:
                yield item
            elif slot.finished:
                return

    def _write_view(self, sink: Sink, result: FrameResult, view: np.ndarray | None) -> None:
        """Write to a side output; one that fails in the world is disabled alone, a bug stops the run."""
        try:
            sink.write(result, view)
        except StopRequested:
            raise
        except OUTPUT_ERRORS as err:
            self._disabled_sinks.add(id(sink))
            self._side_output_failed(sink.name, err, f" at frame {result.index}")
        except BaseException:
            self._failed_sinks.add(id(sink))
            raise

    def _log_frame(self, record: dict[str, Any]) -> None:
        try:
            self.telemetry.frame(record)
        except EdgesegError as err:
            self._side_output_failed("telemetry", err, f" at frame {record.get('frame')}")

    def _side_output_failed(self, name: str, err: BaseException, where: str = "") -> None:
        """Report a failed side output once (through `warn`), remember and count it."""
        line = f"{_describe(name, err)}{where}; that output is disabled, driving goes on"
        with self._lock:
            self._failures.append(line)
        self.telemetry.count("failed_outputs")
        self._warn(line)

    # -- commands: every frame's, stale stops, the final stop

    def _send_command(self, result: FrameResult) -> None:
        """Send one frame's command to every command sink (navigation thread)."""
        for sink in self._command_sinks:
            with self._command_locks[id(sink)]:
                result.extra["command_latency_s"] = time.perf_counter() - result.captured_at
                self._write_command(sink, lambda: sink.write(result, None))
        self._last_frame = result.index
        self._last_frame_at = self._last_line_at = time.monotonic()

    def _send_stop(self, kind: str, reason: str, wait_s: float) -> None:
        """Send a stop line to every working command sink; a sink stuck in a write for `wait_s` is skipped."""
        for sink in self._command_sinks:
            lock = self._command_locks[id(sink)]
            if not lock.acquire(timeout=wait_s):
                continue  # stuck in a write: the watchdog reports it
            try:
                stop_line = sink.send_stop  # type: ignore[attr-defined]  # command sinks have it
                self._write_command(sink, lambda: stop_line(kind, reason, self._last_frame))
                if kind == FINAL_STOP:
                    self._ended_sinks.add(id(sink))
            finally:
                lock.release()
        self._last_line_at = time.monotonic()

    def _write_command(self, sink: Sink, send: Callable[[], None]) -> None:
        """`send()` a line to `sink` unless it failed or was ended; call with the sink's lock held."""
        key = id(sink)
        if key in self._failed_sinks or key in self._ended_sinks:
            return
        self._writing_since[key] = time.monotonic()
        try:
            send()
        except OUTPUT_ERRORS as err:
            self._command_output_failed(sink, err)
        finally:
            del self._writing_since[key]

    def _command_output_failed(self, sink: Sink, err: BaseException) -> None:
        """The car can no longer be told what to do through `sink`: stop the run."""
        self._failed_sinks.add(id(sink))
        self._commands_failed(_describe(sink.name, err))

    def _commands_failed(self, message: str) -> None:
        with self._lock:
            if self._commands_error is None:
                self._commands_error = message
        self.stop(COMMANDS_FAILED)

    def _watchdog_loop(self) -> None:
        """While the run lives: a stale stop whenever no line was sent for `command_timeout_s`, and
        the run stopped when a command sink is stuck in one write for max(1 s, 2 x the timeout)
        (a pipe nobody reads): the car is not being told anything through it.
        """
        timeout = self.config.command_timeout_s
        blocked_limit = max(1.0, 2 * timeout)
        while not self._watchdog_done.wait(timeout / 5):
            now = time.monotonic()
            for key, since in list(self._writing_since.items()):
                if now - since >= blocked_limit:
                    name = next(sink.name for sink in self._command_sinks if id(sink) == key)
                    self._commands_failed(f"{name} blocked for {now - since:.1f} s in one write (nobody reads it?); "
                                          "nothing could be sent through it meanwhile, not even the final stop")
            if now - self._last_line_at >= timeout:
                self._send_stop(STALE_STOP, f"no new frame for {now - self._last_frame_at:.1f} s", timeout / 5)
                self.telemetry.count("stale_stops")

    def _send_final_stop(self) -> None:
        """The last line every command sink gets, whatever ended the run; nothing is sent after it.

        A sink stuck in a write (a pipe nobody reads) gets THREAD_EXIT_S, then the run fails.
        """
        self._watchdog_done.set()
        if self._watchdog is not None:
            self._watchdog.join(THREAD_EXIT_S)
        if self._commands_done:
            return
        self._commands_done = True
        self._send_stop(FINAL_STOP, self._final_reason(), THREAD_EXIT_S)
        for sink in self._command_sinks:
            if id(sink) not in self._ended_sinks and id(sink) not in self._failed_sinks:
                self._commands_failed(f"{sink.name} blocked in a write for {THREAD_EXIT_S:g} s at the end of the "
                                      "run (nobody reads it?); it did not get the final stop")

    def _final_reason(self) -> str:
        with self._lock:
            reason, error = self._reason or STOPPED, self._error
        if reason == FAILED and error is not None:
            return f"{self._failed_stage} failed: {type(error).__name__}"
        return reason

    def _dropped(self, read: Read, counter: str, status: str) -> None:
        self.telemetry.count(counter)
        self._log_frame({"frame": read.index, "time": round(read.wall_time, 6), "status": status})

    def _copy_source_stats(self) -> None:
        stats = self.source.stats
        for name in ("corrupt", "reconnects", "size_changes"):
            self.telemetry.set_counter(name, getattr(stats, name))

    def _end(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason

    def _fail(self, err: BaseException, stage: str) -> None:
        with self._lock:
            if self._error is None:
                self._error = err
                self._failed_stage = stage
        self.stop(FAILED)

    def _finish_sinks(self) -> None:
        """Close every sink (finalise) except those that failed (abort); a side output that cannot
        be finalised is a failure like any other; raise the first other close error."""
        if self._finished:
            return
        self._finished = True
        close_error: BaseException | None = None
        for sink in self.sinks:
            try:
                if id(sink) in self._failed_sinks:
                    sink.abort()
                else:
                    sink.close()
            except OUTPUT_ERRORS as err:
                if sink.needs_view:
                    self._side_output_failed(sink.name, err)
                else:
                    close_error = close_error or err
            except BaseException as err:  # noqa: BLE001 - every sink gets closed, then the first error is raised
                close_error = close_error or err
        if close_error is not None and self._error is None:
            self._error = close_error


def _describe(name: str, err: BaseException) -> str:
    """An output's error for one line: our own errors name the output already, others get its name."""
    return str(err) if isinstance(err, EdgesegError) else f"{name}: {err}"


def _frame_record(result: FrameResult, status: str) -> dict[str, Any]:
    """One line of the telemetry JSONL file."""
    record: dict[str, Any] = {"frame": result.index, "time": round(result.wall_time, 6), "status": status}
    for stage, seconds in result.timings.items():
        record[f"{stage}_ms"] = round(seconds * 1000.0, 3)
    command = result.command
    if command is not None:
        record.update(steering=round(command.steering, 4), throttle=round(command.throttle, 4), stop=command.stop,
                      clearance=round(command.clearance, 4), confidence=round(command.confidence, 4),
                      reason=command.reason)
    return record
