"""Count the places where code reads tensor values back to the host: on a GPU each one is a
synchronisation (the host waits for the device), which ``torch.cuda.set_sync_debug_mode`` reports
there. On the CPU the same reads are visible as

* the ops that produce a Python value (``aten._local_scalar_dense``: ``item()``, ``bool()``,
  ``int()``, ``float()``) or whose output size depends on values (``nonzero``, ``masked_select``,
  boolean indexing, ``unique``), seen by a ``TorchDispatchMode``;
* ``Tensor.tolist()`` and ``Tensor.numpy()``, which read CPU memory directly (no op), seen by
  wrapping them;
* ``Tensor.cpu()`` / ``.to("cpu")`` of a tensor, counted only for tensors that are not on the CPU
  already (so never here, on purpose: on the CPU they are free and on a GPU they are reads).

Each read is recorded with the first frame of ``mtlstm_hf`` (or of the test) that caused it.
"""

from __future__ import annotations

import collections
import contextlib
import traceback
from collections.abc import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_VALUE_OPS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_consecutive",
    "aten::unique_dim",
}


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-1]):
        if "mtlstm_hf" in frame.filename or "/tests/" in frame.filename:
            if frame.filename.endswith("host_reads.py"):
                continue
            return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return "<elsewhere>"


class _ValueOps(TorchDispatchMode):
    def __init__(self, reads: collections.Counter, host_tensors: tuple) -> None:
        super().__init__()
        self.reads = reads
        self.host = {id(tensor) for tensor in host_tensors}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func._schema.name
        if args and isinstance(args[0], torch.Tensor) and id(args[0]) in self.host:
            pass  # lives on the host by design: reading it costs no synchronisation
        elif name in _VALUE_OPS or (
            name == "aten::index"
            and any(
                isinstance(index, torch.Tensor) and index.dtype == torch.bool
                for index in (args[1] if len(args) > 1 else ())
            )
        ):
            self.reads[f"{name.split('::')[1]} at {_caller()}"] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_host_reads(host_tensors: tuple = ()) -> Iterator[collections.Counter]:
    """Within the block, count every host read (see the module docstring) by kind and place.

    Args:
        host_tensors: tensors kept on the host by design (e.g. a CPU counter next to a model on
            the GPU): reading them is free everywhere, so they are not counted.
    """
    reads: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    def wrap(name):
        original = originals[name]

        def read(self, *args, **kwargs):
            if id(self) not in host:
                reads[f"{name} at {_caller()}"] += 1
            return original(self, *args, **kwargs)

        return read

    host = {id(tensor) for tensor in host_tensors}
    for name in originals:
        setattr(torch.Tensor, name, wrap(name))
    try:
        with _ValueOps(reads, host_tensors):
            yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
