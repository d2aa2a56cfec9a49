"""A screenshot of the `edgeseg stream --serve` page in headless Chromium: does the page work?

    .venv/bin/python benchmarks/stream_page_screenshot.py --model nav.int8.cpu.onnx
        [--source "synthetic://?seed=3"] [--out docs/images/stream_page.png] [--size 1100x800]

Starts `python -m edgeseg stream --source SOURCE --model MODEL --serve 127.0.0.1:PORT` (a free
port), waits until /status.json reports `--wait-frames` processed frames, then takes a screenshot
of http://127.0.0.1:PORT/ with `chromium --headless --screenshot` (the page's MJPEG view and its
/status.json polling get `--budget-ms` of virtual time first), stops the stream with SIGINT and
checks the picture is not blank (its size, and pixel variance over the page and over the live view
area). Exits 1 when Chromium is missing (saying how to install it), the stream fails, or the
screenshot is blank.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_ENGINE = REPO / "demo" / "model.int8.cpu.onnx"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MIN_STD = 20.0  # grey-level standard deviation of a page with a live picture; a blank page is ~0-5


class Failed(Exception):
    """A check failed; the message says which and what to do."""


def find_browser(name: str | None) -> str:
    for candidate in ([name] if name else BROWSERS):
        path = shutil.which(candidate)
        if path:
            return path
    raise Failed(
        f"no Chromium found (looked for {', '.join([name] if name else BROWSERS)}); install it, e.g. "
        "`sudo apt-get install chromium` (Debian) or `sudo apt-get install chromium-browser` (Ubuntu), "
        "or pass --browser PATH"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url + "status.json", timeout=2) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_for_frames(stream: subprocess.Popen, url: str, frames: int, timeout_s: float) -> dict:
    """Poll /status.json until `frames` frames were processed; the last snapshot."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stream.poll() is not None:
            raise Failed(f"`edgeseg stream` exited with code {stream.returncode} before serving frames")
        snapshot = status(url)
        if snapshot and snapshot["counters"]["processed"] >= frames and snapshot.get("served_frames", 0) > 0:
            return snapshot
        time.sleep(0.5)
    raise Failed(f"no {frames} processed frames within {timeout_s:.0f} s at {url}")


def check_picture(path: Path, width: int, height: int) -> dict:
    """Size and pixel variance of the screenshot, overall and over the live view (left two thirds)."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    if image.shape[:2] != (height, width):
        raise Failed(f"{path} is {image.shape[1]}x{image.shape[0]}, expected {width}x{height}")
    grey = image.mean(axis=2)
    view = image[height // 8: height * 3 // 4, width // 20: width * 2 // 3]  # where the live picture is
    stats = {"bytes": path.stat().st_size, "std": float(grey.std()), "view_std": float(view.mean(axis=2).std()),
             "view_colours": int(len(np.unique(view.reshape(-1, 3) // 16, axis=0)))}
    if stats["std"] < MIN_STD or stats["view_std"] < MIN_STD or stats["view_colours"] < 20:
        raise Failed(f"the screenshot looks blank ({stats}); look at {path}")
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help=f"model for the stream (default {DEMO_ENGINE.relative_to(REPO)})")
    parser.add_argument("--source", default="synthetic://?seed=3", help="stream source URI")
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "stream_page.png"))
    parser.add_argument("--size", default="1100x800", help="browser window WIDTHxHEIGHT")
    parser.add_argument("--browser", help="Chromium executable (default: the first of %s on PATH)" % ", ".join(BROWSERS))
    parser.add_argument("--wait-frames", type=int, default=60, help="processed frames before the screenshot")
    parser.add_argument("--budget-ms", type=int, default=3000, help="virtual time the page runs before the shot")
    parser.add_argument("--threads", type=int, default=1, help="inference threads of the stream")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    model = Path(args.model) if args.model else DEMO_ENGINE
    stream = None
    try:
        browser = find_browser(args.browser)
        if not model.is_file():
            raise Failed(f"model {model} not found; pass --model (an ONNX model, e.g. the INT8 CPU engine)")
        url = f"http://127.0.0.1:{free_port()}/"
        command = [sys.executable, "-m", "edgeseg", "stream", "--source", args.source, "--model", str(model),
                   "--threads", str(args.threads), "--mode", "balanced", "--serve", url[7:-1], "--no-status"]
        print("$ " + " ".join(command), file=sys.stderr)
        stream = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        before = wait_for_frames(stream, url, args.wait_frames, timeout_s=120)
        print(f"stream up: {before['counters']['processed']} frames processed", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            shot = Path(tmp) / "page.png"
            browse = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                      f"--screenshot={shot}", f"--window-size={width},{height}",
                      f"--virtual-time-budget={args.budget_ms}", url]
            print("$ " + " ".join(browse), file=sys.stderr)
            done = subprocess.run(browse, capture_output=True, text=True, timeout=120)
            if done.returncode != 0 or not shot.is_file():
                raise Failed(f"Chromium exited with {done.returncode} and no screenshot: {done.stderr[-800:]}")
            stats = check_picture(shot, width, height)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, out.with_suffix(".png.tmp"))
            os.replace(out.with_suffix(".png.tmp"), out)
        after = status(url) or {}
        print(f"wrote {out}: {stats}")
        lat = after.get("latency_ms", {})
        print(f"page state at the shot: {after.get('fps', {}).get('processed', 0):.1f} fps, capture->command p50 "
              f"{lat.get('capture_to_command', {}).get('p50', float('nan')):.1f} ms, latest {after.get('latest')}")
        return 0
    except (Failed, subprocess.TimeoutExpired) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if stream is not None and stream.poll() is None:
            stream.send_signal(signal.SIGINT)
            try:
                stream.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stream.kill()
                stream.wait()
        if stream is not None and stream.stdout is not None:
            tail = stream.stdout.read().strip().splitlines()[-3:]
            print("\n".join("stream: " + line for line in tail), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
