"""The engine manifest moved to `edgeseg.artifact.manifest`; re-exported here for existing imports."""

from edgeseg.artifact.manifest import (  # noqa: F401
    BACKENDS,
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    PRECISIONS,
    CalibrationInfo,
    EngineManifest,
    GpuInfo,
    ProfileShapes,
    calibration_from_record,
    check_manifest,
    manifest_path,
    read_manifest,
    utc_now,
    write_manifest,
)
