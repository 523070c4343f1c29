"""``mtlstm-eval``: perplexity of a saved checkpoint, overall and per word-frequency bin.

Examples::

    mtlstm-eval runs/mts --data data/penn
    mtlstm-eval runs/mts --data data/penn --count-splits train valid test --output mts.json
    mtlstm-eval runs/baseline --data data/penn --compare runs/mts --output comparison.json
    mtlstm-eval runs/mts --data wikitext --data-config wikitext-2-v1 --split valid
    mtlstm-eval runs/mts --data my_text.txt    # one file; word counts from the training corpus

With ``--compare OTHER`` the table shows both checkpoints and the paired block bootstrap of
the difference ``OTHER - CHECKPOINT`` (negative when OTHER is better). The library functions
behind it are :func:`~mtlstm_hf.evaluation.checkpoint.evaluate_checkpoint` and
:func:`~mtlstm_hf.evaluation.checkpoint.compare_checkpoints`; the JSON written by
``--output`` is their result (NaN, e.g. an empty bin, written as ``null``); it is checked
before the evaluation starts and replaced atomically.

Exit codes (:mod:`mtlstm_hf.exit_codes`, the same for every command): 0 done, 2 bad input
(arguments, checkpoint, data), 4 I/O failure (disk full, permission denied, read-only file
system, ``--output`` a folder or under a file, a Hub dataset id without network or in offline
mode), 130 interrupted. Errors are one line on stderr naming the path or value and the cause.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import exit_codes
from ..command_line import apply_threads, check_seed, dataclass_parser, settings_from_command_line
from .settings import EvaluationSettings

__all__ = ["build_parser", "format_comparison", "format_evaluation", "main"]

PROG = "mtlstm-eval"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``mtlstm-eval``: the checkpoint, then one option per
    :class:`~mtlstm_hf.evaluation.settings.EvaluationSettings` field, and ``--config FILE.json``."""
    parser = dataclass_parser(
        EvaluationSettings,
        prog=PROG,
        description="Perplexity of an mtlstm checkpoint (model + tokenizer folder), overall and per "
        "word-frequency bin; optionally compared with another checkpoint by a paired block bootstrap.",
        epilog=exit_codes.epilog(),
    )
    parser.add_argument("checkpoint", help="folder written by save_pretrained (model and tokenizer)")
    return parser


def settings_from_argv(argv: Sequence[str] | None) -> tuple[str, EvaluationSettings]:
    """``(checkpoint, settings)``: the defaults, ``--config``'s file, then the options given.

    Raises:
        ValueError: an unknown setting in the file; FileNotFoundError: no such file.
    """
    checkpoint, (values,) = settings_from_command_line(build_parser(), argv, (EvaluationSettings,), "checkpoint")
    return checkpoint, EvaluationSettings(**values)


def _number(value: float, digits: int = 2) -> str:
    """Fixed-point text, ``-`` for NaN (an empty bin has no perplexity)."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(label, stats)`` for each bin, most frequent first, then ``overall``."""
    return [*result["bins"].items(), ("overall", result)]


def _header(result: dict[str, Any]) -> str:
    counted = ", ".join(result["count_splits"]) + (f" of {result['count_data']}" if result.get("count_data") else "")
    return (
        f"split {result['split']} of {result['data']}: {result['n_tokens']} scored targets "
        f"({100 * result['unk_rate']:.2f}% unknown words), batch size {result['batch_size']}; "
        f"frequency bins from word counts over: {counted}"
    )


def format_evaluation(result: dict[str, Any]) -> str:
    """Readable table of an :func:`evaluate_checkpoint` result: bin, tokens, perplexity."""
    lines = [f"checkpoint: {result['checkpoint']}", _header(result), f"{'bin':<10}{'tokens':>10}{'perplexity':>14}"]
    for label, stats in _rows(result):
        lines.append(f"{label:<10}{stats['n_tokens']:>10}{_number(stats['perplexity']):>14}")
    return "\n".join(lines)


def format_comparison(result: dict[str, Any]) -> str:
    """Readable tables of a :func:`compare_checkpoints` result: both perplexities, then B - A."""
    from .bootstrap import format_p_value

    eval_a, eval_b, boot = result["a"], result["b"], result["comparison"]
    lines = [
        f"A: {eval_a['checkpoint']}",
        f"B: {eval_b['checkpoint']}",
        _header(eval_a),
        f"{'bin':<10}{'tokens':>10}{'ppl A':>12}{'ppl B':>12}",
    ]
    for (label, stats_a), (_, stats_b) in zip(_rows(eval_a), _rows(eval_b)):
        lines.append(
            f"{label:<10}{stats_a['n_tokens']:>10}{_number(stats_a['perplexity']):>12}{_number(stats_b['perplexity']):>12}"
        )
    level = round(100 * boot["confidence_level"], 3)
    lines += [
        "",
        f"paired block bootstrap of B - A: {boot['n_resamples']} resamples of {boot['n_blocks']} blocks of "
        f"{boot['block_size']} tokens ({boot['n_tail_tokens_dropped']} tail tokens dropped), seed {boot['seed']}",
        f"{'bin':<10}{'tokens':>10}{'diff':>12}{f'{level:g}% CI':>24}{'p-value':>10}",
    ]
    for label, stats in [*boot["bins"].items(), ("overall", boot["overall"])]:
        diff = stats["diff"]
        interval = f"[{_number(diff['ci_low'])}, {_number(diff['ci_high'])}]"
        lines.append(
            f"{label:<10}{stats['n_tokens']:>10}{_number(diff['observed']):>12}{interval:>24}{format_p_value(diff):>10}"
        )
    return "\n".join(lines)


def default_data(
    checkpoint: str, dataset_config_name: str | None, parser: argparse.ArgumentParser
) -> tuple[str, str | None]:
    """``--data`` when it is not given: the corpus ``mtlstm-train`` recorded for the checkpoint
    (:func:`mtlstm_hf.files.corpus_to_use`); otherwise the parser exits (status 2) saying what to pass."""
    from mtlstm_hf.files import corpus_to_use

    try:
        data, data_config, _ = corpus_to_use(None, dataset_config_name, checkpoint)
    except ValueError as error:
        parser.error(str(error))
    print(f"{PROG}: --data not given: using the training corpus recorded in the checkpoint, {data}", file=sys.stderr)
    return data, data_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-eval``; returns the exit code (see the module docstring)."""
    parser = build_parser()
    parser.parse_args(argv)  # usage errors and --help exit here, before any import
    try:
        checkpoint, args = settings_from_argv(argv)
        check_seed(args.seed, "--seed")  # before the models are scored, not after
    except (OSError, ValueError) as err:
        return exit_codes.report_failure(PROG, err)
    # Imported only now: torch takes seconds, --help must not wait for it.
    from mtlstm_hf.files import repair_interrupted_replacement

    from .checkpoint import compare_checkpoints, evaluate_checkpoint, to_json_compatible

    try:
        apply_threads(args.threads)
    except ValueError as err:
        return exit_codes.report_failure(PROG, err)
    try:
        for folder in (checkpoint, args.compare):
            if folder is not None:
                repair_interrupted_replacement(folder)  # a crash while a run replaced best_model/
        if args.output is not None:
            exit_codes.check_output_file(args.output, "--output")  # before the work, not after it
    except OSError as err:
        return exit_codes.report_failure(PROG, err)
    if not Path(checkpoint).expanduser().is_dir():  # said before --data's default is looked up in it
        return exit_codes.fail(
            PROG, f"checkpoint {checkpoint!r} does not exist or is not a folder", exit_codes.BAD_INPUT
        )
    if args.data is None:
        args.data, args.dataset_config_name = default_data(checkpoint, args.dataset_config_name, parser)
    common: dict[str, Any] = dict(  # the settings both entry points take, each of its own type
        data=args.data,
        split=args.split,
        batch_size=args.batch_size,
        window=args.window,
        count_splits=args.count_splits,
        edges=args.bin_edges,
        data_config=args.dataset_config_name,
        device=args.device,
    )
    try:
        if args.compare is None:
            result = evaluate_checkpoint(checkpoint, **common)
            table = format_evaluation(result)
        else:
            result = compare_checkpoints(
                checkpoint,
                args.compare,
                block_size=args.block_size,
                n_resamples=args.n_resamples,
                seed=args.seed,
                confidence_level=args.confidence_level,
                **common,
            )
            table = format_comparison(result)
    except (OSError, ValueError, KeyboardInterrupt) as err:
        # Expected failures (wrong folder, missing split, bad option value, no device, I/O): one line.
        return exit_codes.report_failure(PROG, err, args.data)
    print(table)
    results = [result] if args.compare is None else [result["a"], result["b"]]
    for warning in dict.fromkeys(warning for evaluated in results for warning in evaluated["warnings"]):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if args.output is not None:
        from mtlstm_hf.files import write_text_atomic

        output = Path(args.output)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(output, json.dumps(to_json_compatible(result), indent=2, allow_nan=False) + "\n")
        except OSError as err:
            return exit_codes.fail(
                PROG,
                f"{exit_codes.describe_io_failure(err)} (the results are printed above; {args.output} was not "
                "written, an earlier file there is unchanged)",
                exit_codes.IO_FAILURE,
            )
        print(f"results written to {args.output}")
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
