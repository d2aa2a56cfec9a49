"""Training throughput of every model at 256x256, and the share of step time spent waiting for input.

    python benchmarks/train_throughput.py [--models ...] [--steps 12] [--batch 4] [--size 256x256]

Each model trains on the synthetic world through the real tf.data pipeline (cached, augmented,
prefetched) with `train_on_batch`; the time spent in `next(iterator)` is input waiting. The first
steps (graph tracing, cache filling) are warm-up and not counted. Prints a table and writes
benchmarks/results/train_throughput.json. Aim (issue 2): input waiting under 10% of step time.
"""

from __future__ import annotations

import argparse
import time

from _table import print_table, write_json

from edgeseg.cli.common import size


def measure(name: str, size_hw: tuple[int, int], batch: int, steps: int, warmup: int) -> dict:
    import keras

    from edgeseg import models
    from edgeseg.data.pipeline import make_tf_dataset
    from edgeseg.data.sources import open_dataset
    from edgeseg.train.losses import loss_for_task
    from edgeseg.train.metrics import metrics_for_task

    dataset = open_dataset(f"synthetic://?n={batch * 8}", subset="train", size=size_hw)
    pipeline = make_tf_dataset(dataset, size_hw, batch, training=True).repeat()
    model = models.build(name, 4, (*size_hw, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss_for_task("multiclass", 4),
                  metrics=metrics_for_task("multiclass", 4))
    iterator = iter(pipeline)
    for _ in range(warmup):
        model.train_on_batch(*next(iterator))
    waiting = total = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        images, masks = next(iterator)
        ready = time.perf_counter()
        model.train_on_batch(images, masks)
        end = time.perf_counter()
        waiting += ready - start
        total += end - start
    return {"model": name, "params_M": round(model.count_params() / 1e6, 2), "batch": batch,
            "step_s": round(total / steps, 3), "img_per_s": round(batch * steps / total, 2),
            "input_wait_pct": round(100 * waiting / total, 2)}


def main() -> None:
    from edgeseg import models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=models.available())
    parser.add_argument("--size", type=size, default=(256, 256))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows.append(measure(name, args.size, args.batch, args.steps, args.warmup))
        print(rows[-1], flush=True)
    print_table(rows, list(rows[0]))
    write_json("train_throughput", {"size": list(args.size), "rows": rows})


if __name__ == "__main__":
    main()
