"""`edgeseg demo`: the whole path on the built-in synthetic world, with no download."""

HELP = "train and evaluate the navigation model on the built-in synthetic world"


def add_arguments(parser):
    parser.add_argument("--out", default="demo", help="output folder (default: demo)")


def run(args) -> int:
    raise NotImplementedError("demo is wired up once train and evaluate land")
