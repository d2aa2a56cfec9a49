"""Train the robot model on the synthetic world within a time budget; report held-out mean IoU.

    python benchmarks/train_synthetic.py [--budget 15m] [--model deeplabv3plus_mobilenetv2] [--out runs/bench-synthetic]

Target (issue 2): deeplabv3plus_mobilenetv2 at 256x256 reaches mean IoU >= 0.90 on held-out synthetic
frames (other seeds than training) within 15 minutes of training on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import shutil

from _table import print_table, write_json

from edgeseg.cli.common import duration, key_value, size
from edgeseg.train.evaluate import evaluate
from edgeseg.train.fit import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="deeplabv3plus_mobilenetv2")
    parser.add_argument("--data", default="synthetic://?seed=0&n=2000")
    parser.add_argument("--size", type=size, default=(256, 256))
    parser.add_argument("--budget", type=duration, default=15 * 60.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--option", type=key_value, action="append", default=[])
    parser.add_argument("--out", default="runs/bench-synthetic")
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    config = TrainConfig(model=args.model, data=args.data, out=args.out, size=args.size, epochs=1000,
                         batch=args.batch, learning_rate=args.lr, steps_per_epoch=args.steps_per_epoch,
                         time_budget_s=args.budget, patience=1000, model_options=dict(args.option))
    result = train(config, progress=False)
    report = evaluate(args.out, args.data, subset="test", progress=False)
    row = {"model": args.model, "size": f"{args.size[0]}x{args.size[1]}", "budget_min": args.budget / 60,
           "train_s": round(result.seconds), "epochs": result.epochs_run,
           "img_per_s": round(result.images_per_second, 2), "val_best": round(result.best_metric, 4),
           "test_miou": round(report.scores.mean_iou, 4), "test_images": report.images}
    print_table([row], list(row))
    print(report.table)
    write_json(f"train_synthetic_{args.model}", {"result": row, "test_scores": report.scores.to_dict()})


if __name__ == "__main__":
    main()
