"""The files that travel to the Hub (models/mtlstm/): what they import, and which of them a saved
model carries. Oracle: the import statements themselves (ast) and the saved folder's listing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
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


def shipped_files(tmp_path: Path) -> set[str]:
    """The modules a saved model carries (transformers copies what the modelling file imports)."""
    tiny_model().save_pretrained(tmp_path)
    return {path.stem for path in tmp_path.glob("*.py")}


def test_a_saved_model_carries_the_kernels_and_not_their_naive_references(tmp_path):
    saved = shipped_files(tmp_path)
    assert {"modeling_mtlstm", "configuration_mtlstm", "kernel_lstm", "kernel_variants", "kernel_scan"} <= saved
    assert "naive" not in saved and "checks" in saved
    for name in saved:
        source = (tmp_path / f"{name}.py").read_text(encoding="utf-8")
        assert "PAPERS.md" not in source and "GATE_NAMES" not in source, name  # no pointers outside the repository


# Functions of the shipped files that the workload below does not call, each with why it ships.
NOT_IN_THE_WORKLOAD = {
    "configuration_mtlstm._derived_field_error": "the error for setting a derived field (num_hidden_layers=...)",
    "configuration_mtlstm.validate_architecture": "transformers' config hook, called by its own validation",
    "kernel_lstm.cpu_autocast_lstm_supported": "the bf16 probe mtlstm-train asks before autocast on a CPU",
    "kernel_lstm.require_cpu_autocast_lstm": "the same probe as an error (exit 3 of mtlstm-train)",
    "layers._run_eagerly": "the torch.compile graph break around the recurrences",
    "layers._add_missing_recurrent_sides": "load hook for a state dict saved before the two bias vectors",
    "layers.trained_gates": "read by that load hook",
    "modeling_mtlstm.on_the_path": "a local of the loss's device check on a model split over devices",
    "state._flatten_state": "pytree registration of the state for torch.export",
    "state._flatten_state_with_keys": "pytree registration of the state for torch.export",
    "state._unflatten_state": "pytree registration of the state for torch.export",
    "state.crop": "refuses assisted decoding's rollback (generate calls it)",
    "stop_strings.tokenizer_spells_unknown_words": "generate(stop_strings=) with a word tokenizer",
    "stop_strings.__init__": "generate(stop_strings=) with a word tokenizer",
    "stop_strings._ends_in_last_token": "generate(stop_strings=) with a word tokenizer",
    "stop_strings.__call__": "generate(stop_strings=) with a word tokenizer",
    "timescales.forget_gate_from_timescale": "the gate side of the timescale formula, beside its bias side",
    "timescales.timescale_from_forget_gate": "the gate side of the timescale formula, beside its bias side",
    "timescales.register_schedule": "the extension point of the schedule table",
    "layouts.layer_number": "a layer's number in messages (timescale_mismatches) and reports: the one conversion",
    "layouts.layer_index_of": "the inverse of layer_number, beside it",
    "timescales._no_timescales": "the table's entry for 'none' (realize_timescales(None, H)); the model skips the call",
}


def _forward_workload(tmp_path: Path) -> None:
    """What a user of the Hub files does: every cell type with every schedule type, a training
    step, inference with padding, generation (greedy, beam search: the cache reordered), the token
    classifier, the cache's methods, the embeddings' accessors, a save and a reload."""
    import transformers

    from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM, MTLSTMForTokenClassification
    from mtlstm_hf.models.mtlstm.layouts import CELL_TYPES
    from mtlstm_hf.models.mtlstm.validation import SCHEDULE_RULES

    transformers.logging.disable_progress_bar()
    examples = {
        "none": None,
        "fixed": {"type": "fixed", "values": [3, 4]},
        "inverse_gamma": {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0},
        "chrono": {"type": "chrono", "max_timescale": 20},
        "explicit": {"type": "explicit", "timescales": [1, 2, 3, 4, 5, 6]},
        "log_uniform": {"type": "log_uniform", "state_size": 2},
        "ring": {"type": "ring", "exponent": 8},
        "geometric": {"type": "geometric", "min_timescale": 2, "max_timescale": 64, "spacing": "decay_rate"},
        "powerlaw_spacing": {"type": "powerlaw_spacing", "parametrization": "rwkv_decay", "depth_ratio": 0.5},
        "uniform_gate": {"type": "uniform_gate"},
    }
    assert set(examples) == set(SCHEDULE_RULES)
    ids = torch.randint(0, 30, (2, 7))
    mask = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
    for cell_type in CELL_TYPES:
        for schedule in examples.values():
            if cell_type == "lstm-gates" and schedule is not None:
                continue  # no forget gate to carry a timescale
            config = MTLSTMConfig(
                vocab_size=30,
                embedding_size=6,
                hidden_sizes=[6, 6],
                cell_types=[cell_type, "lstm"],
                timescale_schedules=[schedule, None],
            )
            torch.manual_seed(0)
            model = MTLSTMForCausalLM(config)
            model.train()
            model(ids, labels=ids).loss.backward()
            model.eval()
            with torch.no_grad():
                out = model(ids, attention_mask=mask, use_cache=True)
                state = out.cache
                assert len(state) == state.num_layers and state.is_linear and repr(state)
                state.detach().select(slice(0, 1)).reorder_cache(torch.tensor([0]))
                model.generate(ids[:, :3], max_new_tokens=2, do_sample=False)
            model.assigned_timescales()
            model.timescale_mismatches()
            str(model)  # extra_repr
    own_rate = MTLSTMConfig(
        vocab_size=30,
        embedding_size=6,
        hidden_sizes=[6, 6],
        timescale_schedules=[examples["ring"], None],
        frozen_biases="none",
        timescale_learning_rate=0.01,
    )
    with pytest.warns(UserWarning, match="own-rate optimiser group"):  # trained without the own-rate group
        MTLSTMForCausalLM(own_rate).train()(ids, labels=ids).loss.backward()
    config = MTLSTMConfig.from_preset("small", vocab_size=30)
    assert config.num_layers == config.num_hidden_layers and config.hidden_size
    model = MTLSTMForCausalLM(config.__class__(**{**config.to_dict(), "label_smoothing": 0.1}))
    model(ids, labels=ids, num_items_in_batch=torch.tensor(12)).loss.backward()  # the Trainer's call
    with pytest.raises(ValueError, match="labels"):
        model(ids, labels=ids + 100)  # a label outside the vocabulary is refused
    model.eval()
    assert model(ids, use_cache=True).past_key_values is not None
    with torch.no_grad():
        model.generate(ids[:, :3], max_new_tokens=2, num_beams=2, do_sample=False)
    model.set_input_embeddings(model.get_input_embeddings())
    model.set_output_embeddings(model.get_output_embeddings())
    model.model.set_input_embeddings(model.model.get_input_embeddings())
    model.save_pretrained(tmp_path / "saved")
    MTLSTMForCausalLM.from_pretrained(tmp_path / "saved")
    for problem_type, labels in (
        ("single_label_classification", ids % 3),
        ("multi_label_classification", torch.nn.functional.one_hot(ids % 3, 3).float()),
    ):
        classifier = MTLSTMForTokenClassification(
            config.__class__(**{**config.to_dict(), "num_labels": 3, "problem_type": problem_type})
        )
        classifier.set_input_embeddings(classifier.get_input_embeddings())
        classifier(ids, labels=labels).loss.backward()
        with pytest.raises(ValueError, match="labels"):
            classifier(ids, labels=labels + 5)  # a class outside num_labels is refused


def test_every_shipped_function_serves_the_model(tmp_path):
    """Oracle: the functions Python enters while the workload runs (a profiler). Every function
    defined in a file that travels to the Hub must be entered, or be listed above with why it
    ships: a test oracle, an analysis helper or a reference loop added to these files fails here."""
    saved = shipped_files(tmp_path / "listing")
    entered: set[tuple[str, int]] = set()

    def profile(frame, event, arg):  # noqa: ANN001, ANN202
        if event == "call" and frame.f_code.co_filename.startswith(str(MODEL_DIR)):
            entered.add((Path(frame.f_code.co_filename).stem, frame.f_code.co_firstlineno))

    sys.setprofile(profile)
    try:
        _forward_workload(tmp_path)
    finally:
        sys.setprofile(None)
    defined = {}
    for name in saved:
        for node in ast.walk(ast.parse((MODEL_DIR / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = {node.lineno} | {decorator.lineno for decorator in node.decorator_list}
                defined.setdefault(f"{name}.{node.name}", []).append((name, lines))
    not_entered = {
        function
        for function, places in defined.items()
        if not any((module, line) in entered for module, lines in places for line in lines)
    }
    assert not_entered - set(NOT_IN_THE_WORKLOAD) == set(), "shipped but not used by the model"
    assert set(NOT_IN_THE_WORKLOAD) <= not_entered, "listed as not in the workload but entered: drop it from the list"
