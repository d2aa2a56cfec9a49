"""A simulator run over several modes from typed options: what `edgeseg sim` does, callable from Python.

    from edgeseg.nav.simrun import SimRunOptions, run_sim

    run = run_sim(SimRunOptions(model="model.onnx", modes=("safe", "adventurous"), json="sim.json"))
    print(run.table)

Every mode drives the same worlds from the same starts (`SimConfig.seed`), so the modes compare
fairly. The model is opened once for all modes; the JSON and the pictures are written atomically.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeseg.errors import EdgesegError
from edgeseg.nav.navigator import NAV_MODES
from edgeseg.nav.sim import SimConfig, SimReport


@dataclass(frozen=True)
class SimRunOptions:
    """One `edgeseg sim` run (its flags, typed).

    Attributes:
        model: a model file, a training run folder, or "oracle" (the renderer's exact masks).
        modes: the navigation modes to compare, in order.
        config: episodes, length, seed, rate, speed, navigator (see SimConfig).
        backend, threads, spec: how the model is opened (spec None: the model's own).
        json: write every episode and the per-mode totals here.
        picture: top-down trajectories (PNG); with several modes one per mode (`picture_paths`).
        max_collisions: a mode that collides more often fails the run (`SimRun.ok`); None: report only.
        progress: a progress bar on stderr (None: when stderr is a terminal).
    """

    model: str | Path
    modes: tuple[str, ...] = ("safe",)
    config: SimConfig = field(default_factory=SimConfig)
    backend: str = "auto"
    threads: int | None = None
    spec: Any = None
    json: str | Path | None = None
    picture: str | Path | None = None
    max_collisions: int | None = None
    progress: bool | None = None

    def to_argv(self) -> list[str]:
        """The `edgeseg sim` arguments for this run, to print what it does by hand (defaults left out).

        Only the SimConfig fields `edgeseg sim` has flags for are rendered; a `spec` is not.
        """
        argv = ["sim", "--model", str(self.model), "--mode", ",".join(self.modes)]
        config, default = self.config, SimConfig()
        for value, default_value, flag in (
                (config.episodes, default.episodes, "--episodes"),
                (config.max_seconds, default.max_seconds, "--seconds"),
                (config.seed, default.seed, "--seed"), (config.hz, default.hz, "--hz"),
                (config.max_speed_mps, default.max_speed_mps, "--max-speed"),
                (config.navigator, default.navigator, "--navigator"), (self.backend, "auto", "--backend"),
                (self.threads, None, "--threads"), (self.json, None, "--json"), (self.picture, None, "--picture"),
                (self.max_collisions, None, "--max-collisions")):
            if value != default_value:
                argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if self.progress is not None:
            argv.append("--progress" if self.progress else "--no-progress")
        return argv

    def __post_init__(self) -> None:
        unknown = [mode for mode in self.modes if mode not in NAV_MODES]
        if not self.modes or unknown or len(set(self.modes)) != len(self.modes):
            raise EdgesegError(f"modes {list(self.modes)} are not distinct names from {', '.join(NAV_MODES)}")
        if self.max_collisions is not None and self.max_collisions < 0:
            raise EdgesegError(f"max collisions must be 0 or more, got {self.max_collisions}")


@dataclass
class SimRun:
    """What a run drove: one report per mode, in the order asked.

    Attributes:
        over_limit: "MODE N" for each mode with more than max_collisions collisions.
        pictures: the trajectory picture per mode, where written.
    """

    model: str
    backend: str
    reports: list[SimReport]
    over_limit: list[str] = field(default_factory=list)
    json_path: Path | None = None
    pictures: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.over_limit

    @property
    def table(self) -> str:
        from edgeseg.nav.sim import format_table

        return format_table(self.reports)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "backend": self.backend,
                "summary": [report.summary() for report in self.reports],
                "modes": {report.mode: report.to_dict() for report in self.reports}}


def picture_paths(path: str | Path, names: tuple[str, ...]) -> dict[str, Path]:
    """One picture per mode: the path itself for one mode, else `stem_MODE.suffix` beside it."""
    path = Path(path)
    if len(names) == 1:
        return {names[0]: path}
    return {name: path.with_name(f"{path.stem}_{name}{path.suffix or '.png'}") for name in names}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_sim(options: SimRunOptions, log: Callable[[str], None] = _stderr) -> SimRun:
    """Drive every mode through the same worlds; write the JSON and pictures asked for.

    Args:
        log: where progress lines go ("edgeseg sim: ...", "wrote ..."); stderr by default.
    """
    from edgeseg.fileio import atomic_write_text
    from edgeseg.nav import sim

    config = options.config
    progress = sys.stderr.isatty() if options.progress is None else options.progress
    reports = []
    with contextlib.ExitStack() as stack:
        if str(options.model) == sim.ORACLE:
            perceive, backend = sim.ORACLE, "renderer masks"
        else:
            extra: dict[str, Any] = {"threads": options.threads} if options.threads else {}
            if options.spec is not None:
                extra["spec"] = options.spec
            perceive = stack.enter_context(sim.perceiver_from_model(options.model, backend=options.backend, **extra))
            backend = perceive.backend_name
            _note_classes(perceive.spec, log)
        log(f"edgeseg sim: {options.model} ({backend}), {config.episodes} episodes x {config.max_seconds:g} s "
            f"per mode, worlds {config.seed}..{config.seed + config.episodes - 1}")
        for mode in options.modes:
            reports.append(sim.simulate(perceive, mode, config, progress=progress))

    result = SimRun(str(options.model), backend, reports)
    if options.json:
        result.json_path = Path(options.json)
        atomic_write_text(result.json_path, json.dumps(result.to_dict(), indent=2) + "\n")
        log(f"wrote {options.json}")
    if options.picture:
        paths = picture_paths(options.picture, options.modes)
        for report in reports:
            sim.trajectory_picture(report, paths[report.mode])
            result.pictures[report.mode] = paths[report.mode]
            log(f"wrote {paths[report.mode]}")
    if options.max_collisions is not None:
        result.over_limit = [f"{r.mode} {r.collisions}" for r in reports if r.collisions > options.max_collisions]
    return result


def _note_classes(spec: object, log: Callable[[str], None]) -> None:
    from edgeseg.data.synthetic import SYNTHETIC_CLASSES

    names = tuple(getattr(spec, "class_names", ()))
    if names != SYNTHETIC_CLASSES:
        log(f"edgeseg sim: note: the model's classes {', '.join(names)} are not the synthetic world's "
            f"({', '.join(SYNTHETIC_CLASSES)}); it drives on its traversable classes "
            f"{', '.join(getattr(spec, 'traversable', ()))}")
