"""``mtlstm-convert``: an AWD-LSTM-family checkpoint as an mtlstm model folder.

Examples::

    mtlstm-convert --from awd-lstm PTB.state_dict.pt --vocab data/penn runs/awd-ptb
    mtlstm-convert --from huthlab-mts PTB-mts.state_dict.pt --vocab data/penn runs/mts-ptb
    mtlstm-convert --from fastai-awd-lstm models/lm.pth --vocab itos.json runs/ulmfit
    mtlstm-convert --from word-language-model model.state_dict.pt --vocab data/wikitext-2 runs/wlm

WEIGHTS is a ``state_dict`` file (``torch.save(model.state_dict(), f)``, read with
``torch.load(weights_only=True)``) or safetensors. The original repositories save whole pickled
objects; those are refused, and the error gives the one-line export to run where the model was
made (:data:`mtlstm_hf.convert.sources.EXPORT_HINTS`). VOCAB is the corpus folder the original
read (train/valid/test; ids in order of first occurrence, ``<eos>`` per line) or a word-list
file in id order (fastai's ``itos``: JSON, a pickled list, or one word per line). The library
function behind the command is :func:`mtlstm_hf.convert.convert_checkpoint`.

Exit codes (:mod:`mtlstm_hf.exit_codes`, the same for every command): 0 done, 2 bad input
(a full pickle, a truncated or damaged file, another architecture, another family's layout (the
message names the ``--from`` that fits), a missing tensor, sizes that do not fit, a vocabulary
of another size, a word-list entry no text can produce, OUTPUT_DIR not empty; nothing is
written), 4 I/O failure (disk full, permission denied, read-only file system, a failing disk),
130 interrupted. Errors are one line on stderr naming what was
found and what was expected.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import exit_codes
from ..command_line import add_threads_option, apply_threads
from .sources import EXPORT_HINTS, SOURCES

__all__ = ["build_parser", "main"]

PROG = "mtlstm-convert"


def _epilog() -> str:
    hints = " ".join(f"{name}: {hint}." for name, hint in EXPORT_HINTS.items())
    return (
        "A full pickle (the originals' torch.save([model, criterion, optimizer]) or torch.save(model)) is "
        f"never unpickled; export it once where it was made: {hints} {exit_codes.epilog()}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``mtlstm-convert``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert an LSTM language model of the AWD-LSTM family (salesforce awd-lstm-lm, HuthLab "
        "multi-timescale, fastai AWD_LSTM, PyTorch word_language_model) into an mtlstm folder that "
        "AutoModelForCausalLM / AutoTokenizer load, with assigned timescales recognised.",
        epilog=_epilog(),
    )
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES, help="the code that trained the model")
    parser.add_argument(
        "weights", metavar="WEIGHTS", help="state_dict file (torch.save(model.state_dict(), f)) or safetensors"
    )
    parser.add_argument(
        "--vocab",
        required=True,
        metavar="VOCAB",
        help="corpus folder the original read (train/valid/test) or word-list file in id order "
        "(fastai itos: .json, pickled list, or one word per line)",
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to write (must not exist or be empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT_DIR if it holds files")
    parser.add_argument("--unk-token", default=None, help="word for unknown words (default: <unk> or xxunk)")
    parser.add_argument("--eos-token", default=None, help="word that ends each line (default: <eos>, xxeos or xxbos)")
    add_threads_option(parser)
    parser.add_argument(
        "--tokenizer-convention",
        default="whitespace",
        choices=("whitespace", "wikitext", "ptb"),
        help="how the tokenizer splits raw text (default: whitespace, exactly the originals' line.split())",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-convert``; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        exit_codes.check_output_dir(args.output_dir, "OUTPUT_DIR")  # before the work, not after it
    except OSError as err:
        return exit_codes.report_failure(PROG, err)
    # Imported only now: torch and transformers take seconds, --help must not wait for them.
    from .converter import convert_checkpoint

    apply_threads(args.threads)

    try:
        conversion = convert_checkpoint(
            args.weights,
            args.vocab,
            args.output_dir,
            args.source,
            overwrite=args.overwrite,
            unk_token=args.unk_token,
            eos_token=args.eos_token,
            tokenizer_convention=args.tokenizer_convention,
        )
    except (OSError, ValueError, KeyboardInterrupt) as err:
        return exit_codes.report_failure(PROG, err)
    print(conversion.summary())
    print(f"written: {args.output_dir} (AutoModelForCausalLM.from_pretrained / mtlstm-eval / mtlstm-analyze)")
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
