"""Publishing checkpoints to the Hugging Face Hub and reading back what was published.

* :func:`push_checkpoint` (command line ``mtlstm-push CHECKPOINT REPO_ID``): one commit with the
  safetensors weights, config, generation config, word tokenizer, the remote-code ``.py`` files
  (so ``AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True)`` works without
  ``mtlstm_hf``), the analysis report and a generated model card (``README.md``); or a dry run
  that writes that exact folder.
* :func:`fetch_report`: the published analysis report, loaded back without recomputing.
* :func:`build_model_card`: the card alone (``MODEL_CARD.md`` documents its sections).

Loading a published model needs nothing from here: ``from_pretrained(repo_id, revision=...)``.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "CARD_SECTIONS": ".model_card",
    "DEFAULT_LICENSE": ".model_card",
    "build_model_card": ".model_card",
    "HubOfflineError": ".publish",
    "HubRequestError": ".publish",
    "HubUploadError": ".publish",
    "PushResult": ".publish",
    "fetch_report": ".publish",
    "push_checkpoint": ".publish",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
