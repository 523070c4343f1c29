"""Command lines built from the configuration dataclasses (``transformers.HfArgumentParser``).

Each setting is defined once, as a dataclass field with its help text
(:func:`setting`); ``mtlstm-train``, ``mtlstm-eval`` and ``mtlstm-analyze`` turn those fields
into options (``--field-name`` and ``--field_name``; booleans that default to True get
``--no-field-name``), add ``--config FILE.json`` (start from a saved configuration), and learn
which options were given (:func:`parse_given`), so that a value in a file or a resumed run is
overridden only by what the user typed. Imports no torch: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .models.mtlstm.checks import check_int_at_least

_NO_DEFAULT = dataclasses.MISSING


def setting(default: Any = _NO_DEFAULT, *, help: str, default_factory: Any = _NO_DEFAULT, **option: Any) -> Any:
    """A dataclass field carrying its command-line help (and ``aliases``/``choices``/``metavar``
    for the option, passed to ``argparse``): the one place the setting is described."""
    metadata = {"help": help, **option}
    if default_factory is not _NO_DEFAULT:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


THREADS_HELP = (
    "torch intra-op threads (default: torch's, one per core). On a machine whose cores are busy with other work, "
    "torch's default can stall: --threads 1 is then many times faster (BENCHMARKS.md); the numbers do not change"
)
"""The help of every command's ``--threads``."""


def threads_setting() -> Any:
    """The ``threads`` field of a command's settings dataclass (``--threads N``; see :func:`apply_threads`)."""
    return setting(None, help=THREADS_HELP, metavar="N")


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` for a command whose options are not a settings dataclass (a bad value is a
    usage error, exit status 2)."""

    def threads(text: str) -> int:
        try:
            return check_int_at_least(int(text), "--threads", 1)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None

    parser.add_argument("--threads", type=threads, default=None, metavar="N", help=THREADS_HELP)


def check_threads(threads: Any) -> int | None:
    """``threads`` if it is ``None`` or an integer >= 1.

    Raises:
        ValueError: naming ``--threads``, the value and what is allowed.
    """
    if threads is None:
        return None
    return check_int_at_least(threads, "--threads", 1)


SEED_LIMIT = 2**32
"""Seeds are integers in ``[0, 2**32)``: what numpy's global seed (``transformers.set_seed``) takes."""


def check_seed(seed: Any, field: str = "seed") -> int:
    """``seed`` if it is an integer in ``[0, 2**32)`` (:data:`SEED_LIMIT`).

    Raises:
        ValueError: naming ``field``, the value and what is allowed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{field} must be an integer from 0 to 2**32 - 1 = {SEED_LIMIT - 1}, got {seed!r}.")
    return seed


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op threads to ``threads`` (``None``: leave torch's default). Imports torch.

    Raises:
        ValueError: see :func:`check_threads`.
    """
    count = check_threads(threads)
    if count is not None:
        import torch

        torch.set_num_threads(count)


@dataclasses.dataclass
class DeviceOptions:
    """Where a command computes, declared once (``mtlstm-eval``, ``mtlstm-analyze``)."""

    device: str | None = setting(None, help="torch device (default: cuda when available, else cpu)")


@dataclasses.dataclass
class ProcessOptions:
    """How a command's process runs, not what it computes (kept out of saved training settings)."""

    threads: int | None = threads_setting()


RENAMED_SETTINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "data_config": ("dataset_config_name", ("EvaluationSettings", "AnalysisRunSettings")),
    "progress": ("progress_bar", ("AnalysisRunSettings",)),
}
"""Old setting name -> ``(its name now, the settings classes that renamed it)``: one name per thing
across the commands. For those classes' commands the old spelling, as an option (``--data-config``)
or a ``--config`` key, still works with a warning until the next minor version (CHANGELOG)."""

_WARNED: set[tuple[str, str]] = set()


def _renamed_for(classes: Sequence[type]) -> dict[str, str]:
    """Old field name -> new one, for the renamed settings of ``classes``."""
    names = {cls.__name__ for cls in classes}
    return {old: new for old, (new, owners) in RENAMED_SETTINGS.items() if names & set(owners)}


def _old_options(renamed: dict[str, str]) -> dict[str, str]:
    """Each deprecated option spelling -> the new option (``--data-config`` / ``--data_config`` ->
    ``--dataset-config-name``; ``--no-progress`` -> ``--no-progress-bar``)."""
    options = {}
    for old, new in renamed.items():
        for negation in ("", "no-"):
            for separator in ("-", "_"):
                options["--" + negation.replace("-", separator) + old.replace("_", separator)] = (
                    "--" + negation + new.replace("_", "-")
                )
    return options


def _warn_renamed(old: str, new: str, command: str) -> None:
    """Say once per process that ``old`` is deprecated for ``new`` (stderr)."""
    if (command, old) in _WARNED:
        return
    _WARNED.add((command, old))
    print(f"{command}: {old} is deprecated: use {new} (the old name goes in the next minor version).", file=sys.stderr)


def _translate_old_options(arguments: list[str], options: dict[str, str], command: str) -> list[str]:
    """``arguments`` with every deprecated option spelling replaced by the new one (warned)."""
    translated = []
    for argument in arguments:
        option, equals, value = argument.partition("=")
        if option in options:
            _warn_renamed(option, options[option], command)
            argument = options[option] + equals + value
        translated.append(argument)
    return translated


def dataclass_parser(
    config_classes: type | Sequence[type], *, prog: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """An ``HfArgumentParser`` with one option per field of ``config_classes`` and ``--config``.

    Raises:
        ValueError: a field type the parser cannot read from a command line.
    """
    from transformers import HfArgumentParser

    classes = [config_classes] if isinstance(config_classes, type) else list(config_classes)
    parser = HfArgumentParser(classes, prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)  # type: ignore[arg-type]  # dataclasses
    for action in parser._actions:
        # The documented spelling (--output-dir) first: argparse's usage line shows the first one.
        action.option_strings.sort(key=lambda option: "_" in option)  # type: ignore[attr-defined]  # a list
        # HfArgumentParser gives a True-by-default field's --no-<field> the field's own help text.
        negated = [option for option in action.option_strings if option.startswith(("--no-", "--no_"))]
        if negated and isinstance(action, argparse._StoreFalseAction) and action.help:
            action.help = f"switch off: {action.help}"
            action.default = argparse.SUPPRESS  # the field's default is the positive option's
    old_options = _old_options(_renamed_for(classes))
    if old_options:  # the old spellings are read (and warned), not listed in --help or abbreviated
        parse_known_args = parser.parse_known_args

        def parse_with_old_spellings(args: Sequence[str] | None = None, namespace: Any = None) -> Any:
            arguments = list(sys.argv[1:] if args is None else args)
            return parse_known_args(_translate_old_options(arguments, old_options, prog), namespace)

        parser.parse_known_args = parse_with_old_spellings  # type: ignore[method-assign,assignment]
    names = " / ".join(cls.__name__ for cls in classes)
    parser.add_argument(
        "--config", dest="config_file", metavar="FILE.json", default=None,
        help=f"start from the settings in this JSON file (an object of {names} field names); options given here override them",
    )  # fmt: skip
    return parser


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and each option's default after its help (none for a setting
    without a default: its help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def split_settings(
    values: dict[str, Any], config_classes: Sequence[type], what: str = "--config"
) -> list[dict[str, Any]]:
    """``values`` (field name -> value) divided among ``config_classes`` by their field names; a
    renamed setting's old name (:data:`RENAMED_SETTINGS`) is read as the new one, with a warning.

    Raises:
        ValueError: a name that is no field of any of them (named, with ``what``).
    """
    parts: list[dict[str, Any]] = [{} for _ in config_classes]
    for old, new in _renamed_for(config_classes).items():
        if old in values:
            if new in values:
                raise ValueError(f"{what}: both {old!r} (its old name) and {new!r} are given; keep {new!r}.")
            _warn_renamed(f"key {old!r}", repr(new), what)
            values = {(new if name == old else name): value for name, value in values.items()}
    for name, value in values.items():
        for part, cls in zip(parts, config_classes):
            if name in {field.name for field in dataclasses.fields(cls)}:
                part[name] = value
                break
        else:
            allowed = " / ".join(cls.__name__ for cls in config_classes)
            raise ValueError(f"{what}: unknown setting {name!r} (not a field of {allowed}).")
    return parts


def parse_given(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[dict[str, Any], str | None]:
    """Parse ``argv`` and return ``(given, config_file)``: only the options the user typed (by
    field name), and ``--config``'s file. Bad options exit with argparse's message (status 2); an
    old spelling of a renamed option (:data:`RENAMED_SETTINGS`) works, with a warning (the parser
    of :func:`dataclass_parser` translates it)."""
    defaults = [(action, action.default) for action in parser._actions if action.dest != "help"]
    try:
        for action, _ in defaults:
            action.default = argparse.SUPPRESS
        given = vars(parser.parse_args(argv))
    finally:
        for action, default in defaults:
            action.default = default
    return given, given.pop("config_file", None)


def read_config_file(path: str, what: str = "--config") -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a JSON object (naming the file).
    """
    file = Path(path).expanduser()
    if file.is_dir():
        raise ValueError(f"{what}: {str(path)!r} is a folder; give a JSON file of settings.")
    if not file.is_file():
        raise FileNotFoundError(f"{what}: {str(path)!r} does not exist.")
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what}: {str(path)!r} is not valid JSON ({error}).") from None
    if not isinstance(values, dict):
        raise ValueError(f"{what}: {str(path)!r} must hold a JSON object of settings, not {type(values).__name__}.")
    return values


def settings_from_command_line(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, config_classes: Sequence[type], positional: str
) -> tuple[Any, list[dict[str, Any]]]:
    """``(the positional argument, one dict of settings per class)``: ``--config``'s file, then
    the options typed (which override it), divided among ``config_classes`` (:func:`split_settings`).

    Raises:
        FileNotFoundError: no such ``--config`` file. ValueError: not a JSON object, or an unknown setting.
    """
    given, config_file = parse_given(parser, argv)
    subject = given.pop(positional)
    values = read_config_file(config_file) if config_file is not None else {}
    return subject, split_settings({**values, **given}, config_classes)
