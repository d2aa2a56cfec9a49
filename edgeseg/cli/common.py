"""Argument types shared by several subcommands (parsed once, with clear errors)."""

from __future__ import annotations

import argparse
import re

from edgeseg.errors import EdgesegError
from edgeseg.size import Size, parse_size


def size(text: str) -> Size:
    """`256x320` (height first) or `256` -> Size(height, width); see `edgeseg.size`."""
    try:
        return parse_size(text)
    except EdgesegError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def split(text: str) -> tuple[float, float, float]:
    """`0.8,0.1,0.1` -> fractions for train, val, test that sum to 1."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"split {text!r} is not three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"split {text!r} needs three non-negative fractions summing to 1")
    return parts  # type: ignore[return-value]


def duration(text: str) -> float:
    """`900`, `900s`, `15m` or `1.5h` -> seconds."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"duration {text!r} is not like 900s, 15m or 1h")
    value = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be positive")
    return value


def key_value(text: str) -> tuple[str, object]:
    """`width=0.5` -> ("width", 0.5); numbers and true/false are converted."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"option {text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    value: object = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                pass
    return key.strip(), value


# The runtime backends a model can be opened with (`edgeseg.runtime.backends` registry names).
BACKEND_CHOICES = ("auto", "onnxruntime", "keras", "tensorrt")


def _number(text: str, kind: type, minimum: float, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be {'positive' if minimum > 0 else '0 or more'}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, 1, "a whole number")


def non_negative_int(text: str) -> int:
    return _number(text, int, 0, "a whole number")


def positive_float(text: str) -> float:
    value = _number(text, float, 0.0, "a number")
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value
