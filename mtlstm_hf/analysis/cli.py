"""``mtlstm-analyze``: run the analyses of a checkpoint on a corpus and write a report folder.

Examples::

    mtlstm-analyze runs/mts --data data/penn --output-dir runs/mts/analysis
    mtlstm-analyze runs/mts --data data/penn --analyses timescales,ablation --max-tokens 20000
    mtlstm-analyze runs/mts --data wikitext --data-config wikitext-2-v1 --split test \\
        --word-classes pos.tsv --ablation-layer 1 --chunk-size 50

The folder layout (``report.json`` + ``figures/*.png``) is documented in
:mod:`mtlstm_hf.analysis.report` and ``mtlstm_hf/analysis/README.md``; read it back with
:func:`mtlstm_hf.analysis.load_report`. An analysis that does not apply (e.g. timescales of a
model made only of ``lstm-gates`` layers, or a split shorter than the requested delays) is
listed under ``"skipped"`` with the reason instead of stopping the others.

Exit status: 0 when at least one analysis ran, 1 on a bad checkpoint/data or when every
selected analysis was skipped, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mtlstm_hf.evaluation.frequency import DEFAULT_BIN_EDGES

from .report import ANALYSES, AnalysisSettings, analyze_checkpoint, load_word_classes

__all__ = ["build_parser", "main"]

PROG = "mtlstm-analyze"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``mtlstm-analyze``."""
    defaults = AnalysisSettings()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Analyses of an mtlstm checkpoint: estimated timescales and their distribution, unit "
        "ablation/routing per frequency bin (and word class), state gradients, weighted-sum heat maps, memory "
        "span, mutual information. Writes report.json and PNG figures.",
    )
    parser.add_argument("checkpoint", help="folder written by save_pretrained (model and tokenizer)")
    parser.add_argument("--data", required=True, help="corpus: a folder with train/valid/test.txt or a Hub dataset id")
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
        help="report folder (default: CHECKPOINT/analysis, the folder the Hub publishing step attaches)",
    )
    add = parser.add_argument
    add("--max-tokens", type=int, default=None, help="use only the first N tokens of the split")
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
        help="frequency bin thresholds (default: 100 1000 10000)",
    )
    add(
        "--ablation-layer",
        type=int,
        default=None,
        help="layer whose units are ablated (default: the inverse-gamma layer, else the middle one)",
    )
    add("--chunk-size", type=int, default=defaults.chunk_size, help="units per ablated chunk (default: 50)")
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
    add("--max-delay", type=int, default=defaults.max_delay, help="state-gradient delays (default: 50)")
    add("--segment-length", type=int, default=defaults.segment_length, help="state-gradient segment (default: 200)")
    add(
        "--state-gradient-tokens",
        type=int,
        default=defaults.state_gradient_tokens,
        help="tokens used for state gradients, the most expensive analysis (default: 1000)",
    )
    add("--max-distance", type=int, default=defaults.max_distance, help="memory-span distances (default: 100)")
    add("--passage-start", type=int, default=defaults.passage_start, help="first token of the weighted-sum passage")
    add("--passage-length", type=int, default=defaults.passage_length, help="weighted-sum passage tokens (default: 30)")
    add("--mi-max-distance", type=int, default=defaults.mi_max_distance, help="largest MI distance (default: 1000)")
    add("--no-figures", action="store_true", help="write report.json only")
    add("--no-units", action="store_true", help="leave per-unit lists (gates, timescales) out of report.json")
    add("--device", default=None, help="torch device for the model (default: cpu)")
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-analyze``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    output_dir = args.output_dir if args.output_dir is not None else Path(args.checkpoint) / "analysis"
    analyses = [name.strip() for name in args.analyses.split(",") if name.strip()]
    unknown = [name for name in analyses if name not in ANALYSES]
    if unknown or not analyses:
        parser.error(f"--analyses: unknown {unknown}; choose from {','.join(ANALYSES)}")
    try:
        word_classes = load_word_classes(args.word_classes) if args.word_classes is not None else None
        settings = AnalysisSettings(
            batch_size=args.batch_size,
            window=args.window,
            max_tokens=args.max_tokens,
            count_splits=tuple(args.count_splits),
            bin_edges=tuple(args.bin_edges),
            ablation_layer=args.ablation_layer,
            chunk_size=args.chunk_size,
            ablation_order=args.ablation_order,
            word_classes=word_classes,
            max_delay=args.max_delay,
            segment_length=args.segment_length,
            state_gradient_tokens=args.state_gradient_tokens,
            max_distance=args.max_distance,
            passage_start=args.passage_start,
            passage_length=args.passage_length,
            mi_max_distance=args.mi_max_distance,
            include_units=not args.no_units,
        )
        report = analyze_checkpoint(
            args.checkpoint,
            args.data,
            output_dir,
            split=args.split,
            analyses=analyses,
            settings=settings,
            data_config=args.data_config,
            device=args.device,
            figures=not args.no_figures,
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    for name, reason in report["skipped"].items():
        print(f"{PROG}: skipped {name}: {reason}", file=sys.stderr)
    ran = list(report["analyses"])
    print(f"analyses: {', '.join(ran) or 'none'}; {len(report['figures'])} figures; report written to {output_dir}")
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
