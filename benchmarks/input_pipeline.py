"""How fast the tf.data input pipeline delivers training batches, without a model.

Measures images/s for the synthetic world (n=512, 256x256) and a folder dataset (CamVid from
../shared/data/camvid when present): the first epoch (decode + resize + cache) and the next
epochs (from the cache, with augmentation), plus the evaluation pipeline. With `--model NAME` it
also trains that model for a few steps fed by the pipeline and by one constant batch, so the
difference is the time a training step waits on input (noisy on a busy machine: the pipeline and
the model share the CPU), and reports the pipeline's own time per batch as a share of a step.

    .venv/bin/python benchmarks/input_pipeline.py [--camvid DIR] [--size 256x256] [--batch 8]
                                                  [--model compact_unet]

Prints a table and writes benchmarks/results/input_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.data import open_dataset, parse_size  # noqa: E402
from edgeseg.fileio import atomic_write_text  # noqa: E402


def images_per_second(dataset, epochs: int) -> list[float]:
    """Images/s of each pass over a tf.data dataset."""
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for images, _ in dataset:
            count += int(images.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return rates


def input_wait_fraction(model_name: str, ds, dataset, size, batch: int, steps: int) -> dict:
    """Train `steps` steps fed by the pipeline and by a constant batch; the extra time is input wait."""
    import keras
    import tensorflow as tf

    from edgeseg import models

    classes = ds.classes
    binary = classes.task == "binary"
    model = models.build(model_name, 1 if binary else len(classes.names), (*size, 3))
    ignore = classes.ignore_index
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore)
    model.compile(optimizer="adam", loss=loss)
    images, masks = next(iter(dataset))
    constant = tf.data.Dataset.from_tensors((images, masks)).repeat()
    pipeline = dataset.repeat()
    model.fit(constant, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    model.fit(pipeline, steps_per_epoch=2, epochs=1, verbose=0)
    timings = {"constant": float("inf"), "pipeline": float("inf")}
    for _ in range(2):  # alternate and keep the best: other load on the machine only adds time
        for name, data in (("constant", constant), ("pipeline", pipeline)):
            start = time.perf_counter()
            model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
            timings[name] = min(timings[name], (time.perf_counter() - start) / steps)
    wait = max(0.0, timings["pipeline"] - timings["constant"])
    return {
        "model": model_name,
        "step_s_constant_batch": round(timings["constant"], 4),
        "step_s_pipeline": round(timings["pipeline"], 4),
        "input_wait_fraction": round(wait / timings["pipeline"], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", default=str(REPO.parent / "shared" / "data" / "camvid"))
    parser.add_argument("--size", default="256x256", help="model input HEIGHTxWIDTH")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="passes per dataset (first one fills the cache)")
    parser.add_argument("--synthetic-n", type=int, default=512)
    parser.add_argument("--model", default=None, help="also measure input wait while training this model")
    parser.add_argument("--steps", type=int, default=10, help="training steps per --model measurement")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "input_pipeline.json"))
    args = parser.parse_args()
    size = parse_size(args.size)

    import tensorflow as tf

    from edgeseg.data.pipeline import make_tf_dataset

    sources = []
    try:
        sources.append(("synthetic", open_dataset(f"synthetic://?n={args.synthetic_n}", "train", size=size)))
    except ImportError as err:
        print(f"skipping synthetic: {err}")
    if Path(args.camvid).is_dir():
        sources.append(("camvid", open_dataset(f"camvid:{args.camvid}", "all")))
    else:
        print(f"skipping CamVid: {args.camvid} is absent")

    rows = []
    for name, ds in sources:
        train = make_tf_dataset(ds, size, args.batch, training=True, seed=0)
        train_rates = images_per_second(train, args.epochs)
        evaluation = make_tf_dataset(ds, size, args.batch, training=False, validate=False)
        eval_rates = images_per_second(evaluation, 2)
        row = {
            "dataset": name,
            "samples": len(ds),
            "train_first_epoch_img_s": round(train_rates[0], 1),
            "train_cached_img_s": round(sum(train_rates[1:]) / max(1, len(train_rates) - 1), 1),
            "eval_first_epoch_img_s": round(eval_rates[0], 1),
            "eval_cached_img_s": round(eval_rates[1], 1),
        }
        if args.model:
            row.update(input_wait_fraction(args.model, ds, train, size, args.batch, args.steps))
            # The pipeline's own time per batch against a step: the wait if nothing overlapped.
            batch_s = args.batch / row["train_cached_img_s"]
            row["input_share_without_overlap"] = round(batch_s / (batch_s + row["step_s_constant_batch"]), 3)
        rows.append(row)

    header = ("dataset", "samples", "train 1st epoch", "train cached+aug", "eval 1st", "eval cached")
    print(f"\ninput pipeline, images/s, {size[0]}x{size[1]}, batch {args.batch}, {os.cpu_count()} CPUs")
    print(" | ".join(f"{h:>16}" for h in header))
    for row in rows:
        values = (row["dataset"], row["samples"], row["train_first_epoch_img_s"], row["train_cached_img_s"],
                  row["eval_first_epoch_img_s"], row["eval_cached_img_s"])  # fmt: skip
        print(" | ".join(f"{v:>16}" for v in values))
        if "input_wait_fraction" in row:
            print(f"  {row['model']}: step {row['step_s_constant_batch']} s on a constant batch, "
                  f"{row['step_s_pipeline']} s fed by the pipeline -> {row['input_wait_fraction']:.1%} measured "
                  f"waiting on input; the pipeline's own time is {row['input_share_without_overlap']:.1%} "
                  "of a step even without overlap")  # fmt: skip
    result = {
        "size": list(size),
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
