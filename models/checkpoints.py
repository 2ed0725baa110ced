"""Build checkpoints with random weights, of the real architectures, for plumbing tests.

    python models/checkpoints.py colorize_eccv16 DIR
    python models/checkpoints.py gfpgan DIR
    python models/checkpoints.py sd_turbo DIR

Then ``python models/weights.py install-local NAME DIR`` serves them. They
exercise the serving code end to end on machines without the published
weights; their pictures mean nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from photocraft_models import colorize, faces
from photocraft_models.generate import tiny_random_pipeline

BUILDERS = {"colorize_eccv16": colorize.random_checkpoint, "gfpgan": faces.random_checkpoint,
            "sd_turbo": tiny_random_pipeline}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(BUILDERS))
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    BUILDERS[args.model](args.directory)
    print(f"{args.model}: random checkpoint written to {args.directory}")


if __name__ == "__main__":
    main()
