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


# --- the model spec, from the same flags on every command ------------------------------------


def names(text: str) -> tuple[str, ...]:
    """`road,grass,obstacle` -> ("road", "grass", "obstacle")."""
    parts = tuple(part.strip() for part in text.split(","))
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of names, e.g. road,grass")
    return parts


def triple(text: str) -> tuple[float, float, float]:
    """`123.7,116.3,103.5` -> three floats (R, G, B)."""
    try:
        parts = tuple(float(part) for part in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not three numbers R,G,B, e.g. 0.485,0.456,0.406")
    return parts  # type: ignore[return-value]


def number(text: str) -> float:
    """`0.00392` or `1/255` -> float."""
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            return float(top) / float(bottom)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number, e.g. 0.00392 or 1/255") from None


# flag dest -> ModelSpec field (`size` fills input_height and input_width)
SPEC_FLAGS = {
    "classes": "class_names",
    "scale": "scale",
    "mean": "mean",
    "std": "std",
    "channels": "channel_order",
    "layout": "layout",
    "output": "output_name",
    "activation": "output",
    "traversable": "traversable",
}


def add_spec_arguments(parser: argparse.ArgumentParser, head: bool = True) -> None:
    """The model-spec flags, the same on every command (a spec JSON takes the same names).

    Only flags that are given change anything: over the spec embedded in the model (or the
    --spec FILE) they replace those fields alone; for a model without a spec (a PyTorch
    export) they complete what its graph cannot tell (`edgeseg inspect MODEL` lists it).
    """
    from edgeseg.artifact.spec import CHANNEL_ORDERS, LAYOUTS, OUTPUT_KINDS

    group = parser.add_argument_group(
        "model spec (for models without one embedded; each flag given overrides that field of a found spec)"
    )
    group.add_argument("--spec", metavar="FILE", help="spec JSON (keys: these flag names, or the spec's field names)")
    group.add_argument("--classes", type=names, metavar="A,B,...",
                       help="class names, one per output channel (a 1-channel sigmoid head: two, background first)")
    group.add_argument("--size", type=size, metavar="HEIGHTxWIDTH",
                       help="input size, height first (default: the model's; needed when its height and width are dynamic)")
    group.add_argument("--scale", type=number, help="multiply pixels (0..255) by this first, e.g. 1/255")
    group.add_argument("--mean", type=triple, metavar="R,G,B", help="subtract after scaling")
    group.add_argument("--std", type=triple, metavar="R,G,B", help="divide by after subtracting the mean")
    group.add_argument("--channels", choices=CHANNEL_ORDERS, help="channel order the model expects (default rgb)")
    group.add_argument("--layout", type=str.upper, choices=LAYOUTS,
                       help="input layout (default: read from the model's input shape)")
    if head:
        group.add_argument("--output", metavar="NAME",
                           help="the output (head) that drives, for models with several (default: the first); "
                                "engines are built from the graph pruned to it")
    group.add_argument("--activation", choices=OUTPUT_KINDS,
                       help="what the head outputs (default: from its last op: Sigmoid, Softmax, else logits)")
    group.add_argument("--traversable", type=names, metavar="A,B,...", help="classes a robot may drive on")


def spec_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The spec fields given as flags or in --spec FILE (flags win), as ModelSpec field names.

    Raises:
        SpecError: the spec file is missing or has an unknown or invalid field.
    """
    from pathlib import Path

    from edgeseg.artifact.spec import spec_fields
    from edgeseg.errors import SpecError

    fields: dict[str, object] = {}
    if getattr(args, "spec", None):
        path = Path(args.spec)
        if path.is_dir():
            path = path / "spec.json"
        try:
            import json

            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"--spec {path}: no such file; pass a spec JSON (or a run folder with spec.json)") from None
        except ValueError as err:
            raise SpecError(f"--spec {path} is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise SpecError(f"--spec {path}: a spec is a JSON object, got {type(data).__name__}")
        try:
            fields.update(spec_fields(data))
        except SpecError as err:
            raise SpecError(f"--spec {path}: {err}") from None
    for flag, field in SPEC_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            fields[field] = value
    if getattr(args, "size", None) is not None:
        fields["input_height"], fields["input_width"] = args.size
    if "class_names" in fields:  # a palette or traversable list of other classes no longer fits
        fields.setdefault("palette", ())
        fields.setdefault("traversable", ())
    return fields


def spec_from_args(args: argparse.Namespace, model_path: object):
    """The spec to run `model_path` with, or None when no spec flag was given (the model's own).

    Raises:
        SpecError: the flags leave fields missing (each named with its flag) or are invalid.
    """
    overrides = spec_overrides(args)
    if not overrides:
        return None
    from edgeseg.artifact import describe
    from edgeseg.errors import SpecError

    found = describe(model_path, overrides=overrides)
    if found.spec is None:
        raise SpecError(
            f"{model_path} has no embedded spec and the flags leave fields missing: " + "; ".join(found.missing)
            + " (`edgeseg inspect` shows what the model has)"
        )
    return found.spec


# --- the robot: its camera and width, for navigation in metres --------------------------------


ROBOT_DESTS = ("robot", "camera_height", "camera_pitch", "hfov", "car_width")  # the flags below


def add_robot_arguments(parser: argparse.ArgumentParser) -> None:
    """--robot FILE and the single values that override it (docs/streaming.md, "Your robot's camera")."""
    group = parser.add_argument_group(
        "robot (the navigator's stop lines in metres; default: none, or the synthetic source's own camera)")
    group.add_argument("--robot", metavar="FILE",
                       help="JSON robot file: camera_height_m, camera_pitch_deg, hfov_deg and optional car_width_m")
    group.add_argument("--camera-height", type=positive_float, metavar="M",
                       help="height of the camera's lens above the floor, in metres")
    group.add_argument("--camera-pitch", type=number, metavar="DEG",
                       help="how far the camera looks down from level, in degrees (down positive)")
    group.add_argument("--hfov", type=positive_float, metavar="DEG",
                       help="horizontal field of view of the frames, in degrees")
    group.add_argument("--car-width", type=positive_float, metavar="M", help="the car's width in metres (default 0.3)")


def robot_from_args(args: argparse.Namespace, fallback=None):
    """The `edgeseg.robot.Robot` from the flags over --robot FILE over `fallback`; None when none is given."""
    from edgeseg.robot import resolve_robot

    return resolve_robot(args.robot, fallback, camera_height_m=args.camera_height, camera_pitch_deg=args.camera_pitch,
                         hfov_deg=args.hfov, car_width_m=args.car_width)
