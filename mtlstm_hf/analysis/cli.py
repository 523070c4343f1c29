"""``mtlstm-analyze``: run the analyses of a checkpoint on a corpus and write a report folder.

Examples::

    mtlstm-analyze outputs/mtlstm-small/best_model       # trained by mtlstm-train: its corpus by default
    mtlstm-analyze runs/mts --data data/penn --output-dir runs/mts/analysis
    mtlstm-analyze runs/mts --data data/penn --analyses timescales,ablation --max-tokens 20000
    mtlstm-analyze runs/mts --data wikitext --data-config wikitext-2-v1 --split test \\
        --word-classes pos.tsv --ablation-layer 2 --chunk-size 50

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

This module imports neither torch nor transformers until :func:`main` runs (``--help`` is instant).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mtlstm_hf.evaluation.bins import DEFAULT_BIN_EDGES

from .. import exit_codes
from .settings import ANALYSES, AnalysisSettings

__all__ = ["build_parser", "main"]

PROG = "mtlstm-analyze"


def _positions(text: str) -> int | None:
    """``--state-gradient-positions``: a positive integer or ``all``."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``mtlstm-analyze``."""
    defaults = AnalysisSettings()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Analyses of an mtlstm checkpoint: estimated timescales and their distribution, unit "
        "ablation/routing per frequency bin (and word class), state gradients, weighted-sum heat maps, memory "
        "span, mutual information. Writes report.json and PNG figures, each analysis as soon as it is done.",
        epilog="Work bounds: --max-tokens limits every analysis; the state gradients cost one matrix per "
        "sampled source position and delay (--state-gradient-positions, --max-delay). Layers are numbered "
        "from 1. " + exit_codes.epilog(),
    )
    parser.add_argument("checkpoint", help="folder written by save_pretrained (model and tokenizer)")
    parser.add_argument(
        "--data",
        default=None,
        help="corpus: a folder with train/valid/test.txt or a Hub dataset id (default: the corpus mtlstm-train "
        "recorded in the checkpoint's training_config.json, e.g. the shipped WikiText-2 sample)",
    )
    parser.add_argument("--data-config", default=None, help="Hub dataset configuration, e.g. wikitext-2-v1")
    parser.add_argument("--split", default="valid", help="split to analyse (default: valid)")
    parser.add_argument(
        "--analyses",
        default=",".join(ANALYSES),
        help=f"comma-separated subset of {','.join(ANALYSES)} (default: all)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="report folder (default: CHECKPOINT/analysis, the folder the Hub publishing step attaches); a "
        "report of the same checkpoint and settings there is continued",
    )
    add = parser.add_argument
    add("--restart", action="store_true", help="discard the report already in the output folder and redo everything")
    add(
        "--max-tokens",
        type=int,
        default=None,
        help="use only the first N tokens of the split, in every analysis (default: all)",
    )
    add(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="rows in parallel (1 = state carried over the whole split, the paper's setting)",
    )
    add("--window", type=int, default=defaults.window, help="tokens per forward call (memory only)")
    add(
        "--count-splits",
        nargs="+",
        default=list(defaults.count_splits),
        metavar="SPLIT",
        help="splits whose word counts define the frequency bins (default: train)",
    )
    add(
        "--bin-edges",
        nargs="+",
        type=int,
        default=list(DEFAULT_BIN_EDGES),
        metavar="COUNT",
        help=f"frequency bin thresholds (default: {' '.join(str(edge) for edge in DEFAULT_BIN_EDGES)})",
    )
    add(
        "--ablation-layer",
        type=int,
        default=None,
        metavar="N",
        help="number (from 1) of the layer whose units are ablated (default: the inverse-gamma layer, else the "
        "middle one)",
    )
    add("--chunk-size", type=int, default=defaults.chunk_size, help=f"units per ablated chunk (default: {defaults.chunk_size})")
    add(
        "--ablation-order",
        choices=("auto", "assigned", "estimated", "index"),
        default=defaults.ablation_order,
        help="order of the units before chunking (default: auto = assigned, else estimated, else unit order)",
    )
    add(
        "--word-classes",
        type=Path,
        default=None,
        help="word -> class file (JSON object or 'word class' lines) for the routing report per class",
    )
    add("--max-delay", type=int, default=defaults.max_delay, help=f"state-gradient delays (default: {defaults.max_delay})")
    add(
        "--segment-length",
        type=int,
        default=defaults.segment_length,
        help=f"state-gradient segment (default: {defaults.segment_length})",
    )
    add(
        "--state-gradient-positions",
        type=_positions,
        default=defaults.state_gradient_positions,
        metavar="K|all",
        help="source positions of the state gradients, evenly spaced over the analysed text; 'all' computes "
        f"every position, the exact full average (default: {defaults.state_gradient_positions})",
    )
    add("--max-distance", type=int, default=defaults.max_distance, help=f"memory-span distances (default: {defaults.max_distance})")
    add("--passage-start", type=int, default=defaults.passage_start, help="first token of the weighted-sum passage")
    add(
        "--passage-length",
        type=int,
        default=defaults.passage_length,
        help=f"weighted-sum passage tokens (default: {defaults.passage_length})",
    )
    add(
        "--mi-max-distance",
        type=int,
        default=defaults.mi_max_distance,
        help=f"largest MI distance (default: {defaults.mi_max_distance})",
    )
    add("--no-figures", action="store_true", help="write report.json only")
    add("--no-units", action="store_true", help="leave per-unit lists (gates, timescales) out of report.json")
    add("--device", default=None, help="torch device for the model (default: cpu)")
    add("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice, all cores)")
    add("--quiet", action="store_true", help="no progress display")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-analyze``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    analyses = [name.strip() for name in args.analyses.split(",") if name.strip()]
    unknown = [name for name in analyses if name not in ANALYSES]
    if unknown or not analyses:
        parser.error(f"--analyses: unknown {unknown}; choose from {','.join(ANALYSES)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be a positive integer, got {args.threads}")
    settings = AnalysisSettings(
        batch_size=args.batch_size,
        window=args.window,
        max_tokens=args.max_tokens,
        count_splits=tuple(args.count_splits),
        bin_edges=tuple(args.bin_edges),
        ablation_layer=args.ablation_layer,
        chunk_size=args.chunk_size,
        ablation_order=args.ablation_order,
        max_delay=args.max_delay,
        segment_length=args.segment_length,
        state_gradient_positions=args.state_gradient_positions,
        max_distance=args.max_distance,
        passage_start=args.passage_start,
        passage_length=args.passage_length,
        mi_max_distance=args.mi_max_distance,
        include_units=not args.no_units,
    )
    try:
        settings.validate()
    except ValueError as error:
        parser.error(str(error))
    output_dir = args.output_dir if args.output_dir is not None else Path(args.checkpoint) / "analysis"

    # Imported only now: torch and transformers take seconds, --help must not wait for them.
    from mtlstm_hf.training.checkpoint import recorded_corpus, repair_interrupted_replacement

    from .report import analyze_checkpoint, load_word_classes

    try:
        repair_interrupted_replacement(args.checkpoint)  # a crash while a training run replaced best_model/
        exit_codes.check_output_dir(output_dir, "--output-dir")  # before the work, not after it
        if args.word_classes is not None:
            settings.word_classes = load_word_classes(args.word_classes)
        data, data_config = args.data, args.data_config
        if data is None:
            data, recorded_config = recorded_corpus(args.checkpoint)
            data_config = data_config if data_config is not None else recorded_config
            print(f"{PROG}: --data not given: using the corpus the checkpoint was trained on, {data}", file=sys.stderr)
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        report = analyze_checkpoint(
            args.checkpoint,
            data,
            output_dir,
            split=args.split,
            analyses=analyses,
            settings=settings,
            data_config=data_config,
            device=args.device,
            figures=not args.no_figures,
            progress=not args.quiet,
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
