"""Live streaming on the robot: sources, the threaded pipeline, sinks, telemetry, the browser view.

    from edgeseg.nav import Navigator
    from edgeseg.runtime import Segmenter
    from edgeseg.stream import PipelineConfig, RecordingSink, StreamPipeline, open_source

    with open_source("synthetic://?seed=1", realtime=False, frames=300) as source, \\
            Segmenter.open("model.onnx") as segmenter:
        pipeline = StreamPipeline(source, segmenter, Navigator.from_spec(segmenter.spec),
                                  sinks=[RecordingSink("drive.mp4", fps=source.fps)])
        summary = pipeline.run()
    print(summary.table)

Only numpy and OpenCV are imported here; the model's runtime is whatever `Segmenter.open` loads.
"""

from edgeseg.stream.pipeline import LatestSlot, PipelineConfig, RunSummary, StreamPipeline
from edgeseg.stream.runner import StreamFailed, StreamOptions, open_sink, run
from edgeseg.stream.server import StreamServer, parse_address
from edgeseg.stream.sinks import (
    CommandSink,
    FrameFolderSink,
    FrameResult,
    OutputFailed,
    RecordingSink,
    Sink,
    StopRequested,
    WindowSink,
    render_view,
)
from edgeseg.stream.sources import (
    Read,
    ReadStatus,
    ReconnectPolicy,
    Source,
    SourceStats,
    open_source,
    redact_uri,
)
from edgeseg.stream.telemetry import STAGES, LatencyWindow, StatusLine, Telemetry

__all__ = [
    "STAGES",
    "CommandSink",
    "FrameFolderSink",
    "FrameResult",
    "LatencyWindow",
    "LatestSlot",
    "OutputFailed",
    "PipelineConfig",
    "Read",
    "ReadStatus",
    "ReconnectPolicy",
    "RecordingSink",
    "RunSummary",
    "Sink",
    "Source",
    "SourceStats",
    "StatusLine",
    "StopRequested",
    "StreamPipeline",
    "StreamFailed",
    "StreamOptions",
    "StreamServer",
    "Telemetry",
    "WindowSink",
    "open_sink",
    "open_source",
    "parse_address",
    "redact_uri",
    "render_view",
    "run",
]
