"""ModelSpec: the contract every edgeseg artifact carries.

`train` writes it beside `model.keras`, `export` embeds it in the ONNX `metadata_props`
(key `edgeseg.spec`), quantized models keep it and engine manifests copy it. The runtime builds
its preprocessing from the spec alone, so training, calibration, verification and streaming
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import SpecError
from edgeseg.fileio import atomic_write_text

SPEC_FILENAME = "spec.json"
ONNX_METADATA_KEY = "edgeseg.spec"

TASKS = ("multiclass", "binary")
LAYOUTS = ("NHWC", "NCHW")
CHANNEL_ORDERS = ("rgb", "bgr")
RESIZE_MODES = ("stretch",)
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid")


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for any number of classes (the Pascal VOC bit-interleaving scheme)."""
    colours = []
    for index in range(num_classes):
        r = g = b = 0
        value = index
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours.append((r, g, b))
    return tuple(colours)


@dataclass(frozen=True)
class ModelSpec:
    """What a segmentation model expects and produces.

    Preprocessing is always: resize the RGB uint8 frame to `input_height` x `input_width`
    (`resize`), reorder channels to `channel_order`, convert to float32, compute
    `(x * scale - mean) / std`, and lay out as `layout`. Models built by edgeseg normalise
    inside the network, so their spec is scale 1, mean 0, std 1 (float pixels in [0, 255]).

    Attributes:
        class_names: one name per class; index i of the class map is `class_names[i]`.
        input_height, input_width: the network input size in pixels.
        task: "multiclass" (one channel per class) or "binary" (one channel, two classes).
        layout: "NHWC" or "NCHW" input tensor layout.
        channel_order: "rgb" or "bgr" channel order of the input tensor.
        scale, mean, std: per-pixel normalisation, see above.
        resize: how frames are fitted to the input size ("stretch").
        output: what the output tensor holds: "logits", "probabilities" or "sigmoid" (the
            flag and spec-JSON name is `activation`).
        output_name: the graph output (head) that drives, for models with several heads; ""
            means the first output. Flag and spec-JSON name: `output`.
        palette: one RGB colour per class, for overlays.
        ignore_index: the mask value that marks unlabelled pixels.
        traversable: class names a robot may drive on.
        model: the builder name the model came from ("" if unknown).
    """

    class_names: tuple[str, ...]
    input_height: int
    input_width: int
    task: str = "multiclass"
    layout: str = "NHWC"
    channel_order: str = "rgb"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "stretch"
    output: str = "logits"
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = 255
    traversable: tuple[str, ...] = ()
    model: str = ""
    output_name: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise fields once, here
        set_(self, "class_names", tuple(str(name) for name in self.class_names))
        set_(self, "mean", tuple(float(v) for v in self.mean))
        set_(self, "std", tuple(float(v) for v in self.std))
        set_(self, "traversable", tuple(str(name) for name in self.traversable))
        set_(self, "scale", float(self.scale))
        set_(self, "input_height", int(self.input_height))
        set_(self, "input_width", int(self.input_width))
        set_(self, "ignore_index", int(self.ignore_index))
        set_(self, "output_name", str(self.output_name or ""))
        if not self.palette:
            set_(self, "palette", default_palette(len(self.class_names)))
        else:
            set_(self, "palette", tuple(tuple(int(c) for c in colour) for colour in self.palette))
        self._validate()

    def _validate(self) -> None:
        def choice(field: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, field)
            if value not in allowed:
                raise SpecError(f"spec field {field}={value!r} is not one of {', '.join(allowed)}")

        choice("task", TASKS)
        choice("layout", LAYOUTS)
        choice("channel_order", CHANNEL_ORDERS)
        choice("resize", RESIZE_MODES)
        choice("output", OUTPUT_KINDS)
        if len(self.class_names) < 2:
            raise SpecError(
                f"spec needs at least 2 class names, got {list(self.class_names)}; "
                "a binary task names both, e.g. background,foreground"
            )
        if self.task == "binary" and len(self.class_names) != 2:
            raise SpecError(f"a binary spec has exactly 2 classes, got {len(self.class_names)}")
        if self.task == "binary" and self.output == "probabilities":
            raise SpecError("a binary spec has one output channel: output 'sigmoid' or 'logits'")
        if self.input_height <= 0 or self.input_width <= 0:
            raise SpecError(f"input size must be positive, got {self.input_height}x{self.input_width}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise SpecError(f"mean and std need 3 values each, got {self.mean} and {self.std}")
        if any(v == 0 for v in self.std):
            raise SpecError(f"std values must be non-zero, got {self.std}")
        if len(self.palette) != len(self.class_names) or any(len(c) != 3 for c in self.palette):
            raise SpecError(
                f"palette needs one RGB colour per class ({len(self.class_names)}), "
                f"got {len(self.palette)}"
            )
        unknown = [name for name in self.traversable if name not in self.class_names]
        if unknown:
            raise SpecError(
                f"traversable classes {unknown} are not in class_names {list(self.class_names)}"
            )
        if 0 <= self.ignore_index < len(self.class_names):
            raise SpecError(
                f"ignore_index {self.ignore_index} collides with class {self.ignore_index} "
                f"({self.class_names[self.ignore_index]!r}); use 255"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def output_channels(self) -> int:
        """Channels of the model output: 1 for a binary (sigmoid) task, else one per class."""
        return 1 if self.task == "binary" else self.num_classes

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return (self.input_height, self.input_width)

    @property
    def traversable_ids(self) -> tuple[int, ...]:
        return tuple(self.class_names.index(name) for name in self.traversable)

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """A spec from JSON data: field names or the command-line flag names (see FLAG_FIELDS).

        Raises:
            SpecError: not an object, an unknown field (names the nearest known one), or a
                missing field.
        """
        if not isinstance(data, dict):
            raise SpecError(f"a spec is a JSON object, got {type(data).__name__}")
        return cls(**spec_fields(data, require=("class_names", "input_height", "input_width")))

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"spec is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON, atomically."""
        return atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec":
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILENAME
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SpecError(f"no spec file at {path}; pass a run folder or a spec JSON") from None
        try:
            return cls.from_json(text)
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None


# The spec JSON also accepts the names of the command-line flags (`--classes`, `--size`, ...);
# `size` is "HxW", [H, W] or one number. The key `output` names the head that drives (the
# `--output` flag) unless its value is an output kind, which is what `output` meant in spec
# files written before heads could be chosen; `activation` is the kind's flag name.
FLAG_FIELDS = {
    "classes": "class_names",
    "channels": "channel_order",
    "activation": "output",
    "head": "output_name",
}
SIZE_FIELD = "size"


def known_spec_keys() -> list[str]:
    """Every key a spec JSON may use: field names and flag names."""
    fields = [f.name for f in dataclasses.fields(ModelSpec)]
    return sorted(set(fields) | set(FLAG_FIELDS) | {SIZE_FIELD})


def parse_size(value: Any) -> tuple[int, int]:
    """`"256x512"`, `[256, 512]` or `256` -> (height, width).

    Raises:
        SpecError: anything else.
    """
    import re

    given = value
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*", value)
        value = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    value = given
    raise SpecError(f"size {value!r} is not HxW, e.g. \"256x512\" or [256, 512]")


def spec_fields(data: dict[str, Any], require: tuple[str, ...] = ()) -> dict[str, Any]:
    """Spec JSON (field or flag names) -> ModelSpec field names and values.

    Raises:
        SpecError: an unknown key (with the nearest known name), a key given twice under two
            names, or a field in `require` that is missing.
    """
    known = known_spec_keys()
    fields: dict[str, Any] = {}

    def put(name: str, value: Any, key: str) -> None:
        if name in fields:
            raise SpecError(f"spec field {name} is given twice (once as {key!r}); keep one")
        fields[name] = value

    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(f"unknown spec field {key!r}; {hint}known fields are {', '.join(known)}")
        if key == SIZE_FIELD:
            height, width = parse_size(value)
            put("input_height", height, key)
            put("input_width", width, key)
        elif key == "output" and not _is_output_kind(value, data):
            put("output_name", value, key)
        elif key in ("layout",) and isinstance(value, str):
            put("layout", value.upper(), key)
        else:
            put(FLAG_FIELDS.get(key, key), value, key)
    missing = [name for name in require if name not in fields]
    if missing:
        flags = {"class_names": "classes", "input_height": "size", "input_width": "size"}
        named = sorted({f"{name} (--{flags[name]})" if name in flags else name for name in missing})
        raise SpecError(f"spec is missing {', '.join(named)}")
    return fields


def _is_output_kind(value: Any, data: dict[str, Any]) -> bool:
    """Whether an `output` key holds the output kind (older spec files) rather than a head name."""
    return "activation" not in data and value in OUTPUT_KINDS


def spec_flags_argv(fields: dict[str, Any]) -> list[str]:
    """The command-line flags that give these spec fields (for rebuild commands), in flag order."""

    def text(value: Any) -> str:
        if isinstance(value, (tuple, list)):
            return ",".join(text(v) for v in value)
        return repr(value) if isinstance(value, float) else str(value)  # exact: the rebuild gets the same spec

    argv: list[str] = []
    if "input_height" in fields:
        fields = {**fields, "size": f"{fields['input_height']}x{fields['input_width']}"}
    for field, flag in (("class_names", "--classes"), ("size", "--size"), ("scale", "--scale"), ("mean", "--mean"),
                        ("std", "--std"), ("channel_order", "--channels"), ("layout", "--layout"),
                        ("output_name", "--output"), ("output", "--activation"), ("traversable", "--traversable")):
        if fields.get(field) not in (None, (), []):
            argv += [flag, text(fields[field])]
    return argv
