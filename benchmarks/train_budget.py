"""Train a model within a wall-clock budget, then score it on held-out data.

    python benchmarks/train_budget.py --name synthetic                       # the defaults below
    python benchmarks/train_budget.py --name camvid --data camvid:../shared/data/camvid \
        --size 256x336 --split 0.8,0.2,0 --subset val
    python benchmarks/train_budget.py --name isbi --model unet --option filters=32 \
        --data "masks:../shared/data/isbi2012-membrane/train?classes=membrane,cell" \
        --split 0.8334,0.1666,0 --subset val --size 256x256 --batch 4

Targets (issue 2), each within 15 minutes of training on this 2-core CPU: synthetic world mean IoU
>= 0.90 (deeplabv3plus_mobilenetv2, 256x256, held-out seeds); CamVid road IoU >= 0.85; ISBI cell
Dice >= 0.90. Prints a table and writes benchmarks/results/train_<name>.json.
"""

from __future__ import annotations

import argparse
import shutil

from _table import print_table, write_json

from edgeseg.cli.common import duration, key_value, size, split
from edgeseg.train.evaluate import evaluate
from edgeseg.train.fit import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="synthetic")
    parser.add_argument("--model", default="deeplabv3plus_mobilenetv2")
    parser.add_argument("--data", default="synthetic://?seed=0&n=2000")
    parser.add_argument("--size", type=size, default=(256, 256))
    parser.add_argument("--split", type=split, default=(0.8, 0.1, 0.1))
    parser.add_argument("--subset", default="test", help="held-out subset to score (default test)")
    parser.add_argument("--budget", type=duration, default=15 * 60.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--option", type=key_value, action="append", default=[])
    parser.add_argument("--out", help="run folder (default runs/bench-NAME)")
    args = parser.parse_args()

    out = args.out or f"runs/bench-{args.name}"
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(model=args.model, data=args.data, out=out, size=args.size, epochs=1000,
                         batch=args.batch, learning_rate=args.lr, steps_per_epoch=args.steps_per_epoch,
                         time_budget_s=args.budget, patience=1000, split=args.split,
                         model_options=dict(args.option))
    result = train(config, progress=False)
    report = evaluate(out, args.data, subset=args.subset, split=args.split, out_dir=f"{out}/eval",
                      progress=False)
    scores = report.scores
    row = {"data": args.name, "model": args.model, "size": f"{args.size[0]}x{args.size[1]}",
           "budget_min": args.budget / 60, "train_s": round(result.seconds), "epochs": result.epochs_run,
           "img_per_s": round(result.images_per_second, 2), f"best_{result.monitor}": round(result.best_metric, 4),
           f"{args.subset}_miou": round(scores.mean_iou, 4), f"{args.subset}_images": report.images}
    if scores.dice is not None:
        row[f"{args.subset}_dice"] = round(scores.dice, 4)
    print_table([row], list(row))
    print(report.table)
    write_json(f"train_{args.name}", {"command": " ".join(__import__("sys").argv), "config": config.to_json(),
                                      "result": row, "scores": scores.to_dict()})


if __name__ == "__main__":
    main()
