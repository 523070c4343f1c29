"""Train a multi-timescale LSTM language model: the ``mtlstm-train`` command as a script.

    python examples/train_lm.py                      # small model, embedded WikiText-2 sample, ~4 min
    python examples/train_lm.py --help               # every option
    torchrun --nproc_per_node 2 examples/train_lm.py --cpu   # two CPU processes (gloo)

Everything lives in the library (:mod:`mtlstm_hf.training`); this file only calls it.
"""

import sys

from mtlstm_hf.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
