"""`edgeseg bench`: one table of latency, FPS, peak memory and mean IoU for models and engines.

    edgeseg bench model.onnx model.int8.onnx runs/road --threads 2
    edgeseg bench model.onnx model.engine --data synthetic:// --max-frames 100 --json bench.json

Each model is timed alone, in a fresh process (so its memory and thread pools are its own); the
table is markdown, the form the docs' performance tables take. See `edgeseg.bench`.
"""

from __future__ import annotations

from edgeseg.cli import common

HELP = "time models and engines: latency p50/p95, FPS, peak memory, mean IoU with --data; one table"


def add_arguments(parser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help=".onnx (float or INT8), .keras or a training run folder, .engine")
    parser.add_argument("--runs", type=common.positive_int, default=100, metavar="N",
                        help="timed runs per model (default 100)")
    parser.add_argument("--warmup", type=common.non_negative_int, default=10, metavar="N",
                        help="untimed warm-up runs per model (default 10)")
    parser.add_argument("--threads", type=common.positive_int, metavar="N",
                        help="inference threads (onnxruntime, keras; default: the runtime's choice)")
    parser.add_argument("--backend", choices=common.BACKEND_CHOICES, default="auto")
    parser.add_argument("--data", help="dataset spec with masks, adds each model's mean IoU, e.g. synthetic://")
    parser.add_argument("--subset", choices=("train", "val", "test", "all"), default="test")
    parser.add_argument("--split", type=common.split, default=(0.8, 0.1, 0.1),
                        help="train,val,test fractions for folders without their own split")
    parser.add_argument("--max-frames", type=common.positive_int, default=100, metavar="N",
                        help="frames scored per model, spread over the subset (default 100)")
    parser.add_argument("--json", metavar="FILE", help="write machine, settings and results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    common.add_spec_arguments(parser)


def run(args) -> int:
    from edgeseg.bench import bench
    spec = common.spec_from_args(args, args.models[0])  # the spec flags describe every model given
    report = bench(
        args.models,
        data=args.data,
        subset=args.subset,
        split=args.split,
        max_frames=args.max_frames,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        backend=args.backend,
        spec=spec,
        json_path=args.json,
        progress=not args.no_progress,
    )
    print(report.table())
    if args.json:
        print(f"report: {args.json}")
    return 0
