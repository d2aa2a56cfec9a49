"""ModelSpec: the contract every edgeseg artifact carries.

`train` writes it beside `model.keras`, `export` embeds it in the ONNX `metadata_props`
(key `edgeseg.spec`), quantized models keep it and engine manifests copy it. The runtime builds
its preprocessing from the spec alone, so training, calibration, verification and streaming
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
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
        output: what the output tensor holds: "logits", "probabilities" or "sigmoid".
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
        if not isinstance(data, dict):
            raise SpecError(f"a spec is a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec fields {unknown}; known fields are {sorted(known)}")
        missing = [name for name in ("class_names", "input_height", "input_width") if name not in data]
        if missing:
            raise SpecError(f"spec is missing {', '.join(missing)}")
        return cls(**data)

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
