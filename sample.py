"""Sample from a trained generator: ``python sample.py --ckpt runs/digits/gpt --classes all``."""

import sys

from argen.cli.sample import main

if __name__ == "__main__":
    sys.exit(main())
