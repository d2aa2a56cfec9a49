"""`edgeseg train`: fit a model on a dataset and write a run folder the export stage consumes.

A run folder holds:
    model.keras       the best model so far (by validation mean IoU, or Dice for binary tasks)
    spec.json         the ModelSpec
    history.csv       one row per epoch
    curves.png        loss and metric curves
    samples.png       image | truth | prediction for a few validation images
    config.json       the TrainConfig, for reproducing and resuming
    summary.json      epochs, time, throughput and best metric; written last, when the run finished
    checkpoint/       last.keras (with optimizer state) and state.json, for --resume

Every file is written atomically, so an interrupted run leaves its last good checkpoint intact.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.fileio import atomic_path, atomic_write_text
from edgeseg.spec import ModelSpec

MODEL_FILENAME = "model.keras"
CONFIG_FILENAME = "config.json"
HISTORY_FILENAME = "history.csv"
SUMMARY_FILENAME = "summary.json"  # written last: its presence means the run finished
CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to config.json)."""

    model: str
    data: str
    out: str
    size: tuple[int, int] = (256, 256)
    epochs: int = 30
    batch: int = 8
    learning_rate: float = 1e-3
    weights: str | None = None
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    distribute: str = "none"  # "none" | "mirrored"
    patience: int = 8  # early stopping, in epochs without improvement
    steps_per_epoch: int | None = None  # None: one pass over the training set
    time_budget_s: float | None = None  # stop after this long (the demo uses it)
    model_options: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    val_data: str | None = None  # a separate --data spec for validation

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        data = json.loads(text)
        data["size"] = tuple(data["size"])
        data["split"] = tuple(data["split"])
        return cls(**data)


@dataclass
class TrainResult:
    run_dir: Path
    spec: ModelSpec
    epochs_run: int
    best_metric: float
    monitor: str
    seconds: float
    images_per_second: float
    stopped_by: str  # "epochs", "early_stopping", "time_budget"


def spec_for(classes, model_name: str, size: tuple[int, int]) -> ModelSpec:
    """The ModelSpec of an edgeseg model: float RGB [0, 255] input, normalised inside the network."""
    binary = classes.task == "binary"
    return ModelSpec(
        class_names=classes.names,
        input_height=size[0],
        input_width=size[1],
        task=classes.task,
        output="sigmoid" if binary else "logits",
        palette=classes.palette,
        ignore_index=classes.ignore_index,
        traversable=classes.traversable,
        model=model_name,
    )


def monitor_for(task: str) -> str:
    return "val_dice" if task == "binary" else "val_mean_iou"


def make_strategy(kind: str):
    """The tf.distribute strategy for `--distribute`; MirroredStrategy spans all GPUs, else all CPUs."""
    import tensorflow as tf

    if kind == "none":
        return tf.distribute.get_strategy()
    if kind != "mirrored":
        raise EdgesegError(f"unknown --distribute {kind!r}; use none or mirrored")
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def _callbacks(run_dir: Path, monitor: str, config: TrainConfig, best_so_far: float, start: float):
    import keras

    class AtomicCheckpoint(keras.callbacks.Callback):
        """Saves the best model and the last state through temp files, so a kill never corrupts them."""

        def __init__(self, best: float):
            super().__init__()
            self.best = best

        def on_epoch_end(self, epoch, logs=None):
            value = float((logs or {}).get(monitor, float("nan")))
            if not math.isnan(value) and value > self.best:
                self.best = value
                with atomic_path(run_dir / MODEL_FILENAME) as tmp:
                    self.model.save(tmp)
            checkpoint = run_dir / CHECKPOINT_DIR
            with atomic_path(checkpoint / "last.keras") as tmp:
                self.model.save(tmp)
            state = {"epoch": epoch + 1, "best": self.best, "monitor": monitor}
            atomic_write_text(checkpoint / "state.json", json.dumps(state))

    class TimeBudget(keras.callbacks.Callback):
        """Stops training once the time budget is spent (checked after each batch)."""

        def __init__(self, seconds: float):
            super().__init__()
            self.seconds = seconds
            self.triggered = False

        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() - start > self.seconds:
                self.triggered = True
                self.model.stop_training = True

    checkpoint = AtomicCheckpoint(best_so_far)
    early = keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=config.patience)
    callbacks = [
        checkpoint,
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode="max", factor=0.5, patience=max(2, config.patience // 3), min_lr=1e-6
        ),
        early,
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILENAME), append=True),
    ]
    budget = None
    if config.time_budget_s:
        budget = TimeBudget(config.time_budget_s)
        callbacks.append(budget)
    return callbacks, checkpoint, early, budget


def _load_resume_state(run_dir: Path) -> dict | None:
    state_path = run_dir / CHECKPOINT_DIR / "state.json"
    if not state_path.exists():
        return None
    return json.loads(state_path.read_text())


def train(config: TrainConfig, progress: bool | None = None) -> TrainResult:
    """Train `config.model` on `config.data`; write the run folder; return a summary.

    With a run folder that already has a checkpoint, pass `resume=True` through
    `train_or_resume`; this function refuses to overwrite an existing run.
    """
    return _train(config, resume=False, progress=progress)


def resume(run_dir: str | Path, epochs: int | None = None, progress: bool | None = None) -> TrainResult:
    """Continue an interrupted run from its last checkpoint (`edgeseg train --resume`)."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILENAME
    if not config_path.exists():
        raise EdgesegError(f"{run_dir} is not an edgeseg run folder (no {CONFIG_FILENAME}); cannot resume")
    config = TrainConfig.from_json(config_path.read_text())
    config.out = str(run_dir)  # the folder may have been moved or copied since
    if epochs is not None:
        config.epochs = epochs
    return _train(config, resume=True, progress=progress)


def _train(config: TrainConfig, resume: bool, progress: bool | None) -> TrainResult:
    from edgeseg import models
    from edgeseg.data.sources import open_dataset, validate_dataset

    run_dir = Path(config.out)
    models.check_input_size(config.model, *config.size)  # fail before any heavy work
    state = _load_resume_state(run_dir) if resume else None
    if resume and state is None:
        raise EdgesegError(f"{run_dir} has no checkpoint to resume from; start it again without --resume")
    if not resume and (run_dir / CHECKPOINT_DIR).exists():
        raise EdgesegError(
            f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out"
        )

    # Splits use open_dataset's fixed seed, not --seed: runs with different seeds stay comparable.
    train_ds = open_dataset(config.data, subset="train", split=config.split, size=config.size)
    val_spec = config.val_data or config.data
    val_ds = open_dataset(val_spec, subset="val", split=config.split, size=config.size)
    validate_dataset(train_ds)
    validate_dataset(val_ds)
    if len(val_ds) == 0:
        raise EdgesegError(f"the validation split of {val_spec} is empty; use a larger dataset or --split")
    if len(train_ds) < config.batch:
        raise EdgesegError(
            f"the training split has {len(train_ds)} images, fewer than the batch size {config.batch}; "
            "lower --batch or add data"
        )

    import keras
    import tensorflow as tf

    from edgeseg.data.pipeline import make_tf_dataset
    from edgeseg.train.losses import loss_for_task
    from edgeseg.train.metrics import metrics_for_task

    keras.utils.set_random_seed(config.seed)
    classes = train_ds.classes
    spec = spec_for(classes, config.model, config.size)
    monitor = monitor_for(spec.task)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec.save(run_dir / "spec.json")
    atomic_write_text(run_dir / CONFIG_FILENAME, config.to_json())

    strategy = make_strategy(config.distribute)
    replicas = strategy.num_replicas_in_sync
    if config.batch % replicas:
        raise EdgesegError(f"--batch {config.batch} must be a multiple of the {replicas} replicas")
    train_tf = make_tf_dataset(train_ds, config.size, config.batch, training=True, seed=config.seed,
                               augment=None if config.augment else False, validate=False)
    val_tf = make_tf_dataset(val_ds, config.size, config.batch, training=False, seed=config.seed,
                             validate=False)

    with strategy.scope():
        if state is not None:
            model = keras.models.load_model(run_dir / CHECKPOINT_DIR / "last.keras")
        else:
            num_outputs = 1 if spec.task == "binary" else spec.num_classes
            model = models.build(config.model, num_outputs, (*config.size, 3), weights=config.weights,
                                 **config.model_options)
            model.compile(
                optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=loss_for_task(spec.task, spec.num_classes, spec.ignore_index),
                metrics=metrics_for_task(spec.task, spec.num_classes, spec.ignore_index),
            )

    initial_epoch = state["epoch"] if state else 0
    best = state["best"] if state else -math.inf
    start = time.monotonic()
    callbacks, checkpoint, early, budget = _callbacks(run_dir, monitor, config, best, start)
    if progress is None:
        progress = sys.stdout.isatty()
    steps = config.steps_per_epoch or max(1, len(train_ds) // config.batch)
    if initial_epoch >= config.epochs:
        raise EdgesegError(
            f"{run_dir} already trained {initial_epoch} epochs; pass --epochs larger than that to continue"
        )
    history = model.fit(
        train_tf.repeat() if config.steps_per_epoch else train_tf,
        validation_data=val_tf,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=config.steps_per_epoch,
        callbacks=callbacks,
        verbose=1 if progress else 2,
        shuffle=False,  # the tf.data pipeline shuffles
    )
    seconds = time.monotonic() - start
    epochs_run = len(history.history.get("loss", []))
    if not (run_dir / MODEL_FILENAME).exists():
        raise EdgesegError(f"training produced no model with a finite {monitor}; check the data and --lr")

    stopped_by = "epochs"
    if budget is not None and budget.triggered:
        stopped_by = "time_budget"
    elif early.stopped_epoch:
        stopped_by = "early_stopping"

    from edgeseg.runtime.keras_backend import load_keras_model
    from edgeseg.train import plots
    from edgeseg.train.evaluate import sample_predictions

    rows = read_history(run_dir / HISTORY_FILENAME)
    plots.training_curves(rows, run_dir / "curves.png", monitor=monitor)
    best_model = load_keras_model(run_dir / MODEL_FILENAME)
    sample_predictions(best_model, val_ds, spec, run_dir / "samples.png")
    result = TrainResult(
        run_dir=run_dir,
        spec=spec,
        epochs_run=epochs_run,
        best_metric=checkpoint.best,
        monitor=monitor,
        seconds=seconds,
        images_per_second=(epochs_run * steps * config.batch) / max(seconds, 1e-9),
        stopped_by=stopped_by,
    )
    summary = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("run_dir", "spec")}
    atomic_write_text(run_dir / SUMMARY_FILENAME, json.dumps(summary, indent=2) + "\n")
    return result


def read_history(path: Path) -> list[dict[str, float]]:
    """The CSV log as a list of rows (floats), one per epoch."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
