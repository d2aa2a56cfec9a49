"""ModelSpec moved to `edgeseg.artifact.spec`; this module re-exports it for existing imports."""

from edgeseg.artifact.spec import (  # noqa: F401
    CHANNEL_ORDERS,
    LAYOUTS,
    ONNX_METADATA_KEY,
    OUTPUT_KINDS,
    RESIZE_MODES,
    SPEC_FILENAME,
    TASKS,
    ModelSpec,
    default_palette,
)
