"""Fine-tune a saved multi-timescale LSTM language model with LoRA adapters (PEFT) and ``Trainer``.

Adapters go on every weight: the embedding and the output layer (as modules) and the input
and recurrent weights of every LSTM layer (``weight_ih``, ``weight_hh``: parameters of one
module, which PEFT reaches through ``target_parameters``; ``target_modules="all-linear"``
finds only the output layer). The base weights and the frozen timescale biases do not
move. The adapter is saved in ``--output-dir`` with :func:`mtlstm_hf.adapters.save_adapter` (it
reloads as trained, tied pair included, and :func:`mtlstm_hf.adapters.load_adapter` refuses a
base of another vocabulary); with ``--merge`` the merged model (a plain ``MTLSTMForCausalLM`` +
tokenizer) is saved in ``--output-dir/merged``.

A model with tied input/output embeddings is untied first when ``--merge`` is given: PEFT
(0.21) adds the delta of a tied adapter pair to the shared matrix twice when merging
(GPT-2 alike), so each use gets its own copy and adapter instead.

    python examples/finetune_lora.py --model outputs/mtlstm-small/best_model \
        --output-dir outputs/lora --max-steps 200 --lora-rank 8 --merge

Training blocks and options are those of ``finetune_trainer.py`` (this script reuses it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from mtlstm_hf.adapters import save_adapter
from mtlstm_hf.data.tokenizer_files import save_tokenizer
from mtlstm_hf.weight_digests import record_weight_digests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_trainer import argument_parser, finetune_from_arguments  # noqa: E402

TARGET_MODULES = ["embeddings", "lm_head"]
TARGET_PARAMETERS = ["weight_ih", "weight_hh"]


def untie_output_layer(model: Any) -> Any:
    """Give the output layer its own copy of the tied embedding matrix (``tie_word_embeddings``
    becomes False); the function computed is unchanged."""
    if model.config.tie_word_embeddings:
        model.get_output_embeddings().weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
        model.config.tie_word_embeddings = False
    return model


def lora_config(rank: int, alpha: float, dropout: float, tied: bool) -> LoraConfig:
    """LoRA on every weight of the model (see the module docstring)."""
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=TARGET_MODULES,
        target_parameters=TARGET_PARAMETERS,
        ensure_weight_tying=tied,  # one adapter for the shared matrix of a tied model
        task_type="CAUSAL_LM",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--merge", action="store_true", help="also save the merged model in OUTPUT_DIR/merged")
    parser.set_defaults(lr=1e-2, output_dir="outputs/mtlstm-lora")
    args = parser.parse_args(argv)

    def with_adapters(model: Any) -> Any:
        if args.merge:
            model = untie_output_layer(model)
        config = lora_config(args.lora_rank, args.lora_alpha, args.lora_dropout, model.config.tie_word_embeddings)
        adapted = get_peft_model(model, config)
        adapted.print_trainable_parameters()
        return adapted

    trainer = finetune_from_arguments(args, prepare_model=with_adapters)
    save_adapter(
        trainer.model, args.output_dir
    )  # over the Trainer's save: reloads as trained, onto its vocabulary only
    if args.merge:
        merged_dir = Path(args.output_dir) / "merged"
        trainer.model.merge_and_unload().save_pretrained(merged_dir)
        record_weight_digests(merged_dir)  # checked when the library's commands read the folder
        save_tokenizer(trainer.processing_class, merged_dir)  # without the keys of its loading
        print(f"merged model: {merged_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
