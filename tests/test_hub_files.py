"""The files that travel to the Hub (models/mtlstm/): what they import, and which of them a saved
model carries. Oracle: the import statements themselves (ast) and the saved folder's listing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from conftest import tiny_model

MODEL_DIR = Path(__file__).resolve().parents[1] / "mtlstm_hf" / "models" / "mtlstm"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
TORCH_FREE = {"layouts", "validation", "presets", "checks"}


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(top-level absolute modules, sibling modules imported relatively) of one file."""
    absolute, siblings = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            absolute.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                absolute.add(node.module.split(".")[0])
            else:
                assert node.level == 1, f"{path.name} imports from outside its folder: {'.' * node.level}{node.module}"
                siblings.add(node.module)
    return absolute, siblings


def hub_files() -> dict[str, Path]:
    return {path.stem: path for path in MODEL_DIR.glob("*.py") if path.name != "__init__.py"}


def test_hub_files_import_only_torch_transformers_and_each_other():
    for name, path in hub_files().items():
        absolute, siblings = imports_of(path)
        assert absolute <= STDLIB | {"torch", "transformers"}, (name, absolute - STDLIB)
        assert siblings <= set(hub_files()), (name, siblings)


def test_the_configuration_is_a_leaf():
    """It imports transformers and the torch-free catalogues only (no layer, cell or timescale
    code), and those import nothing but the standard library."""
    absolute, siblings = imports_of(MODEL_DIR / "configuration_mtlstm.py")
    assert siblings <= TORCH_FREE, siblings
    assert absolute <= STDLIB | {"transformers"}, absolute
    for name in TORCH_FREE:
        absolute, siblings = imports_of(MODEL_DIR / f"{name}.py")
        assert absolute <= STDLIB and siblings <= TORCH_FREE, (name, absolute, siblings)


def test_a_saved_model_carries_the_forward_pass_files_only(tmp_path):
    """Exactly the files the modelling file reaches through its imports; no test oracle or
    analysis code (the reference loops and gate extraction live in mtlstm_hf.ops)."""
    reachable, todo = set(), ["modeling_mtlstm"]
    while todo:
        name = todo.pop()
        if name not in reachable:
            reachable.add(name)
            todo.extend(imports_of(MODEL_DIR / f"{name}.py")[1])
    tiny_model().save_pretrained(tmp_path)
    saved = {path.stem for path in tmp_path.glob("*.py")}
    assert saved == reachable
    assert "gates" not in saved and "naive" not in saved
    for name in saved:
        source = (tmp_path / f"{name}.py").read_text(encoding="utf-8")
        assert "def reference_trace" not in source and "def gates_and_cells" not in source, name
        assert "PAPERS.md" not in source and "GATE_NAMES" not in source, name  # no pointers outside the repository
