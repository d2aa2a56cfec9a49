"""Engine integrity: an engine runs only if it is the file its manifest describes.

`edgeseg build-engine` records in the manifest (`model.engine.json`, `model.cpu.onnx.json`)
the sha256 of the engine file and of the spec it carries. Every backend that opens an engine
calls `verify_engine(path)` first: a float model copied over the INT8 engine, an engine with
changed weights of the same size, or a manifest whose spec was edited is refused with the
command that rebuilds it, instead of driving on a model nobody verified. A plain ONNX model
with no manifest beside it is not an engine and is not checked.

Hashing reads the whole file once: 0.8 ms for the demo's 1.1 MB engine, under 2 ms per MB for
large ones on a 2-core x86 (docs/deployment.md, `benchmarks/engine_verify.py`).
`verify=False` (`--no-verify-engine`) skips the check.

Only json, hashlib and edgeseg.fileio are used here, so the runtime does not import the
engine-building package to check an engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgeseg.errors import EngineError
from edgeseg.fileio import file_sha256

MANIFEST_SUFFIX = ".json"
SKIP_HINT = "--no-verify-engine (verify=False) opens it anyway, if you know why it changed"


def spec_sha256(spec: dict[str, Any]) -> str:
    """sha256 of a spec's dict (`ModelSpec.to_dict()`) as canonical JSON: sorted keys, no spaces."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_engine(path: str | Path) -> bool:
    """Check the engine at `path` against the manifest beside it.

    Returns:
        True if a manifest was found and the engine matches it; False if there is no manifest
        (a plain model, not an engine).

    Raises:
        EngineError: the manifest is unreadable, records no hashes (built before they were
            recorded), or the engine's or the spec's sha256 differs from it.
    """
    path = Path(path)
    manifest_file = path.with_name(path.name + MANIFEST_SUFFIX)
    if not manifest_file.is_file():
        return False
    try:
        data = json.loads(manifest_file.read_text())
        expected, spec, spec_expected = data.get("engine_sha256"), data.get("spec"), data.get("spec_sha256")
        rebuild = str(data.get("build_command") or f"edgeseg build-engine model.onnx -o {path.name}")
    except (OSError, ValueError, AttributeError) as err:
        raise EngineError(f"cannot read {manifest_file} ({err}); rebuild the engine: edgeseg build-engine") from None
    if not expected or not spec_expected:
        raise EngineError(
            f"{manifest_file.name} records no sha256 of {path.name} (it was built by an older edgeseg), so "
            f"edgeseg cannot tell whether the file is the engine that was built; rebuild it: {rebuild}; or {SKIP_HINT}"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise EngineError(
            f"{path} is not the engine its manifest describes: its sha256 is {actual[:12]}..., the manifest "
            f"records {str(expected)[:12]}... (the file was replaced or changed after the build); rebuild it: "
            f"{rebuild}; or {SKIP_HINT}"
        )
    if not isinstance(spec, dict) or spec_sha256(spec) != spec_expected:
        raise EngineError(
            f"the spec in {manifest_file} was changed after the build (its sha256 differs from the one "
            f"recorded), so the engine would be preprocessed and navigated with a spec nobody built it "
            f"for; rebuild it: {rebuild}; or {SKIP_HINT}"
        )
    return True
