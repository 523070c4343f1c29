"""The settings of ``mtlstm-reproduce``, one dataclass whose fields are the command's options
(help text included; :mod:`mtlstm_hf.command_line`). Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..command_line import THREADS_HELP, setting
from .scales import RECIPES, SCALES


@dataclass
class ReproduceSettings:
    """How ``mtlstm-reproduce EXPERIMENT`` runs (the experiment is the positional argument)."""

    scale: str | None = setting(
        None,
        choices=SCALES,
        help="required (here or in --config): smoke (seconds, generated data), cpu (about 2 h for lm-ptb / 1 h for dyck2 on 2 quiet CPU cores: smaller models, fewer epochs, 3 seeds) or paper (the paper's sizes and epochs)",
    )
    output_dir: str | None = setting(
        None,
        help="required (here or in --config): folder of the runs, report.json, REPORT.md and figures/; rerunning the same command continues it, a folder of another configuration is refused",
    )
    data: str | None = setting(
        None,
        help="corpus folder for lm-ptb / lm-wikitext2: train.txt, valid.txt, test.txt (or ptb.*.txt / wiki.*.tokens), or a folder with ptb/ and wikitext-2/ inside (e.g. ../shared/data); not used by dyck2 and the smoke scale, which generate their data",
    )
    seeds: list[int] | None = setting(
        None,
        metavar="SEED",
        help="model seeds, each trains both arms (default: the scale's: smoke 1 2, cpu 1 2 3, paper 141 142 143 for PTB, 1882 1883 1884 for WikiText-2, 1..20 for dyck2); more seeds can be added to a folder later",
    )
    recipe: str | None = setting(
        None,
        choices=RECIPES,
        help="language models only (refused for dyck2, which has one setup): library (the default: the paper* presets as this library trains them) or reference (the published training step for step: the reference code's exact model, paper-reference presets, its recurrent weights kept at their initial values in both arms, and its training loop, replay_reference_loop)",
    )
    device: str | None = setting(
        None,
        help="torch device of the evaluations and analyses, and of Dyck-2 training (default: cuda when available, else cpu); language-model training uses accelerate's device (the same rule)",
    )
    threads: int | None = setting(
        None,
        metavar="N",
        help="torch intra-op threads of each process (default: the scale's: 1 for smoke and cpu, which were sized for it; torch's default for paper). "
        + THREADS_HELP.split(". ", 1)[1],
    )
    processes: int = setting(
        1,
        help="independent runs at once: N worker processes train one (arm, seed) run each at a time, then analyse one seed each (one GPU each, round robin, when there are GPUs; on a CPU one core each with --threads 1); a rerun continues whatever they finished. For data parallelism within each run, launch with torchrun instead",
    )
    progress_bar: bool = setting(True, help="show training progress (a bar on a terminal, plain lines in a log)")


__all__ = ["ReproduceSettings"]
