"""Fine-tune a saved multi-timescale LSTM language model with ``transformers.Trainer``.

The model comes from ``mtlstm-train`` (``<run>/best_model``) or any ``save_pretrained`` folder
holding an MTLSTM model and its tokenizer. The text is tokenized line by line (one ``<eos>``
per line, the corpus convention), concatenated and cut into blocks of ``--block-size`` tokens;
``labels`` are the inputs (the model shifts them). Each block starts from the zero recurrent
state: ``Trainer`` shuffles blocks, so no state can be carried between them (the AWD-style
state-carrying loop is ``mtlstm-train``). The frozen timescale biases are buffers, so the
Trainer's optimizer never touches them.

    python examples/finetune_trainer.py --model outputs/mtlstm-small/best_model \
        --output-dir outputs/finetune --max-steps 200 --gradient-accumulation-steps 2
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

import mtlstm_hf  # noqa: F401  (registers model_type "mtlstm" with the Auto classes)
from mtlstm_hf.data import causal_lm_blocks, load_corpus, sample_corpus_dir


def finetune(
    model_dir: str | Path,
    output_dir: str | Path,
    data: str | None = None,
    block_size: int = 70,
    batch_size: int = 8,
    gradient_accumulation_steps: int = 1,
    learning_rate: float = 1e-3,
    max_steps: int = 100,
    eval_steps: int = 50,
    save_steps: int = 50,
    seed: int = 0,
    prepare_model: Callable[[Any], Any] | None = None,
    **training_arguments: Any,
) -> Trainer:
    """Fine-tune ``model_dir`` on ``data`` (default: the embedded WikiText-2 sample) and save
    the result (model + tokenizer) in ``output_dir``; returns the ``Trainer``.

    ``prepare_model`` maps the loaded model to the one trained (e.g. wraps it with PEFT's
    LoRA: see ``finetune_lora.py``). ``training_arguments`` are passed on to
    ``TrainingArguments`` (e.g. ``logging_steps``).
    """
    tokenizer = AutoTokenizer.from_pretrained(
        str(model_dir), trust_remote_code=False
    )  # with mtlstm_hf imported no code of the folder is needed
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), trust_remote_code=False)
    if len(tokenizer) != model.config.vocab_size:
        raise ValueError(
            f"the tokenizer in {model_dir} has {len(tokenizer)} entries, the model {model.config.vocab_size}."
        )
    if prepare_model is not None:
        model = prepare_model(model)
    corpus = load_corpus(data if data is not None else str(sample_corpus_dir()))
    if "train" not in corpus or "validation" not in corpus:
        raise ValueError(f"the corpus needs train and validation splits, it has {list(corpus)}.")
    blocks = causal_lm_blocks(
        datasets.DatasetDict(train=corpus["train"], validation=corpus["validation"]), tokenizer, block_size
    )

    arguments = TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=True,  # remove to use an accelerator when there is one
        report_to="none",
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=learning_rate,
        max_steps=max_steps,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        logging_steps=max(1, min(eval_steps, 10)),
        prediction_loss_only=True,  # perplexity needs the loss only
        seed=seed,
        **training_arguments,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=blocks["train"],
        eval_dataset=blocks["validation"],
        data_collator=default_data_collator,
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(output_dir))  # model + tokenizer, loadable with from_pretrained
    return trainer


def argument_parser(description: str = __doc__.split("\n\n")[0]) -> argparse.ArgumentParser:
    """The command line of :func:`finetune` (``finetune_lora.py`` adds its options to it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="saved model folder, e.g. outputs/mtlstm-small/best_model")
    parser.add_argument("--data", help="corpus folder or Hub dataset id (default: embedded WikiText-2 sample)")
    parser.add_argument("--output-dir", default="outputs/mtlstm-finetune")
    parser.add_argument("--block-size", type=int, default=70)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--save-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def finetune_from_arguments(args: argparse.Namespace, prepare_model: Callable[[Any], Any] | None = None) -> Trainer:
    """:func:`finetune` with the options of :func:`argument_parser`; prints the validation perplexity."""
    trainer = finetune(
        args.model,
        args.output_dir,
        data=args.data,
        block_size=args.block_size,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.lr,
        max_steps=args.max_steps,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        seed=args.seed,
        prepare_model=prepare_model,
    )
    loss = trainer.evaluate()["eval_loss"]
    print(f"validation perplexity (blocks of {args.block_size}, zero initial state): {math.exp(loss):.2f}")
    print(f"saved: {args.output_dir}")
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    finetune_from_arguments(argument_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
