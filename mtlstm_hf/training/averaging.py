"""The running mean of the parameters under averaged SGD (NT-ASGD, Merity et al. 2018).

:class:`ParameterAverage` is ``torch.optim.swa_utils.AveragedModel`` (the same module, the same
``state_dict`` keys, so checkpoints keep their format) with one change in how it updates:
the count of averaged iterates is read on the host and enters the update as a Python number.
PyTorch's own update reads that count from a tensor on the parameters' device (on CUDA: twice
per step, plus the lerp weight, each a synchronisation that stops the host from queueing the
next step; averaging runs at every step once it is on). The arithmetic is ``AveragedModel``'s
on each device, so the results are bit-identical (``tests/test_training_gpu_path.py`` compares
them step by step): ``mean + (p - mean) / (n + 1)`` per tensor on the CPU, one
``torch._foreach_lerp_`` with weight ``1 / (n + 1)`` (a float32 division) elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel


class ParameterAverage(AveragedModel):
    """Equal-weight mean of a model's parameters over the iterates passed to :meth:`update_parameters`.

    Args:
        model: the model whose parameters are averaged; the average starts as a deep copy of it
            on the same device, with ``n_averaged`` (a CPU ``int64`` buffer) at 0.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)  # no device: the copy stays where the model is, the counter on the CPU

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        """Add ``model``'s current parameters to the mean (the first call copies them), with
        ``AveragedModel``'s arithmetic on each device (see the module docstring)."""
        count = int(self.n_averaged)  # a CPU tensor: no device synchronisation
        averaged = [p.detach() for p in self.parameters()]
        current = [p.detach() for p in model.parameters()]
        if len(averaged) != len(current):
            raise ValueError(f"the model has {len(current)} parameters but the average holds {len(averaged)}.")
        if count == 0:
            torch._foreach_copy_(averaged, current)
        elif averaged and averaged[0].device.type == "cpu":
            for mean, value in zip(averaged, current):
                mean.copy_(mean + (value - mean) / (count + 1))
        else:
            # AveragedModel computes 1 / (n + 1) as a float32 tensor on the device; the same float32 here.
            torch._foreach_lerp_(averaged, current, float(np.float32(1.0) / np.float32(count + 1)))
        self.n_averaged += 1

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 (nn.Module signature)
        # model.to(device) moves the averaged parameters; the counter stays on the CPU.
        count = self.n_averaged
        module = super()._apply(fn, recurse)
        self.n_averaged = count
        return module


__all__ = ["ParameterAverage"]
