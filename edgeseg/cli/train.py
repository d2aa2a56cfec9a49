"""`edgeseg train`: train a segmentation model and write a run folder."""

from __future__ import annotations

from edgeseg.cli import common

HELP = "train a segmentation model (Keras) and write a run folder with model.keras and spec.json"


def add_arguments(parser) -> None:
    parser.add_argument("--model", help="model name, e.g. deeplabv3plus_mobilenetv2 (see --list-models)")
    parser.add_argument("--data", help="dataset: voc:DIR, masks:DIR, camvid:DIR, index:IMAGES,MASKS or synthetic://")
    parser.add_argument("--out", help="run folder to write (model.keras, spec.json, history.csv, pictures)")
    parser.add_argument("--size", type=common.size, default=(256, 256), metavar="HEIGHTxWIDTH",
                        help="input size, height first (default 256x256)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--weights", choices=("none", "imagenet"), default="none",
                        help="backbone initialisation (imagenet downloads Keras' ImageNet weights)")
    parser.add_argument("--width", type=float, help="width multiplier of the MobileNetV2 backbone")
    parser.add_argument("--option", type=common.key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="extra model builder option, repeatable (e.g. filters=32)")
    parser.add_argument("--split", type=common.split, default=(0.8, 0.1, 0.1),
                        help="train,val,test fractions for folders without split lists (default 0.8,0.1,0.1)")
    parser.add_argument("--val-data", help="a separate dataset for validation (default: the val split of --data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for splits, augmentation and weights")
    parser.add_argument("--distribute", choices=("none", "mirrored"), default="none",
                        help="mirrored: tf.distribute.MirroredStrategy over all GPUs (or CPUs)")
    parser.add_argument("--patience", type=int, default=8, help="early-stopping patience in epochs (default 8)")
    parser.add_argument("--steps-per-epoch", type=int, help="training steps per epoch (default: one pass)")
    parser.add_argument("--time-budget", type=common.duration, help="stop after this long, e.g. 15m")
    parser.add_argument("--no-augment", action="store_true", help="turn off augmentation")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--list-models", action="store_true", help="list the model names and exit")


def run(args) -> int:
    from edgeseg import models
    from edgeseg.errors import EdgesegError

    if args.list_models:
        for name in models.available():
            info = models.info(name)
            print(f"{name:28s} stride {info.output_stride:>2}  {info.description}")
        return 0
    if not args.out:
        raise EdgesegError("--out RUN_DIR is required")

    from edgeseg.train.fit import TrainConfig, resume, train

    if args.resume:
        result = resume(args.out, epochs=args.epochs)
    else:
        missing = [flag for flag, value in (("--model", args.model), ("--data", args.data)) if not value]
        if missing:
            raise EdgesegError(f"{' and '.join(missing)} required (or --resume to continue a run)")
        options = dict(args.option)
        if args.width is not None:
            options["width"] = args.width
        config = TrainConfig(
            model=args.model, data=args.data, out=args.out, size=args.size, epochs=args.epochs,
            batch=args.batch, learning_rate=args.lr, weights=None if args.weights == "none" else args.weights,
            seed=args.seed, split=args.split, distribute=args.distribute, patience=args.patience,
            steps_per_epoch=args.steps_per_epoch, time_budget_s=args.time_budget, model_options=options,
            augment=not args.no_augment, val_data=args.val_data,
        )
        result = train(config)
    print(
        f"trained {result.spec.model} for {result.epochs_run} epochs in {result.seconds:.0f} s "
        f"({result.images_per_second:.1f} img/s, stopped by {result.stopped_by}); "
        f"best {result.monitor} {result.best_metric:.4f}; run folder {result.run_dir}"
    )
    return 0
