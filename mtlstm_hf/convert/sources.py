"""The source families ``mtlstm-convert`` reads, and how to export each one's full pickle.

Plain data, no torch: the command's ``--help`` reads it.
"""

from __future__ import annotations

__all__ = ["EXPORT_HINTS", "SOURCES"]

SOURCES: tuple[str, ...] = ("awd-lstm", "huthlab-mts", "fastai-awd-lstm", "word-language-model")
"""The ``--from`` values (the keys of :data:`mtlstm_hf.convert.families.FAMILIES`)."""

EXPORT_HINTS: dict[str, str] = {
    "awd-lstm": (
        "cd awd-lstm-lm && python -c \"import torch; m = torch.load('MODEL.pt', map_location='cpu', "
        "weights_only=False)[0]; torch.save(m.state_dict(), 'MODEL.state_dict.pt')\""
    ),
    "huthlab-mts": (
        "cd multi-timescale-LSTM-LMs && python -c \"import torch; m = torch.load('MODEL.pt', map_location='cpu', "
        "weights_only=False)[0]; torch.save(m.state_dict(), 'MODEL.state_dict.pt')\""
    ),
    "word-language-model": (
        "cd examples/word_language_model && python -c \"import torch; m = torch.load('model.pt', map_location='cpu', "
        "weights_only=False); torch.save(m.state_dict(), 'model.state_dict.pt')\""
    ),
    "fastai-awd-lstm": "learn.save('NAME', with_opt=False)  # writes models/NAME.pth, a state_dict",
}
"""Per source family, the one line that exports a full pickle to a ``state_dict`` file, run where
the checkpoint was made (its code importable: from the repository folder, or the fastai
session). The originals save whole objects, ``torch.save([model, criterion, optimizer], f)``
(awd-lstm-lm, HuthLab; ``[0]`` is the model) or ``torch.save(model, f)`` (word_language_model).
With torch older than 1.13 leave out ``weights_only=False`` (the argument does not exist
there; from torch 2.6 it is needed, the default having become ``weights_only=True``)."""
