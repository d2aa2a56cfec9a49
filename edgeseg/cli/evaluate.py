"""`edgeseg evaluate`: metrics table, confusion matrix and best/worst pictures for a trained model."""

from __future__ import annotations

import json
from pathlib import Path

from edgeseg.cli import common

HELP = "evaluate a trained model: mean IoU, per-class IoU, confusion matrix, best and worst images"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="run folder or model.keras (with spec.json beside it)")
    parser.add_argument("--data", help="dataset spec (default: the run's training data)")
    parser.add_argument("--subset", choices=("train", "val", "test", "all"), default="test")
    parser.add_argument("--split", type=common.split, help="train,val,test fractions (default: the run's)")
    parser.add_argument("--json", help="write the metrics as JSON to this file")
    parser.add_argument("--out", help="folder for the pictures (default: RUN_DIR/eval-SUBSET)")
    parser.add_argument("--batch", type=int, default=8)


def run(args) -> int:
    from edgeseg.errors import EdgesegError
    from edgeseg.train.evaluate import evaluate
    from edgeseg.train.fit import CONFIG_FILENAME

    model = Path(args.model)
    run_dir = model if model.is_dir() else model.parent
    config = {}
    if (run_dir / CONFIG_FILENAME).exists():
        config = json.loads((run_dir / CONFIG_FILENAME).read_text())
    data = args.data or config.get("data")
    if not data:
        raise EdgesegError(f"--data is required: {run_dir} has no {CONFIG_FILENAME} naming its dataset")
    split = args.split or tuple(config.get("split", (0.8, 0.1, 0.1)))
    out = Path(args.out) if args.out else run_dir / f"eval-{args.subset}"
    report = evaluate(model, data, subset=args.subset, split=split, out_dir=out,
                      json_path=args.json, batch=args.batch)
    print(f"{report.model} on {report.data} [{report.subset}], {report.images} images")
    print(report.table)
    print("pictures: " + ", ".join(report.pictures.values()))
    return 0
