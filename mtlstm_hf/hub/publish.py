"""Publishing a checkpoint to the Hugging Face Hub in one commit, and fetching its analysis report.

:func:`push_checkpoint` works in three phases, so that bad input never reaches the Hub and a
failure never leaves half-written local state:

1. **Validate** (nothing is sent): the repo id and branch name, the checkpoint folder through
   :func:`mtlstm_hf.model_folder.load_checkpoint` (not ours, incomplete, missing tokenizer,
   vocabulary mismatch), the optional evaluation results and analysis report.
2. **Stage** the exact repository content in a temporary folder: ``model.save_pretrained``
   (``model.safetensors``, ``config.json``, ``generation_config.json`` and the remote-code
   ``.py`` files, which ``register_for_auto_class`` makes it copy), the tokenizer (without the
   keys of this session's loading: :func:`mtlstm_hf.data.tokenizer_files.save_tokenizer`),
   ``training_config.json`` / ``training_metrics.json`` / ``eval_results.json`` when known (local
   paths cut to folder names), the analysis report under ``analysis/`` and the generated model
   card as ``README.md``. Weights are always re-serialised as safetensors from the validated
   model: a ``pytorch_model.bin`` (a pickle) is never published.
3. **Upload** the staged folder with :meth:`huggingface_hub.HfApi.create_commit` (one commit;
   the repo and the branch are created first when needed), or, for a dry run, move it to
   ``dry_run_dir``. The temporary folder is removed in every case.

The access token is handed to ``huggingface_hub`` only; it is never logged, never written, and
removed from the text of any error this module raises. That is the token in effect, however it
was found: passed in, ``HF_TOKEN``, or the stored login (``hf auth login``, the file at
``HF_TOKEN_PATH``, by default under ``HF_HOME``), resolved by ``huggingface_hub`` itself
(:func:`huggingface_hub.utils.get_token_to_send`). An error whose text shows the token is not
chained to the new one, so no traceback shows it either.

Symbolic links in the checkpoint and analysis folders are never followed (what one points to
may be anywhere, a token file included): they are listed as skipped, and an analysis folder or
``report.json`` that is one is refused.

A folder given as ``checkpoint_dir`` that a crashed training run left hidden (``.NAME.old``
beside a missing ``NAME``, see :mod:`mtlstm_hf.training.checkpoint`) is moved back first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, constants, snapshot_download
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import get_token_to_send, validate_repo_id
from transformers import GenerationConfig

from mtlstm_hf.files import PathOrStr

from ..data.tokenizer_files import save_tokenizer
from ..evaluation.json_values import to_json_compatible
from ..files import TRAINING_CONFIG_FILENAME, TRAINING_METRICS_FILENAME, repair_interrupted_replacement
from ..model_folder import load_checkpoint
from ..training.tracking import logged_test_perplexity
from .model_card import DEFAULT_LICENSE, build_model_card, public_value

__all__ = [
    "ANALYSIS_DIRNAME",
    "EVAL_RESULTS_FILENAME",
    "HubOfflineError",
    "HubRequestError",
    "HubUploadError",
    "PushResult",
    "fetch_report",
    "push_checkpoint",
]

logger = logging.getLogger(__name__)


ANALYSIS_DIRNAME = "analysis"
"""Folder of the analysis report, in a checkpoint folder and in the repository."""
REPORT_FILENAME = "report.json"
EVAL_RESULTS_FILENAME = "eval_results.json"
"""Evaluation result (``mtlstm-eval --output``) looked for in the checkpoint folder."""
CARD_FILENAME = "README.md"
REPORT_SUFFIXES = frozenset({".json", ".png", ".svg", ".jpg", ".jpeg"})
"""Files of the analysis folder that are published: the report's JSON and its figures."""
FIGURE_SUFFIXES = frozenset({".png", ".svg", ".jpg", ".jpeg"})

_COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")
# Branch names git and the Hub accept (conservative subset of git check-ref-format).
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*\.lock$)(?!.*/$)[A-Za-z0-9._/-]+$")


class HubRequestError(RuntimeError):
    """A request to the Hub failed and its error showed the access token: this error has the
    text with the token replaced by ``***`` and no chained cause."""


class HubUploadError(HubRequestError):
    """The Hub refused or failed the upload. No commit was made by the failed call (a repository or
    branch it created before failing may remain)."""


class HubOfflineError(ConnectionError):
    """``HF_HUB_OFFLINE`` is set, so the Hub cannot be reached (raised before anything is done)."""


@dataclass
class PushResult:
    """What :func:`push_checkpoint` published (or, for a dry run, would publish).

    Attributes:
        repo_id, revision: the repository and branch.
        files: repository paths of the committed files, sorted.
        skipped: files of the checkpoint folder that were not published (e.g. ``pytorch_model.bin``,
            optimizer state, unknown files), relative to it.
        commit_oid, commit_url: the new commit (``None`` for a dry run); load this exact
            version with ``from_pretrained(repo_id, revision=commit_oid)``.
        dry_run_dir: the folder written by a dry run, else ``None``.
    """

    repo_id: str
    revision: str
    files: list[str]
    skipped: list[str] = field(default_factory=list)
    commit_oid: str | None = None
    commit_url: str | None = None
    dry_run_dir: Path | None = None


# --- validation (nothing is sent) -------------------------------------------------------------


def _check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid ``namespace/name`` (the namespace is required: loading needs it)."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"invalid repo id {repo_id!r}: expected 'namespace/name' (e.g. 'alice/mtlstm-ptb')")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid repo id {repo_id!r}: {error}") from None
    return repo_id


def _check_branch(revision: str | None) -> str:
    """The branch to commit to (``main`` by default); commit ids and refs are refused."""
    branch = constants.DEFAULT_REVISION if revision is None else revision
    if (
        not isinstance(branch, str)
        or not _BRANCH.match(branch)
        or _COMMIT_ID.match(branch)
        or branch.startswith("refs/")
    ):
        raise ValueError(
            f"invalid target revision {revision!r}: commits go to a branch; give a branch name "
            "(letters, digits, '.', '_', '-', '/'), not a commit id or a ref"
        )
    return branch


def _read_json(path: Path, what: str) -> Any:
    """Parsed JSON of ``path``; ``ValueError`` naming ``what`` when it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{what} {str(path)!r} is not readable JSON: {error}") from None


def _optional_json(folder: Path, name: str) -> Any:
    """Parsed ``folder/name``, or ``None`` when the file does not exist."""
    path = folder / name
    return _read_json(path, name) if path.is_file() else None


def _load_eval_results(eval_results: PathOrStr | Mapping[str, Any] | None, checkpoint: Path) -> dict[str, Any] | None:
    """The evaluation result to publish: given (dict or JSON file) or ``eval_results.json`` of the checkpoint."""
    if eval_results is None:
        value = _optional_json(checkpoint, EVAL_RESULTS_FILENAME)
    elif isinstance(eval_results, Mapping):
        value = dict(eval_results)
    else:
        path = Path(eval_results).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"evaluation results {str(eval_results)!r} do not exist")
        value = _read_json(path, "evaluation results")
    if value is not None and not (isinstance(value, dict) and "perplexity" in value):
        raise ValueError(
            "evaluation results must be the output of evaluate_checkpoint / `mtlstm-eval --output` "
            "(a JSON object with 'perplexity' and 'bins'); a --compare result is not accepted"
        )
    return value


def _analysis_report(analysis_dir: PathOrStr | None, checkpoint: Path) -> tuple[Path, dict[str, Any]] | None:
    """The analysis report folder to publish and its report, or ``None`` when there is none.

    Checked with the analysis package's own loader (a folder of ``mtlstm-analyze``, with a
    ``report.json`` of a known ``format_version``), so that what is published can be read back.
    Symbolic links are not followed: ``checkpoint/analysis`` or ``report.json`` being one is
    refused (``ValueError``); other links in the folder are left out (listed as skipped).
    """
    if analysis_dir is None:
        folder = checkpoint / ANALYSIS_DIRNAME
        if folder.is_symlink():
            raise ValueError(
                f"{str(folder)!r} is a symbolic link; publishing follows no links (what one points to may be "
                "anywhere): give the folder it points to with --analysis / analysis_dir"
            )
        if not folder.exists():
            return None
    else:
        folder = Path(analysis_dir).expanduser()
    if folder.is_dir() and REPORT_FILENAME in _walk(folder)[1]:
        raise ValueError(
            f"{str(folder / REPORT_FILENAME)!r} is a symbolic link; publishing follows no links: copy the report there"
        )
    from ..analysis.report import load_report  # the analysis package is heavy: imported only when needed

    return folder, load_report(folder)


def _check_dry_run_dir(dry_run_dir: PathOrStr) -> Path:
    """The dry-run destination, which must be new or empty (a dry run never overwrites)."""
    folder = Path(dry_run_dir).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"dry-run folder {str(dry_run_dir)!r} exists and is not empty; give a new folder")
    return folder


# --- staging ------------------------------------------------------------------------------------


def _write_json(path: Path, value: Any) -> None:
    """Write ``value`` as strict JSON."""
    # Strict JSON (NaN of an empty bin -> null, as mtlstm-eval writes it); key order kept, since
    # frequency bins are listed most frequent first.
    path.write_text(json.dumps(to_json_compatible(value), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _walk(folder: Path) -> tuple[list[str], list[str]]:
    """``(files, links)`` under ``folder``: its regular files and its symbolic links (to files or
    folders), as sorted POSIX paths relative to it (= repository paths). Links are not followed:
    what one points to may be anywhere (a token file, another run)."""
    files, links = [], []
    for root, dirs, names in os.walk(folder):  # followlinks=False: a linked folder is not entered
        base = Path(root)
        for name in dirs + names:
            path = base / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links.append(relative)
            elif name in names and path.is_file():
                files.append(relative)
    return sorted(files), sorted(links)


def _relative_files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` (symbolic links left out), as sorted repository paths."""
    return _walk(folder)[0]


def _check_remote_code(staging: Path) -> None:
    """Every module named in ``auto_map`` is staged: ``trust_remote_code`` loading needs it."""
    auto_map = _read_json(staging / "config.json", "config").get("auto_map") or {}
    missing = sorted(
        {f"{reference.split('.')[0]}.py" for reference in auto_map.values() if isinstance(reference, str)}
        - {path.name for path in staging.glob("*.py")}
    )
    if not auto_map or missing:
        raise RuntimeError(
            "the saved model lacks its remote code (auto_map / " + ", ".join(missing or ["auto_map"]) + "); "
            "remote loading would fail"
        )


def _stage(
    staging: Path,
    checkpoint: Path,
    repo_id: str,
    branch: str,
    *,
    analysis: tuple[Path, dict[str, Any]] | None,
    eval_results: dict[str, Any] | None,
    license: str,  # noqa: A002
    dataset: str | None,
    dataset_config: str | None,
    language: str | None,
) -> list[str]:
    """Write the repository content into ``staging``; returns the skipped checkpoint files."""
    model, tokenizer = load_checkpoint(checkpoint)  # the validation: clear errors on bad folders
    model.save_pretrained(staging)
    if not (staging / "generation_config.json").is_file():
        GenerationConfig.from_model_config(model.config).save_pretrained(staging)
    _check_remote_code(staging)
    save_tokenizer(tokenizer, staging)  # without the keys of this session's loading (is_local...)

    training_config = _optional_json(checkpoint, TRAINING_CONFIG_FILENAME)
    training_metrics = _optional_json(checkpoint, TRAINING_METRICS_FILENAME)
    run_test = logged_test_perplexity(checkpoint) if training_metrics is not None else None
    for name, value in (
        (TRAINING_CONFIG_FILENAME, training_config),
        (TRAINING_METRICS_FILENAME, training_metrics),
        (EVAL_RESULTS_FILENAME, eval_results),
    ):
        if value is not None:
            _write_json(staging / name, public_value(value))

    report, figures = None, []
    links: list[str] = []
    if analysis is not None:
        folder, report = analysis
        files, links = _walk(folder)
        links = [f"{ANALYSIS_DIRNAME}/{relative}" for relative in links]
        for relative in files:
            if Path(relative).suffix.lower() in REPORT_SUFFIXES:
                target = staging / ANALYSIS_DIRNAME / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / relative, target)  # the report as written: fetch_report reads it back
                if target.suffix.lower() in FIGURE_SUFFIXES:
                    figures.append(f"{ANALYSIS_DIRNAME}/{relative}")

    card = build_model_card(
        model,
        repo_id=repo_id,
        revision=branch,
        license=license,
        training_config=training_config,
        training_metrics=training_metrics,
        eval_results=eval_results,
        logged_test_perplexity=run_test,
        report=report,
        figures=figures,
        dataset=dataset,
        dataset_config=dataset_config,
        language=language,
    )
    card.save(staging / CARD_FILENAME)

    # Same relative names in both folders (the checkpoint's analysis/ is published as analysis/).
    published = set(_relative_files(staging))
    files, checkpoint_links = _walk(checkpoint)
    return sorted({name for name in files + checkpoint_links if name not in published} | set(links))


@contextmanager
def _staging_folder(parent: Path | None) -> Iterator[Path]:
    """A fresh temporary folder (in ``parent`` when given), removed on exit whatever happens."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".mtlstm-push-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tokens_in_effect(token: str | bool | None) -> tuple[str, ...]:
    """The access token(s) a request with ``token`` may carry: the one given, or the one
    ``huggingface_hub`` picks (``HF_TOKEN``, then the stored login), as it resolves it."""
    found: set[str | None] = {token} if isinstance(token, str) else set()
    try:
        found.add(get_token_to_send(token))
    except Exception:  # noqa: BLE001 - token=True without any token: nothing to redact
        pass
    return tuple(sorted(value for value in found if isinstance(value, str) and value))


def _redact(text: str, tokens: tuple[str, ...]) -> str:
    """``text`` with every occurrence of the tokens replaced by ``***``."""
    for token in tokens:
        text = text.replace(token, "***")
    return text


def _mentions_token(error: BaseException, tokens: tuple[str, ...]) -> bool:
    """Whether ``error`` or an exception it chains to shows a token (then it is not chained)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        text = f"{current}\n{current!r}\n" + "\n".join(getattr(current, "__notes__", None) or [])
        if any(token in text for token in tokens):
            return True
        pending += [chained for chained in (current.__cause__, current.__context__) if chained is not None]
    return False


# --- upload ------------------------------------------------------------------------------------


def _upload(
    staging: Path,
    repo_id: str,
    branch: str,
    *,
    private: bool,
    commit_message: str,
    token: str | bool | None,
) -> tuple[str, str]:
    """Create the repo / branch when needed and commit ``staging`` in one commit; ``(oid, url)``."""
    api = HfApi()
    tokens = _tokens_in_effect(token)
    step = "creating the repository"
    failure: HubUploadError | None = None
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        if branch != constants.DEFAULT_REVISION:
            step = f"creating the branch {branch!r}"
            api.create_branch(repo_id, branch=branch, exist_ok=True, token=token)
        step = "committing the files"
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(staging / name))
            for name in _relative_files(staging)
        ]
        info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=branch, token=token)
    except Exception as error:  # noqa: BLE001 - the boundary to a remote service: report it in our terms
        failure = HubUploadError(
            f"pushing to {repo_id!r} (branch {branch!r}) failed while {step}; nothing was committed by this "
            "push (the Hub applies a commit whole or not at all; the repository or branch may exist now) and "
            f"the local checkpoint is unchanged. {_redact(f'{type(error).__name__}: {error}', tokens)}"
        )
        cause = None if _mentions_token(error, tokens) else error
    if failure is not None:
        # Raised outside the except block so that an error showing the token is not even kept as
        # the implicit __context__.
        raise failure from cause
    return info.oid, info.commit_url


def push_checkpoint(
    checkpoint_dir: PathOrStr,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
    dry_run_dir: PathOrStr | None = None,
    analysis_dir: PathOrStr | None = None,
    eval_results: PathOrStr | Mapping[str, Any] | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    language: str | None = None,
    license: str = DEFAULT_LICENSE,  # noqa: A002 - the metadata field's name
) -> PushResult:
    """Publish a checkpoint folder to the Hub in one commit (or write that commit's folder: dry run).

    Args:
        checkpoint_dir: a folder written by ``model.save_pretrained`` + ``tokenizer.save_pretrained``
            (e.g. ``best_model/`` of a training run), optionally with ``training_config.json``,
            ``training_metrics.json``, ``eval_results.json`` and an ``analysis/`` report folder.
        repo_id: ``namespace/name`` of the model repository (created if missing).
        private: create the repository private (an existing repository keeps its visibility).
        revision: the branch to commit to (default ``main``); created from ``main`` if missing.
        commit_message: default names the checkpoint folder and the package version.
        token: Hub token (default: ``HF_TOKEN`` / the stored login, as ``huggingface_hub`` does).
        dry_run_dir: write the exact folder that would be uploaded there (new or empty folder)
            and upload nothing.
        analysis_dir: the report folder of ``mtlstm-analyze`` (``report.json`` + ``figures/``) to
            publish under ``analysis/``; default ``checkpoint_dir/analysis`` when it exists.
        eval_results: evaluation result (dict or JSON file from ``mtlstm-eval --output``); default
            ``checkpoint_dir/eval_results.json`` when it exists. Fills the card's evaluation table
            and ``model-index``.
        dataset: the Hub dataset that the local training / evaluation corpus is a copy of (the
            card names it in ``datasets:`` and the ``model-index``); a Hub dataset the run read
            keeps its own id, and a run on the embedded WikiText-2 sample cannot be renamed.
        dataset_config: that Hub dataset's configuration (e.g. ``wikitext-2-raw-v1``).
        language: ISO 639-1 code for the metadata (default: the corpus's when it is a known one).
        license: license id for the card metadata.

    Returns:
        A :class:`PushResult` (commit id for loading this exact version with ``revision=``).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: bad input, raised before anything is
            sent (invalid repo id or branch, a folder that is not an mtlstm checkpoint, missing
            weights or tokenizer, unreadable evaluation results or report, non-empty dry-run folder).
        HubOfflineError: ``HF_HUB_OFFLINE`` is set (and this is not a dry run); nothing was done.
        HubUploadError: the Hub failed the upload (nothing was committed by this call).
    """
    from .. import __version__

    repo_id = _check_repo_id(repo_id)
    branch = _check_branch(revision)
    if commit_message is not None and not commit_message.strip():
        raise ValueError("commit_message must not be empty")
    checkpoint = Path(checkpoint_dir).expanduser()
    repair_interrupted_replacement(checkpoint)  # a crash while a training run replaced best_model/
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint {str(checkpoint_dir)!r} is not a folder")
    dry_run_folder = None if dry_run_dir is None else _check_dry_run_dir(dry_run_dir)
    if dry_run_folder is None and constants.is_offline_mode():
        raise HubOfflineError("HF_HUB_OFFLINE is set: the Hub cannot be reached; unset it to push, or make a dry run")
    evaluation = _load_eval_results(eval_results, checkpoint)
    analysis = _analysis_report(analysis_dir, checkpoint)
    message = (
        commit_message
        or f"Upload multi-timescale LSTM checkpoint {checkpoint.resolve().name} (mtlstm_hf {__version__})"
    )

    # A dry run stages next to its destination, so that the final step is one rename.
    staging_parent = None if dry_run_folder is None else dry_run_folder.parent
    with _staging_folder(staging_parent) as staging:
        skipped = _stage(
            staging, checkpoint, repo_id, branch, analysis=analysis, eval_results=evaluation, license=license,
            dataset=dataset, dataset_config=dataset_config, language=language,
        )  # fmt: skip
        files = _relative_files(staging)
        if dry_run_folder is not None:
            if dry_run_folder.exists():
                dry_run_folder.rmdir()  # checked empty above
            staging.rename(dry_run_folder)
            logger.info("dry run: wrote %d files to %s", len(files), dry_run_folder)
            return PushResult(repo_id, branch, files, skipped, dry_run_dir=dry_run_folder)
        logger.info("pushing %d files to %s (branch %s)", len(files), repo_id, branch)
        oid, url = _upload(staging, repo_id, branch, private=private, commit_message=message, token=token)
    logger.info("committed %s to %s", oid, repo_id)
    return PushResult(repo_id, branch, files, skipped, commit_oid=oid, commit_url=url)


def fetch_report(
    repo_id: str,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: PathOrStr | None = None,
) -> dict[str, Any]:
    """Download the analysis report published with a model and load it back (nothing is recomputed).

    Args:
        repo_id: the model repository.
        revision: branch, tag or commit id (default ``main``); pin a commit for reproducibility.
        token: Hub token for private repositories (default as ``huggingface_hub``).
        cache_dir: Hub cache folder (default the ``huggingface_hub`` cache).

    Returns:
        ``mtlstm_hf.analysis.load_report`` of the downloaded folder: the ``report.json`` dict plus
        ``folder`` and ``figure_paths`` (absolute paths of the figures, in the Hub cache).

    Raises:
        FileNotFoundError: the repository has no ``analysis/report.json`` at that revision.
        HubRequestError: the download failed with an error showing the access token (redacted
            here); other failures are ``huggingface_hub``'s own errors.
    """
    tokens = _tokens_in_effect(token)
    failure: HubRequestError | None = None
    cache = None if cache_dir is None else Path(cache_dir)  # snapshot_download takes str | Path, and makes a Path of it
    try:
        snapshot = snapshot_download(
            repo_id, revision=revision, allow_patterns=[f"{ANALYSIS_DIRNAME}/*"], token=token, cache_dir=cache
        )
    except Exception as error:
        if not _mentions_token(error, tokens):
            raise
        failure = HubRequestError(
            f"downloading the analysis report of {repo_id!r} failed: {_redact(f'{type(error).__name__}: {error}', tokens)}"
        )
    if failure is not None:
        raise failure from None  # outside the except block: not even the implicit context shows the token
    folder = Path(snapshot) / ANALYSIS_DIRNAME
    if not (folder / REPORT_FILENAME).is_file():
        raise FileNotFoundError(
            f"{repo_id}@{revision or constants.DEFAULT_REVISION} has no analysis report ({ANALYSIS_DIRNAME}/{REPORT_FILENAME})"
        )
    from ..analysis.report import load_report

    return load_report(folder)
