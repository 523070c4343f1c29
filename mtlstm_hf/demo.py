"""``mtlstm-demo``: build the paper's multi-timescale model, summarise its timescales,
save it and load it back through ``AutoModelForCausalLM``.

Usage: ``mtlstm-demo [--output-dir DIR] [--preset NAME]``; the model is saved to
``outputs/mtlstm-<preset>-demo`` unless ``--output-dir`` says otherwise. It needs no data and
no network.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mtlstm_hf.models.mtlstm.layouts import layer_number

from .command_line import add_threads_option, apply_threads
from .models.mtlstm.presets import PRESETS
from .weight_digests import record_weight_digests

if TYPE_CHECKING:
    from . import MTLSTMForCausalLM


def timescale_summary(model: MTLSTMForCausalLM) -> str:
    """One line per layer: schedule type, and for scheduled layers the assigned timescales'
    minimum, quartiles and maximum (in tokens) with the frozen biases."""
    import torch

    lines = []
    for index, (schedule, timescales) in enumerate(zip(model.config.timescale_schedules, model.assigned_timescales())):
        size = model.config.hidden_sizes[index]
        if timescales is None:
            lines.append(
                f"layer {layer_number(index)} ({size} units): {schedule['type']} (standard LSTM, biases trainable)"
            )
            continue
        quartiles = torch.quantile(timescales, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
        frozen = ",".join(model.config.frozen_gates(index)) or "none"
        lines.append(
            f"layer {layer_number(index)} ({size} units): {schedule['type']} "
            f"T min {timescales.min():.3g}, q25 {quartiles[0]:.3g}, median {quartiles[1]:.3g}, "
            f"q75 {quartiles[2]:.3g}, max {timescales.max():.3g} tokens; frozen biases: {frozen}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="where to save (default: outputs/mtlstm-PRESET-demo)"
    )
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="architecture (default: paper)")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = Path(f"outputs/mtlstm-{args.preset}-demo")
    # Imported only now: torch and transformers take seconds, --help must not wait for them.
    import torch
    from transformers import AutoModelForCausalLM

    from . import MTLSTMConfig, MTLSTMForCausalLM

    apply_threads(args.threads)

    torch.manual_seed(0)
    model = MTLSTMForCausalLM(MTLSTMConfig.from_preset(args.preset)).eval()
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"preset {args.preset!r}: {parameters / 1e6:.1f}M trainable parameters, hidden sizes {model.config.hidden_sizes}"
    )
    print(timescale_summary(model))

    model.save_pretrained(args.output_dir)
    record_weight_digests(args.output_dir)  # checked when the library's commands read the folder
    reloaded = AutoModelForCausalLM.from_pretrained(args.output_dir).eval()
    tokens = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.inference_mode():
        same = torch.equal(model(tokens).logits, reloaded(tokens).logits)
    print(f"saved to {args.output_dir}; reloaded as {type(reloaded).__name__}: identical logits = {same}")
    if not same:
        raise SystemExit("reloaded model differs from the saved one")


if __name__ == "__main__":
    main()
