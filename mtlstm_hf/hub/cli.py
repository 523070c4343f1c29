"""``mtlstm-push``: publish a checkpoint folder to the Hugging Face Hub in one commit.

Examples::

    mtlstm-push runs/mts/best_model alice/mtlstm-ptb
    mtlstm-push runs/mts/best_model alice/mtlstm-ptb --revision experiment --private \\
        --eval-results mts.json --analysis reports/mts --commit-message "PTB, 40 epochs"
    mtlstm-push runs/mts/best_model alice/mtlstm-ptb --dry-run /tmp/mtlstm-ptb   # upload nothing

The token comes from ``HF_TOKEN`` or the stored ``hf auth login`` (as for every ``huggingface_hub``
client); ``--token-file`` reads it from a file. There is deliberately no ``--token VALUE``: a
token on the command line ends up in shell history and process listings. The library function
behind the command is :func:`mtlstm_hf.hub.push_checkpoint`.

Exit codes (:mod:`mtlstm_hf.exit_codes`, the same for every command): 0 done, 2 bad input
(arguments, checkpoint folder, evaluation results, report; nothing was sent), 4 I/O failure
(the Hub failed or refused the upload, no network, ``HF_HUB_OFFLINE`` set, an unreadable token
file, a dry-run folder that cannot be written), 130 interrupted. Errors are one line on stderr
naming the path or value and the cause; the access token never appears in them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import exit_codes
from ..command_line import add_threads_option, apply_threads

if TYPE_CHECKING:
    from .publish import PushResult

__all__ = ["build_parser", "main"]

PROG = "mtlstm-push"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``mtlstm-push``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish an mtlstm checkpoint (weights, tokenizer, remote code, analysis report and a "
        "generated model card) to the Hugging Face Hub in one commit.",
        epilog=exit_codes.epilog(),
    )
    parser.add_argument(
        "checkpoint", help="folder written by save_pretrained (model and tokenizer), e.g. a run's best_model/"
    )
    parser.add_argument("repo_id", help="model repository, namespace/name (created if missing)")
    parser.add_argument("--revision", default=None, help="branch to commit to (default: main; created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--commit-message", default=None, help="commit message")
    parser.add_argument(
        "--token-file", type=Path, default=None, help="file holding the Hub token (default: HF_TOKEN / stored login)"
    )
    parser.add_argument(
        "--dry-run",
        metavar="DIR",
        type=Path,
        default=None,
        help="write the folder that would be uploaded to DIR; upload nothing",
    )
    parser.add_argument(
        "--analysis",
        metavar="DIR",
        type=Path,
        default=None,
        help="analysis report folder (default: CHECKPOINT/analysis if present)",
    )
    parser.add_argument(
        "--eval-results",
        metavar="FILE",
        type=Path,
        default=None,
        help="JSON of `mtlstm-eval --output` (default: CHECKPOINT/eval_results.json if present)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="the Hub dataset the local training corpus is a copy of (e.g. ptb_text_only), named in the card's metadata; a Hub dataset the run read is named by itself, the embedded WikiText-2 sample by nothing",
    )
    parser.add_argument(
        "--dataset-config", default=None, help="that Hub dataset's configuration (e.g. wikitext-2-raw-v1)"
    )
    parser.add_argument(
        "--language",
        default=None,
        help="ISO 639-1 language code for the card (default: the corpus's, when it is a known one)",
    )
    parser.add_argument(
        "--license",
        default=None,
        help="license id for the model card (default: mtlstm_hf.hub.DEFAULT_LICENSE, the library's)",
    )
    add_threads_option(parser)
    return parser


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.expanduser().read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"--token-file: {str(path)!r} does not exist") from None
    except OSError as error:  # permission, a folder: an I/O failure, with the path and the cause
        raise type(error)(error.errno, f"--token-file: cannot read it: {error.strerror}", str(path)) from None
    if not token:
        raise ValueError(f"the token file {str(path)!r} is empty")
    return token


def _report(result: PushResult) -> str:
    lines = []
    if result.dry_run_dir is not None:
        lines.append(
            f"Dry run: {len(result.files)} files for {result.repo_id} (branch {result.revision}) written to {result.dry_run_dir}"
        )
    else:
        lines.append(
            f"Pushed {len(result.files)} files to {result.repo_id} (branch {result.revision}) in commit {result.commit_oid}"
        )
        lines.append(f"  {result.commit_url}")
        lines.append(f"  load this version with from_pretrained({result.repo_id!r}, revision={result.commit_oid!r})")
    lines += [f"  + {name}" for name in result.files]
    lines += [f"  - {name} (not published)" for name in result.skipped]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlstm-push``; returns the exit status."""
    args = build_parser().parse_args(argv)
    # Imported only now: torch and transformers take seconds, --help must not wait for them.
    from .model_card import DEFAULT_LICENSE
    from .publish import HubUploadError, push_checkpoint

    apply_threads(args.threads)

    try:
        result = push_checkpoint(
            args.checkpoint,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            token=_read_token(args.token_file),
            dry_run_dir=args.dry_run,
            analysis_dir=args.analysis,
            eval_results=args.eval_results,
            dataset=args.dataset,
            dataset_config=args.dataset_config,
            language=args.language,
            license=args.license or DEFAULT_LICENSE,
        )
    except HubUploadError as error:
        print(f"{PROG}: upload failed: {exit_codes.one_line(str(error))}", file=sys.stderr)
        return exit_codes.IO_FAILURE
    except OSError as error:
        if not exit_codes.is_io_failure(error):  # a missing checkpoint or file, a non-empty dry-run folder
            print(f"{PROG}: error: {exit_codes.one_line(str(error))}", file=sys.stderr)
            return exit_codes.BAD_INPUT
        print(f"{PROG}: error: {exit_codes.describe_io_failure(error)}", file=sys.stderr)
        return exit_codes.IO_FAILURE
    except ValueError as error:
        print(f"{PROG}: error: {exit_codes.one_line(str(error))}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    except KeyboardInterrupt:
        print(
            f"{PROG}: error: interrupted (the local checkpoint is unchanged; a commit the Hub had already accepted stays)",
            file=sys.stderr,
        )
        return exit_codes.INTERRUPTED
    print(_report(result))
    return exit_codes.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
