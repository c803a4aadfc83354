"""Train a tokenizer, generator or classifier: ``python train.py --config configs/X.yaml``."""

import sys

from argen.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
