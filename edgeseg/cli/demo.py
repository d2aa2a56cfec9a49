"""`edgeseg demo`: the main job on the built-in synthetic world, with no download and no hardware.

Stages run in order and each is skipped when its output already exists (unless --fresh), so
re-running the demo reuses what is built.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edgeseg.cli import common

HELP = "train and evaluate the RC-car navigation model on the built-in synthetic world"

DEMO_MODEL = "deeplabv3plus_mobilenetv2"
DEMO_DATA = "synthetic://?seed=0&n=2000"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo", help="output folder (default: demo)")
    parser.add_argument("--time-budget", type=common.duration, default=11 * 60.0,
                        help="training time budget (default 11m: the whole demo fits in 15 minutes on 2 cores)")
    parser.add_argument("--size", type=common.size, default=(256, 256), help="model input HxW (default 256x256)")
    parser.add_argument("--data", default=DEMO_DATA, help=f"training data (default {DEMO_DATA})")
    parser.add_argument("--fresh", action="store_true", help="delete the output folder and start over")


def run(args) -> int:
    from edgeseg.train.evaluate import evaluate
    from edgeseg.train.fit import MODEL_FILENAME, SUMMARY_FILENAME, TrainConfig, train

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    run_dir = out / "model"
    started = time.monotonic()

    if (run_dir / SUMMARY_FILENAME).exists():
        print(f"[1/2] train: reusing {run_dir / MODEL_FILENAME} (pass --fresh to retrain)")
    else:
        print(f"[1/2] train: {DEMO_MODEL} on {args.data} at {args.size[0]}x{args.size[1]}, "
              f"budget {args.time_budget / 60:.0f} min")
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an interrupted demo run: start its training again
        config = TrainConfig(
            model=DEMO_MODEL, data=args.data, out=str(run_dir), size=args.size, epochs=100, batch=8,
            learning_rate=2e-3, steps_per_epoch=100, time_budget_s=args.time_budget, patience=100,
        )
        result = train(config)
        print(f"      {result.epochs_run} epochs in {result.seconds:.0f} s, best {result.monitor} "
              f"{result.best_metric:.3f}")

    print("[2/2] evaluate: held-out synthetic test frames (other seeds than training)")
    report = evaluate(run_dir, args.data, subset="test", out_dir=out / "eval", json_path=out / "eval.json")
    print(report.table)
    print(f"done in {time.monotonic() - started:.0f} s; results in {out}/ "
          f"(model/curves.png, model/samples.png, eval/*.png, eval.json)")
    return 0
