"""``mtlstm-reproduce``: reproduce an experiment of Mahto et al. (ICLR 2021) with one command.

    mtlstm-reproduce lm-ptb --scale smoke --output-dir outputs/repro-smoke
    mtlstm-reproduce lm-ptb --scale cpu --data ../shared/data --output-dir outputs/repro-ptb-cpu
    mtlstm-reproduce dyck2 --scale cpu --output-dir outputs/repro-dyck-cpu --threads 1
    mtlstm-reproduce lm-ptb --scale paper --data DIR --output-dir OUT --processes 6      # one run per GPU
    torchrun --nproc_per_node 2 -m mtlstm_hf.reproduce.cli lm-ptb --scale paper --data DIR --output-dir OUT

Experiments: ``lm-ptb`` and ``lm-wikitext2`` (baseline vs multi-timescale language model: test
perplexity overall and per frequency bin, paired block bootstrap, the baseline's timescales and
their fits, the layer-2 ablation routing: :mod:`mtlstm_hf.reproduce.lm`) and ``dyck2``
(:mod:`mtlstm_hf.reproduce.dyck`). Scales: :mod:`mtlstm_hf.reproduce.scales`. The output folder
gets ``report.json`` (after every stage), ``REPORT.md`` (a table per claim: the paper's value,
ours with its 95% interval over seeds, and the verdict) and ``figures/``. Rerunning the same
command skips finished runs and stages and continues an interrupted run exactly.

Several processes: ``--processes N`` trains N independent runs at once (one GPU each; the
runs of the paper's experiments are latency-bound, so this is where GPUs pay), then analyses N
seeds at once (:mod:`mtlstm_hf.reproduce.workers`). A ``torchrun`` start instead splits each run's
rows over its processes (data parallelism): the number of processes must divide the training
batch (PTB 20, WikiText-2 80) and the evaluation batch (10), e.g. 2 or 5.

Exit codes (:mod:`mtlstm_hf.exit_codes`): 0 done, 1 non-finite training loss, 2 bad input
(unknown experiment or scale, corpus not found, an output folder of another configuration), 4 I/O
failure, 130 interrupted (rerun the same command to continue). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from .. import exit_codes
from ..command_line import dataclass_parser, settings_from_command_line
from .experiments import EXPERIMENTS
from .settings import ReproduceSettings

PROG = "mtlstm-reproduce"


def build_parser() -> argparse.ArgumentParser:
    """The experiment (positional), one option per :class:`ReproduceSettings` field, ``--config``."""
    parser = dataclass_parser(
        ReproduceSettings,
        prog=PROG,
        description=(
            "Reproduce an experiment of Mahto et al. (ICLR 2021): train the baseline and the multi-timescale model "
            "seed by seed, analyse them, and write report.json, REPORT.md (each claim: the paper's value, ours with a "
            "95% CI, a verdict) and figures into --output-dir; prior-sweep trains the baseline and one model per "
            "timescale prior of other recurrent models and reports their perplexities (no claims). Rerun the same "
            "command to continue."
        ),
        epilog=exit_codes.epilog(non_finite_loss=True),
    )
    parser.add_argument("experiment", choices=list(EXPERIMENTS), help="lm-ptb, lm-wikitext2, dyck2 or prior-sweep")
    return parser


def settings_from_argv(argv: Sequence[str] | None) -> tuple[str, ReproduceSettings]:
    """``(experiment, settings)``: ``--config``'s file, then the options given.

    Raises:
        ValueError: an unknown setting in the file; FileNotFoundError: no such file.
    """
    experiment, (merged,) = settings_from_command_line(build_parser(), argv, (ReproduceSettings,), "experiment")
    missing = [name for name in ("scale", "output_dir") if merged.get(name) is None]
    if missing:
        raise ValueError(f"missing {', '.join('--' + name.replace('_', '-') for name in missing)}.")
    return experiment, ReproduceSettings(**merged)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-reproduce``; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    build_parser().parse_args(arguments)  # usage errors and --help exit here, before any import
    try:
        experiment, settings = settings_from_argv(arguments)
    except (OSError, ValueError) as error:
        return exit_codes.report_failure(PROG, error)
    from .experiment import prepare

    command = " ".join([PROG, *(shlex.quote(part) for part in arguments)])
    try:
        prepared = prepare(experiment, settings, command, arguments)
    except (OSError, ValueError) as error:
        return exit_codes.report_failure(PROG, error)
    # Imported only now (torch): the checks above answer in about a second.
    from ..training import end_processes

    try:
        return _run(prepared)
    finally:
        end_processes()  # the process group of a torchrun start, once everything is written


def _run(prepared: Any) -> int:
    """Run a prepared reproduction; the exit code."""
    from ..training import NonFiniteLossError
    from .experiment import WorkerFailed, log_to_stderr, run
    from .lm import RunInterrupted

    settings = prepared.settings
    try:
        run(prepared, log_to_stderr)
    except NonFiniteLossError as error:
        return exit_codes.fail(
            PROG, f"{error} Rerun the same command to continue from the last checkpoint.", exit_codes.NON_FINITE_LOSS
        )
    except RunInterrupted as error:
        return exit_codes.fail(PROG, str(error), exit_codes.INTERRUPTED)
    except WorkerFailed as error:
        return exit_codes.fail(PROG, str(error), error.exit_code)
    except KeyboardInterrupt:
        return exit_codes.fail(
            PROG, f"interrupted; finished runs and stages are kept: rerun the same command to continue ({settings.output_dir})",
            exit_codes.INTERRUPTED,
        )  # fmt: skip
    except (OSError, ValueError) as error:
        return exit_codes.report_failure(PROG, error, settings.data)
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
