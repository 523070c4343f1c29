"""``mtlstm-analyze``: run the analyses of a checkpoint on a corpus and write a report folder.

Examples::

    mtlstm-analyze outputs/mtlstm-small/best_model       # trained by mtlstm-train: its corpus by default
    mtlstm-analyze runs/mts --data data/penn --output-dir runs/mts/analysis
    mtlstm-analyze runs/mts --data data/penn --analyses timescales ablation --max-tokens 20000
    mtlstm-analyze runs/mts --data wikitext --data-config wikitext-2-v1 --split test \\
        --word-classes pos.tsv --ablation-layer 2 --chunk-size 50
    mtlstm-analyze state-spaces/mamba-130m-hf --data wikitext --data-config wikitext-2-raw-v1 \\
        --analyses timescales --max-tokens 10000 --threads 1     # another architecture, from the Hub

The checkpoint is a folder or a Hub id of an MTLSTM or of a transformers Mamba, Mamba2, RWKV,
RecurrentGemma or xLSTM causal LM (:mod:`mtlstm_hf.analysis.architectures`); the analyses that do
not apply to an architecture (state gradients, weighted sums and memory span need an LSTM memory
cell) are listed under ``"skipped"`` with the reason.

Without ``--data`` the corpus is the one ``mtlstm-train`` recorded in the checkpoint's
``training_config.json`` (the WikiText-2 sample shipped with the package when it trained on that);
a checkpoint without that record needs ``--data``. Layers are numbered from 1, as in the paper
(``--ablation-layer 2`` is the second layer).

The folder layout (``report.json`` + ``figures/*.png``) is documented in
:mod:`mtlstm_hf.analysis.report` and ``mtlstm_hf/analysis/README.md``; read it back with
:func:`mtlstm_hf.analysis.load_report`. Each analysis is written as soon as it finishes; running
the same command again continues an interrupted run (``--restart`` redoes everything). An
analysis that does not apply (e.g. timescales of a model made only of ``lstm-gates`` layers, or
a split shorter than the requested delays) is listed under ``"skipped"`` with the reason instead
of stopping the others.

Exit status (shared by every command, :mod:`mtlstm_hf.exit_codes`): 0 when at least one analysis
is in the report; 2 bad input (arguments, checkpoint, data, a report folder of other settings, or
every selected analysis skipped); 3 this machine cannot run the setting (``--device cuda`` without
CUDA); 4 I/O failure (disk full, read-only or file-in-the-way output folder, offline Hub dataset);
130 interrupted (run the same command again to continue).

This module imports no torch until :func:`main` runs (``--help`` answers in about a second).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import exit_codes
from ..command_line import apply_threads, check_threads, dataclass_parser, settings_from_command_line
from .registry import ANALYSIS_REGISTRY
from .settings import AnalysisRunSettings, AnalysisSettings

__all__ = ["build_parser", "main"]

PROG = "mtlstm-analyze"

# The other architectures the analyses read (mtlstm_hf.analysis.architectures.registry), by class name.
_FOREIGN = (
    "MambaForCausalLM",
    "Mamba2ForCausalLM",
    "RwkvForCausalLM",
    "RecurrentGemmaForCausalLM",
    "xLSTMForCausalLM",
)


def default_output_dir(checkpoint: str) -> Path:
    """``CHECKPOINT/analysis`` for a folder; ``./owner--name-analysis`` for a Hub id (no such folder)."""
    from .architectures.loading import HUB_ID

    path = Path(checkpoint).expanduser()
    if not path.exists() and HUB_ID.match(checkpoint):
        return Path(checkpoint.replace("/", "--") + "-analysis")
    return Path(checkpoint) / "analysis"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``mtlstm-analyze``: the checkpoint, then one option per field
    of :class:`AnalysisRunSettings` and :class:`AnalysisSettings` (their help texts), and ``--config``."""
    parser = dataclass_parser(
        (AnalysisRunSettings, AnalysisSettings),
        prog=PROG,
        description="Analyses of an mtlstm checkpoint: estimated timescales and their distribution, unit "
        "ablation/routing per frequency bin (and word class), state gradients, weighted-sum heat maps, memory "
        "span, mutual information. Writes report.json and PNG figures, each analysis as soon as it is done.",
        epilog="Work bounds: --max-tokens limits every analysis; the state gradients cost one matrix per "
        "sampled source position and delay (--state-gradient-positions, --max-delay). Layers are numbered "
        "from 1. " + exit_codes.epilog(),
    )
    parser.add_argument(
        "checkpoint",
        metavar="PATH_OR_HUB_ID",
        help="folder written by save_pretrained (model and tokenizer), or a Hub model id owner/name: an mtlstm "
        "checkpoint or a transformers " + ", ".join(_FOREIGN) + " language model",
    )
    return parser


def settings_from_argv(argv: Sequence[str] | None) -> tuple[str, AnalysisRunSettings, AnalysisSettings]:
    """``(checkpoint, run, settings)``: the defaults, ``--config``'s file, then the options given.
    ``word_classes`` is still the file name when given on the command line.

    Raises:
        ValueError: an unknown setting in the file or a bad value; FileNotFoundError: no such file.
    """
    checkpoint, (run, settings) = settings_from_command_line(
        build_parser(), argv, (AnalysisRunSettings, AnalysisSettings), "checkpoint"
    )
    return checkpoint, AnalysisRunSettings(**run), AnalysisSettings(**settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-analyze``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    parser.parse_args(argv)  # usage errors and --help exit here, before any import
    try:
        checkpoint, args, settings = settings_from_argv(argv)
    except FileNotFoundError as error:
        return exit_codes.report_failure(PROG, error)
    except ValueError as error:
        parser.error(str(error))
    try:
        check_threads(args.threads)
    except ValueError as error:
        parser.error(str(error))
    entries = [args.analyses] if isinstance(args.analyses, str) else args.analyses  # a config file may give one string
    analyses = list(dict.fromkeys(name.strip() for entry in entries for name in entry.split(",") if name.strip()))
    unknown = [name for name in analyses if name not in ANALYSIS_REGISTRY]
    if unknown or not analyses:
        parser.error(f"--analyses: unknown {unknown}; choose from {','.join(ANALYSIS_REGISTRY)}")
    word_classes_file = settings.word_classes if isinstance(settings.word_classes, str) else None
    if word_classes_file is not None:
        settings.word_classes = None  # read below, with the other inputs
    try:
        settings.validate()
    except ValueError as error:
        parser.error(str(error))
    output_dir = Path(args.output_dir) if args.output_dir is not None else default_output_dir(checkpoint)

    # Imported only now: torch and transformers take seconds, --help must not wait for them.
    from mtlstm_hf.files import corpus_to_use, repair_interrupted_replacement

    from .architectures.loading import HUB_ID, local_folder
    from .report import analyze_checkpoint, load_word_classes

    try:
        repair_interrupted_replacement(checkpoint)  # a crash while a training run replaced best_model/
        if not Path(checkpoint).expanduser().is_dir():  # said before --data's default is looked up in it
            if Path(checkpoint).expanduser().exists() or not HUB_ID.match(checkpoint):
                return exit_codes.fail(
                    PROG,
                    f"checkpoint {checkpoint!r} does not exist or is not a folder (nor a Hub id owner/name)",
                    exit_codes.BAD_INPUT,
                )
            checkpoint = str(local_folder(checkpoint))  # a Hub id: its snapshot (configuration, weights, tokenizer)
        exit_codes.check_output_dir(output_dir, "--output-dir")  # before the work, not after it
        if word_classes_file is not None:
            settings.word_classes = load_word_classes(word_classes_file)
        data, data_config, recorded = corpus_to_use(args.data, args.dataset_config_name, checkpoint)
        if recorded:
            print(f"{PROG}: --data not given: using the corpus the checkpoint was trained on, {data}", file=sys.stderr)
        apply_threads(args.threads)
        report = analyze_checkpoint(
            checkpoint,
            data,
            output_dir,
            split=args.split,
            analyses=analyses,
            settings=settings,
            data_config=data_config,
            device=args.device,
            figures=args.figures,
            progress=args.progress_bar,
            restart=args.restart,
        )
    except (OSError, ValueError, KeyboardInterrupt) as error:
        return exit_codes.report_failure(
            PROG, error, args.data, interrupted="interrupted; run the same command again to continue"
        )
    for name, reason in report["skipped"].items():
        print(f"{PROG}: skipped {name}: {reason}", file=sys.stderr)
    ran = [name for name in analyses if name in report["analyses"]]
    print(f"analyses: {', '.join(ran) or 'none'}; {len(report['figures'])} figures; report written to {output_dir}")
    if not ran:
        return exit_codes.fail(PROG, "every selected analysis was skipped (reasons above)", exit_codes.BAD_INPUT)
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
