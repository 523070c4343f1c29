"""The package's structure rules: no module imports a private name
(leading underscore) from another package of mtlstm_hf, and the model does not depend on the
tool packages. Oracle: the import statements (ast)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtlstm_hf"
TOOL_PACKAGES = {"training", "evaluation", "analysis", "data", "hub", "convert", "reproduce", "ops"}


def imported_names(path: Path):
    """``(absolute module, names)`` of every ``from ... import ...`` in ``path`` within mtlstm_hf."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(parts[: len(parts) - node.level])
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if module.split(".")[0] == "mtlstm_hf":
            yield module, [alias.name for alias in node.names]


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def test_no_module_imports_a_private_name_from_another_package():
    offences = []
    for path in PACKAGE.rglob("*.py"):
        own = package_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for module, names in imported_names(path):
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            if private and package_of(module) != own:
                offences.append(f"{path.relative_to(PACKAGE)}: from {module} import {', '.join(private)}")
    assert not offences, "\n".join(offences)


def test_the_model_imports_no_tool_package():
    for path in (PACKAGE / "models").rglob("*.py"):
        for module, _ in imported_names(path):
            assert package_of(module) not in TOOL_PACKAGES, f"{path.relative_to(PACKAGE)} imports {module}"


def test_matplotlib_is_a_dependency_so_the_analyses_draw_their_figures():
    """With matplotlib only in an extra, ``pip install -e .`` then ``mtlstm-analyze`` wrote no
    figures. The figures are part of the analysis: it is a dependency."""
    requires = pyproject()["project"]["dependencies"]
    assert any(requirement.split(">")[0].split("=")[0] == "matplotlib" for requirement in requires), requires


def test_license_citation_and_typing_marker_ship_with_the_package():
    """LICENSE holds the license pyproject.toml declares; CITATION.cff names the software and the three
    papers of the model card's BibTeX (the oracle: their titles); py.typed is package data."""
    import re

    import yaml

    from mtlstm_hf.hub.model_card import CITATIONS

    root = PACKAGE.parent
    declared = pyproject()["project"]["license"]
    assert declared == "BSD-3-Clause" and (root / "LICENSE").read_text(encoding="utf-8").startswith(
        "BSD 3-Clause License"
    )
    citation = yaml.safe_load((root / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["license"] == declared
    titles = {reference["title"] for reference in citation["references"]}
    bibtex_titles = {
        re.search(r"title\s*=\s*\{(.*)\},", entry).group(1).replace("{", "").replace("}", "")
        for entry in CITATIONS.values()
    }
    assert titles == bibtex_titles
    assert (PACKAGE / "py.typed").is_file() and "py.typed" in pyproject()["tool"]["setuptools"]["package-data"][
        "mtlstm_hf"
    ]


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))


def test_packaging_is_pyproject_alone_and_names_every_command():
    """PEP 621 metadata in pyproject.toml, no setup.py; its console scripts are the commands the
    package lists (mtlstm_hf.COMMANDS) and each entry point resolves to a callable ``main``."""
    import importlib

    import mtlstm_hf

    assert not (PACKAGE.parent / "setup.py").exists() and not (PACKAGE.parent / "setup.cfg").exists()
    scripts = pyproject()["project"]["scripts"]
    assert set(scripts) == set(mtlstm_hf.COMMANDS)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mtlstm_hf.__version__"}


def test_every_test_named_in_reliability_md_exists():
    """RELIABILITY.md names the test of each kind (``file.py::test_name``, ``::test_name`` for the
    same file): each must be a test function of that file (oracle: the test files' ast)."""
    import re

    root = PACKAGE.parent
    named = []
    for line in (root / "RELIABILITY.md").read_text(encoding="utf-8").splitlines():
        if not re.match(r"^\| \d+\. ", line):
            continue
        current = None
        for file, test in re.findall(r"`(test_\w+\.py)?::(\w+)", line.rsplit(" | ", 1)[-1]):
            current = file or current
            named.append((current, test))
    assert len(named) > 30
    missing = []
    for file, test in named:
        path = root / "tests" / (file or "")
        defined = (
            {
                node.name
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.FunctionDef)
            }
            if file and path.is_file()
            else set()
        )
        if test not in defined:
            missing.append(f"{file}::{test}")
    assert not missing, missing


def test_every_document_the_package_cites_exists():
    """A Markdown file named in the package's code or docstrings is in the repository (or is
    REPORT.md, which mtlstm-reproduce writes); docs/PAPERS.md and DEVELOPERS.md were cited and
    never shipped."""
    import re

    root = PACKAGE.parent
    shipped = {path.relative_to(root).as_posix() for path in root.rglob("*.md") if ".git" not in path.parts}
    cited = set()
    for path in PACKAGE.rglob("*.py"):
        cited |= set(re.findall(r"[A-Za-z_./-]*[A-Za-z_]+\.md\b", path.read_text(encoding="utf-8")))
    missing = sorted(
        name for name in cited - {"REPORT.md"} if not any(doc == name or doc.endswith("/" + name) for doc in shipped)
    )
    assert not missing, missing


def test_evaluation_and_analysis_do_not_depend_on_training_and_no_module_imports_in_a_circle():
    """Evaluation and analysis read model folders through mtlstm_hf.files (the run folder's names,
    atomic writes, the recorded corpus), not through the training package; and no two modules of
    the package import each other, directly or around a loop (deferred imports included)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = {module for module, _ in imported_names(path)}
    for name, imports in modules.items():
        if package_of(name + ".x") in {"evaluation", "analysis"} or name.split(".")[1:2] in (
            ["evaluation"],
            ["analysis"],
        ):
            assert not any(module.startswith("mtlstm_hf.training") for module in imports), (name, imports)

    def resolve(module: str) -> str | None:  # "from .x import name" may name a module or a name in it
        return module if module in modules else None

    graph = {name: {resolve(module) for module in imports} - {None, name} for name, imports in modules.items()}
    seen, on_path, circles = set(), [], []

    def visit(node: str) -> None:
        if node in on_path:
            circles.append(on_path[on_path.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        on_path.append(node)
        for successor in sorted(graph[node]):
            visit(successor)
        on_path.pop()

    for node in sorted(graph):
        visit(node)
    # Package faces (__init__) hand names on lazily or re-export: a loop through one is not a module circle.
    circles = [
        circle
        for circle in circles
        if not any(
            name.count(".") <= 1
            and name in modules
            and (PACKAGE.parent / (name.replace(".", "/") + "/__init__.py")).is_file()
            for name in circle
        )
    ]
    assert not circles, circles[:5]


def test_the_moved_ops_modules_still_import_and_say_where_they_went():
    """``mtlstm_hf.ops`` was split (naive references beside the kernels, gates in analysis): the old
    names keep working for one version, with a DeprecationWarning naming the new module."""
    import subprocess
    import sys

    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from mtlstm_hf.ops.gates import gates_and_cells\n"
        "    from mtlstm_hf.ops.naive import reference_sequence\n"
        "import mtlstm_hf.analysis.gates as g, mtlstm_hf.models.mtlstm.naive as n\n"
        "assert gates_and_cells is g.gates_and_cells and reference_sequence is n.reference_sequence\n"
        "print(sorted(str(w.message).split(' ')[3] for w in caught if w.category is DeprecationWarning))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['mtlstm_hf.analysis.gates;', 'mtlstm_hf.models.mtlstm.naive;']"


def test_a_model_folder_is_loaded_by_one_module_and_training_names_its_own_functions_apart():
    """load_checkpoint / load_model_strictly / resolve_checkpoint live in mtlstm_hf.model_folder
    (evaluation re-exports them); training's checkpoint functions have other names, and its old
    ``resolve_checkpoint`` still works for one version with a DeprecationWarning."""
    import warnings

    import pytest

    import mtlstm_hf.evaluation as evaluation
    import mtlstm_hf.evaluation.checkpoint as evaluation_checkpoint
    import mtlstm_hf.model_folder as model_folder
    import mtlstm_hf.training as training
    import mtlstm_hf.training.checkpoint as training_checkpoint

    assert evaluation.load_checkpoint is model_folder.load_checkpoint
    for name in ("load_checkpoint", "load_model_strictly", "resolve_checkpoint"):
        assert getattr(evaluation_checkpoint, name) is getattr(model_folder, name)
    assert not hasattr(training_checkpoint, "load_checkpoint")
    assert training.resolve_resume_checkpoint is training_checkpoint.resolve_resume_checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FileNotFoundError):
            training.resolve_checkpoint(PACKAGE / "no such run")
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "resolve_resume_checkpoint" in str(caught[0].message)


def test_one_version_number():
    """The package, its metadata (pyproject.toml reads it), CITATION.cff and the CHANGELOG's newest
    release name the same version."""
    import re

    import yaml

    import mtlstm_hf

    root = PACKAGE.parent
    citation = yaml.safe_load((root / "CITATION.cff").read_text(encoding="utf-8"))
    newest = re.search(r"^## (\d+\.\d+\.\d+)", (root / "CHANGELOG.md").read_text(encoding="utf-8"), re.M).group(1)
    assert mtlstm_hf.__version__ == str(citation["version"]) == newest


def test_the_commands_settings_classes_have_one_suffix_and_the_old_names_still_work():
    """Every command's options come from classes named ``...Settings`` (option groups shared by
    several commands: ``...Options``); the old names are the same classes for one version."""
    import argparse
    import warnings

    from mtlstm_hf.analysis.cli import build_parser as analyze_parser
    from mtlstm_hf.analysis.settings import AnalysisRunSettings
    from mtlstm_hf.evaluation.cli import build_parser as eval_parser
    from mtlstm_hf.evaluation.settings import EvaluationSettings
    from mtlstm_hf.reproduce.cli import build_parser as reproduce_parser
    from mtlstm_hf.training import TrainingSettings
    from mtlstm_hf.training.cli import build_parser as train_parser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from mtlstm_hf.analysis.settings import AnalysisRun
        from mtlstm_hf.evaluation.settings import EvaluationConfig
        from mtlstm_hf.training.config import TrainingConfig
    assert [w.category for w in caught] == [DeprecationWarning] * 3, [str(w.message) for w in caught]

    assert (TrainingConfig, EvaluationConfig, AnalysisRun) == (
        TrainingSettings,
        EvaluationSettings,
        AnalysisRunSettings,
    )
    for build in (train_parser, eval_parser, analyze_parser, reproduce_parser):
        parser = build()
        config = next(action for action in parser._actions if action.dest == "config_file")
        names = config.help.split("an object of ", 1)[1].split(" field names", 1)[0].split(" / ")
        assert names and all(name.endswith(("Settings", "Options")) for name in names), (parser.prog, names)
        assert isinstance(parser, argparse.ArgumentParser)
