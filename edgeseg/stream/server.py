"""The browser view (`--serve [HOST:]PORT`): a small HTTP server in a thread.

| path           | what                                                                        |
|----------------|-----------------------------------------------------------------------------|
| `/`            | the page: live view, FPS, latency, drops and the command with a steering bar |
| `/stream.mjpg` | the view as MJPEG (`multipart/x-mixed-replace; boundary=frame`)              |
| `/frame.jpg`   | the newest view as one JPEG                                                  |
| `/status.json` | the telemetry snapshot the page polls: fps, latency_ms, counters, latest     |

It binds to 127.0.0.1 unless told otherwise (`--serve 0.0.0.0:8080` exposes it to the network;
there is no authentication, so `exposed` is True and the CLI warns). It is read-only: it answers
GET only, nothing it serves changes the run, and every other method gets 501. A connection idle
for `IDLE_TIMEOUT_S` (or a client that stops reading the MJPEG stream) is closed, so idle
sockets cannot pile up threads. Frames are JPEG-encoded only when a client asks, once per
frame however many clients watch, and only the newest frame is kept.
"""

from __future__ import annotations

import errno
import http.server
import json
import logging
import re
import threading
from typing import Any, Callable

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.stream.sinks import FrameResult
from edgeseg.stream.telemetry import Telemetry

log = logging.getLogger(__name__)
BOUNDARY = "frame"
DEFAULT_HOST = "127.0.0.1"
IDLE_TIMEOUT_S = 10.0  # a connection that sends no request (or reads nothing) for this long is closed
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


def parse_address(text: str | int) -> tuple[str, int]:
    """`8080`, `:8080`, `0.0.0.0:8080` or `[::1]:8080` -> (host, port); the host defaults to 127.0.0.1."""
    text = str(text).strip()
    match = re.fullmatch(r"(?:(\[[^\]]*\]|[^:\[\]]*):)?(\d+)", text)
    if not match:
        raise EdgesegError(f"--serve takes [HOST:]PORT, e.g. :8080 or 0.0.0.0:8080, got {text!r}")
    host = (match.group(1) or "").strip("[]") or DEFAULT_HOST
    port = int(match.group(2))
    if not 0 <= port < 65536:
        raise EdgesegError(f"--serve port must be 0-65535, got {port}")
    return host, port


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a watching browser never keeps the process alive
    allow_reuse_address = True


class StreamServer:
    """Serves the live view and status over HTTP; a view sink for the pipeline.

    Args:
        address: `[HOST:]PORT` (port 0 picks a free one; see `url`).
        telemetry: the run's telemetry, for /status.json.
        jpeg_quality: 1-100.
    """

    needs_view = True

    def __init__(self, address: str | int = "8080", telemetry: Telemetry | None = None,
                 jpeg_quality: int = 80) -> None:
        host, port = parse_address(address)
        self.telemetry = telemetry
        self.jpeg_quality = int(jpeg_quality)
        self.frames = 0
        self._cond = threading.Condition()
        self._view: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None  # (seq, bytes): encoded once per frame
        self._closed = False
        try:
            self._httpd = _HTTPServer((host, port), _make_handler(self))
        except OSError as err:
            hint = "the port is in use; pick another, e.g. --serve :8081" if err.errno == errno.EADDRINUSE else (
                f"{err.strerror}; check the address")
            raise EdgesegError(f"cannot serve on {host}:{port}: {hint}") from None
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self.name = f"server {self.url}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgeseg-http", daemon=True)
        self._thread.start()

    @property
    def exposed(self) -> bool:
        """True when other machines can reach the view (it binds to more than the loopback address)."""
        return self.host not in LOCAL_HOSTS and not self.host.startswith("127.")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # -- the sink side

    def write(self, result: FrameResult, view: np.ndarray | None) -> None:
        if view is None:
            return
        with self._cond:
            self._view = view
            self._seq += 1
            self.frames += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)

    def abort(self) -> None:
        self.close()

    def summary(self) -> str:
        return f"served {self.frames} frames at {self.url}"

    # -- the HTTP side

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """The newest frame newer than `after` as JPEG, waiting up to `timeout`; (seq, None) if none."""
        with self._cond:
            if self._seq <= after and not self._closed:
                self._cond.wait(timeout)
            if self._seq <= after or self._view is None:
                return after, None
            seq, view = self._seq, self._view
            if self._jpeg is not None and self._jpeg[0] == seq:
                return seq, self._jpeg[1]
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(view, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise EdgesegError("OpenCV could not encode the view as JPEG")
        data = encoded.tobytes()
        with self._cond:
            if self._jpeg is None or self._jpeg[0] < seq:
                self._jpeg = (seq, data)
        return seq, data

    @property
    def closed(self) -> bool:
        return self._closed

    def status(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = self.telemetry.snapshot() if self.telemetry is not None else {}
        snapshot["served_frames"] = self.frames
        return snapshot


def _make_handler(server: StreamServer) -> Callable[..., http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_TIMEOUT_S  # socket timeout: idle keep-alive connections and stalled readers end

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif path == "/status.json":
                self._send(200, "application/json", json.dumps(server.status()).encode())
            elif path == "/frame.jpg":
                _, jpeg = server.next_jpeg(after=-1, timeout=2.0)
                if jpeg is None:
                    self._send(503, "text/plain", b"no frame yet\n")
                else:
                    self._send(200, "image/jpeg", jpeg)
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, "text/plain", b"not found; try / or /stream.mjpg or /status.json\n")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seq = 0
            try:
                while not server.closed:
                    seq, jpeg = server.next_jpeg(after=seq, timeout=1.0)
                    if jpeg is None:
                        continue
                    header = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                              f"Content-Length: {len(jpeg)}\r\n\r\n").encode()
                    self.wfile.write(header + jpeg + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                log.debug("MJPEG client %s left or stopped reading", self.client_address)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            log.debug("%s " + format, self.client_address[0], *args)

    return Handler


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgeseg stream</title>
<style>
  :root { --bg:#0f1216; --panel:#171b21; --line:#262c35; --text:#e6e9ee; --dim:#8b95a3;
          --go:#3ccf6e; --stop:#ef4b4b; --accent:#f0c43c; --blue:#4aa3ff; }
  * { box-sizing: border-box; }
  body { margin:0; background:var(--bg); color:var(--text);
         font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display:flex; align-items:baseline; gap:16px; padding:12px 20px; border-bottom:1px solid var(--line); }
  header h1 { font-size:18px; margin:0; font-weight:600; letter-spacing:.3px; }
  header .src { color:var(--dim); font-family:ui-monospace, monospace; font-size:12px;
                overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
  header .state { margin-left:auto; font-size:12px; padding:2px 10px; border-radius:10px; background:#223; color:var(--dim); }
  header .state.live { background:rgba(60,207,110,.15); color:var(--go); }
  header .state.off { background:rgba(239,75,75,.15); color:var(--stop); }
  main { display:grid; grid-template-columns:minmax(0,1fr) 320px; gap:20px; padding:20px; }
  @media (max-width: 900px) { main { grid-template-columns:1fr; } }
  .view { background:#000; border:1px solid var(--line); border-radius:10px; overflow:hidden; align-self:start;
          display:flex; align-items:center; justify-content:center; min-height:240px; }
  .view img { width:100%; height:auto; display:block; image-rendering:auto; }
  .panel { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:16px; }
  .panel h2 { font-size:12px; text-transform:uppercase; letter-spacing:1px; color:var(--dim); margin:0 0 10px; font-weight:600; }
  .big { font-size:40px; font-weight:700; font-variant-numeric:tabular-nums; line-height:1; }
  .big small { font-size:14px; color:var(--dim); font-weight:400; margin-left:4px; }
  .grid { display:grid; grid-template-columns:1fr auto; gap:4px 12px; font-variant-numeric:tabular-nums; }
  .grid span:nth-child(odd) { color:var(--dim); }
  .grid span:nth-child(even) { text-align:right; }
  section + section { margin-top:18px; padding-top:16px; border-top:1px solid var(--line); }
  .badge { display:inline-block; padding:3px 12px; border-radius:6px; font-weight:700; letter-spacing:1px; }
  .badge.go { background:rgba(60,207,110,.18); color:var(--go); }
  .badge.stop { background:rgba(239,75,75,.18); color:var(--stop); }
  .reason { color:var(--dim); margin-left:8px; }
  .bar { position:relative; height:14px; background:#0b0e12; border:1px solid var(--line); border-radius:7px; margin:6px 0 12px; overflow:hidden; }
  .bar .fill { position:absolute; top:0; bottom:0; left:0; background:var(--blue); border-radius:7px; transition:width .2s; }
  .steer { position:relative; height:22px; background:#0b0e12; border:1px solid var(--line); border-radius:11px; margin:6px 0 4px; }
  .steer .mid { position:absolute; left:50%; top:3px; bottom:3px; width:1px; background:var(--line); }
  .steer .fill { position:absolute; top:4px; bottom:4px; background:var(--accent); border-radius:7px; transition:all .2s; }
  .steer .knob { position:absolute; top:1px; width:18px; height:18px; margin-left:-9px; border-radius:50%;
                 background:var(--text); box-shadow:0 0 0 3px rgba(240,196,60,.35); transition:left .2s; }
  .scale { display:flex; justify-content:space-between; color:var(--dim); font-size:11px; }
  .label { display:flex; justify-content:space-between; }
  .label b { font-variant-numeric:tabular-nums; font-weight:600; }
  .legend { display:flex; flex-wrap:wrap; gap:6px 12px; font-size:12px; color:var(--dim); }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
</style>
</head>
<body>
<header>
  <h1>edgeseg stream</h1>
  <span class="src" id="source">connecting&hellip;</span>
  <span class="state" id="state">waiting</span>
</header>
<main>
  <div class="view"><img id="view" src="/stream.mjpg" alt="live segmentation view"></div>
  <div class="panel">
    <section>
      <h2>Throughput</h2>
      <div class="big"><span id="fps">&ndash;</span><small>fps</small></div>
      <div class="grid" style="margin-top:10px">
        <span>capture &rarr; command p50</span><span id="c2c50">&ndash;</span>
        <span>capture &rarr; command p95</span><span id="c2c95">&ndash;</span>
        <span>inference p50</span><span id="infer">&ndash;</span>
        <span>frames processed</span><span id="processed">0</span>
        <span>dropped (stale)</span><span id="dropped">0</span>
        <span>corrupt</span><span id="corrupt">0</span>
      </div>
    </section>
    <section id="nav">
      <h2>Command</h2>
      <div><span class="badge go" id="badge">&ndash;</span><span class="reason" id="reason"></span></div>
      <div class="label" style="margin-top:14px"><span>steering</span><b id="steering">&ndash;</b></div>
      <div class="steer"><div class="mid"></div><div class="fill" id="steerfill"></div><div class="knob" id="knob" style="left:50%"></div></div>
      <div class="scale"><span>left</span><span>right</span></div>
      <div class="label" style="margin-top:10px"><span>throttle</span><b id="throttle">&ndash;</b></div>
      <div class="bar"><div class="fill" id="thrfill" style="width:0"></div></div>
      <div class="label"><span>clearance</span><b id="clearance">&ndash;</b></div>
      <div class="bar"><div class="fill" id="clrfill" style="width:0;background:var(--accent)"></div></div>
      <div class="label"><span>confidence</span><b id="confidence">&ndash;</b></div>
      <div class="bar"><div class="fill" id="conffill" style="width:0;background:var(--go)"></div></div>
    </section>
    <section>
      <h2>Classes</h2>
      <div class="legend" id="legend"></div>
    </section>
  </div>
</main>
<script>
const $ = (id) => document.getElementById(id);
const ms = (stage, q) => stage && stage[q] !== undefined ? stage[q].toFixed(1) + " ms" : "\\u2013";
const pct = (v) => Math.round(Math.max(0, Math.min(1, v)) * 100) + "%";
let legendDone = false;
function show(s) {
  const lat = s.latency_ms || {}, c = s.counters || {}, info = s.info || {};
  $("source").textContent = (info.source || "") + (info.model ? "  \\u00b7  " + info.model : "") +
    (info.backend ? " (" + info.backend + ")" : "");
  $("state").textContent = s.running ? "live" : "finished";
  $("state").className = "state " + (s.running ? "live" : "off");
  $("fps").textContent = (s.fps && s.fps.processed ? s.fps.processed : 0).toFixed(1);
  $("c2c50").textContent = ms(lat.capture_to_command, "p50");
  $("c2c95").textContent = ms(lat.capture_to_command, "p95");
  $("infer").textContent = ms(lat.infer, "p50");
  $("processed").textContent = c.processed || 0;
  $("dropped").textContent = (c.dropped_capture || 0) + (c.dropped_output || 0);
  $("corrupt").textContent = c.corrupt || 0;
  const cmd = s.latest || {};
  if (!info.navigation) { $("nav").style.display = "none"; }
  else if (cmd.steering !== undefined) {
    $("badge").textContent = cmd.stop ? "STOP" : "GO";
    $("badge").className = "badge " + (cmd.stop ? "stop" : "go");
    $("reason").textContent = cmd.reason;
    $("steering").textContent = (cmd.steering >= 0 ? "+" : "") + cmd.steering.toFixed(2);
    const x = 50 + 50 * Math.max(-1, Math.min(1, cmd.steering));
    $("knob").style.left = x + "%";
    $("steerfill").style.left = Math.min(50, x) + "%";
    $("steerfill").style.width = Math.abs(x - 50) + "%";
    $("throttle").textContent = cmd.throttle.toFixed(2);
    $("thrfill").style.width = pct(cmd.throttle);
    $("thrfill").style.background = cmd.stop ? "var(--stop)" : "var(--blue)";
    $("clearance").textContent = cmd.clearance.toFixed(2);
    $("clrfill").style.width = pct(cmd.clearance);
    $("confidence").textContent = cmd.confidence.toFixed(2);
    $("conffill").style.width = pct(cmd.confidence);
  }
  if (!legendDone && info.classes) {
    $("legend").innerHTML = info.classes.map((name, i) => {
      const c = (info.palette || [])[i] || [128, 128, 128];
      const span = document.createElement("span");
      span.textContent = name;
      return '<span><i style="background:rgb(' + c.join(",") + ')"></i>' + span.innerHTML + "</span>";
    }).join("");
    legendDone = true;
  }
}
async function poll() {
  try {
    const r = await fetch("/status.json", {cache: "no-store"});
    show(await r.json());
  } catch (e) {
    $("state").textContent = "disconnected";
    $("state").className = "state off";
  }
  setTimeout(poll, 500);
}
$("view").onerror = () => setTimeout(() => { $("view").src = "/stream.mjpg?t=" + Date.now(); }, 1000);
poll();
</script>
</body>
</html>
"""
