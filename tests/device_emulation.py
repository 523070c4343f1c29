"""Run code on the CPU as if the model and its data were on a GPU, and fail where a GPU would.

CUDA refuses an operation that mixes a device tensor with a CPU tensor (other than a 0-d scalar
or an index), and ``.numpy()`` of a device tensor. On a machine without a GPU such mistakes are
invisible: everything is on the CPU. :class:`EmulatedDevice` is a ``TorchFunctionMode`` that keeps
track of which tensors would live on the device:

* the tensors given to :meth:`EmulatedDevice.place` (a model's parameters and buffers, its
  input streams), and everything computed from them;
* tensors made with ``device=<a device tensor's .device>`` or moved with ``.to(<that device>)``
  or ``.to(<a device tensor>)``; ``*_like`` and ``new_*`` follow their source.

A device tensor reports ``.device`` as ``meta`` (so code takes its non-CPU paths and passes that
device on, which is how the tracking follows it) and ``is_cpu`` False. Everything else is a host
tensor, in particular what a factory makes without a device: the accidental CPU tensor. An
operation that mixes device tensors with host tensors of one or more dimensions raises
:class:`DeviceMismatch` naming the operation and the line; so does ``.numpy()`` of a device
tensor. Allowed, as on CUDA: host index tensors in indexing, and the host ``lengths`` /
``batch_sizes`` of packed sequences. ``.cpu()`` gives a host copy. Values are real: the code runs
to its end and its results can be checked.
"""

from __future__ import annotations

import traceback
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

DEVICE = torch.device("meta")  # what a device tensor's .device says

_FACTORIES = {
    "zeros", "ones", "empty", "full", "arange", "linspace", "logspace", "eye", "rand", "randn", "randint",
    "randperm", "tensor", "as_tensor", "scalar_tensor", "empty_strided", "zeros_like", "ones_like", "empty_like",
    "full_like", "rand_like", "randn_like", "randint_like", "new_zeros", "new_ones", "new_empty", "new_full",
    "new_tensor",
}  # fmt: skip
_INHERITING = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
               "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"}  # fmt: skip
_INDEXING = {
    "__getitem__",
    "__setitem__",
    "index_select",
    "index",
    "index_put",
    "index_put_",
    "gather",
    "take_along_dim",
}
_PACKED = {"_pack_padded_sequence", "_pad_packed_sequence", "lstm", "rnn_tanh", "rnn_relu", "gru"}
_HOST_RESULTS = {"_has_compatible_shallow_copy_type", "is_floating_point", "is_complex", "is_nonzero", "tolist", "item", "__bool__", "__int__", "__float__", "__index__", "__len__", "__repr__", "__format__",
                 "data_ptr", "dim", "size", "numel", "stride", "is_contiguous", "element_size", "nelement"}  # fmt: skip


class DeviceMismatch(AssertionError):
    """An operation CUDA would refuse: device and host tensors mixed, or ``.numpy()`` of a device tensor."""


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.endswith(
            ("device_emulation.py", "overrides.py", "_tensor.py", "functional.py", "module.py")
        ):
            return f"{frame.filename}:{frame.lineno} ({frame.line})"
    return "?"


def _name(func: Any) -> str:
    owner = getattr(func, "__self__", None)
    if getattr(func, "__name__", "") == "__get__" and owner is not None:
        return f"property {getattr(owner, '__name__', '?')}"
    if getattr(func, "__name__", "") == "__set__" and owner is not None:
        return f"setter {getattr(owner, '__name__', '?')}"
    return getattr(func, "__name__", str(func))


class EmulatedDevice(TorchFunctionMode):
    """See the module docstring. Use as a context manager; :meth:`place` what starts on the device."""

    def __init__(self) -> None:
        super().__init__()
        self._on_device: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.operations = 0

    # --- what lives where ------------------------------------------------------------------------

    def place(self, *objects: Any) -> None:
        """Put tensors, and the parameters and buffers of modules, on the emulated device."""
        for item in objects:
            if isinstance(item, torch.nn.Module):
                for tensor in (*item.parameters(), *item.buffers()):
                    self._on_device[tensor] = True
            elif isinstance(item, torch.Tensor):
                self._on_device[item] = True
            else:
                raise TypeError(f"place() takes tensors and modules, got {type(item).__name__}")

    def on_device(self, tensor: Any) -> bool:
        return isinstance(tensor, torch.Tensor) and tensor in self._on_device

    def _mark(self, result: Any) -> Any:
        for tensor in tree_flatten(result)[0]:
            if isinstance(tensor, torch.Tensor):
                self._on_device[tensor] = True
        return result

    @staticmethod
    def _targets_device(value: Any) -> bool | None:
        """True for the emulated device, False for the host, None when ``value`` names no device."""
        if isinstance(value, torch.device):
            return value.type == "meta"
        if isinstance(value, str):
            return torch.device(value).type == "meta"
        return None

    # --- the mode ----------------------------------------------------------------------------------

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204, C901
        kwargs = dict(kwargs or {})
        name = _name(func)
        self.operations += 1
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_device = [t for t in tensors if self.on_device(t)]

        if name == "property device":
            return DEVICE if self.on_device(args[0]) else func(*args, **kwargs)
        if name == "property is_cpu":
            return False if self.on_device(args[0]) else func(*args, **kwargs)
        if name == "property is_meta":
            return False if self.on_device(args[0]) else func(*args, **kwargs)
        if name == "numpy" and on_device:
            raise DeviceMismatch(f".numpy() of a device tensor (CUDA refuses it; use .cpu().numpy()) at {_caller()}")
        if name in ("cpu",):
            return func(*args, **kwargs).clone() if on_device else func(*args, **kwargs)
        if name == "to":
            return self._to(func, args, kwargs, on_device)
        if name in _FACTORIES:
            return self._factory(func, name, args, kwargs, on_device)
        if name == "setter data":  # param.data = x (what Module.to does): the tensor now lives where x does
            result = func(*args, **kwargs)
            if self.on_device(args[1]):
                self._on_device[args[0]] = True
            else:
                self._on_device.pop(args[0], None)
            return result
        if name.startswith("property "):  # .T, .mT, .data, .grad, .shape, ...: tensors follow their source
            result = func(*args, **kwargs)
            return self._mark(result) if on_device and isinstance(result, torch.Tensor) else result
        if name in _HOST_RESULTS:
            return func(*args, **kwargs)

        if on_device:
            allowed_host = _INDEXING | _PACKED
            host = [t for t in tensors if not self.on_device(t) and t.dim() > 0]
            if name == "__setitem__" and len(args) > 2 and isinstance(args[2], torch.Tensor):
                if not self.on_device(args[2]) and args[2].dim() > 0 and self.on_device(args[0]):
                    raise DeviceMismatch(f"{name}: a host value written into a device tensor at {_caller()}")
                if not self.on_device(args[0]):
                    raise DeviceMismatch(f"{name}: a device value written into a host tensor at {_caller()}")
            elif host and name not in allowed_host and name != "copy_":
                shapes = ", ".join(str(tuple(t.shape)) for t in host)
                raise DeviceMismatch(
                    f"{name} mixes device tensors with host tensors of shape {shapes} (CUDA refuses it) at {_caller()}"
                )
            elif name in ("__setitem__", "index_put_") and not self.on_device(args[0]):
                raise DeviceMismatch(f"{name}: device values written into a host tensor at {_caller()}")
            result = func(*args, **kwargs)
            if name == "copy_":  # a copy between devices is allowed; the destination stays where it is
                return result
            if name in ("_pack_padded_sequence", "_pad_packed_sequence"):
                return (self._mark(result[0]), *result[1:])  # batch sizes / lengths live on the host
            return self._mark(result)
        return func(*args, **kwargs)

    def _to(self, func, args, kwargs, on_device):  # noqa: ANN001, ANN202
        source = args[0]
        target = kwargs.get("device")
        for value in args[1:]:
            if isinstance(value, torch.Tensor):
                target = DEVICE if self.on_device(value) else value.device
            elif isinstance(value, (str, torch.device)):
                target = value
        to_device = self._targets_device(target)
        if to_device is None:  # dtype only: stays where it is
            result = func(*args, **kwargs)
            return self._mark(result) if self.on_device(source) else result
        args = [
            torch.device("cpu") if isinstance(a, (str, torch.device)) and self._targets_device(a) else a for a in args
        ]
        args = [a.device if isinstance(a, torch.Tensor) and i > 0 else a for i, a in enumerate(args)]
        if "device" in kwargs:
            kwargs["device"] = torch.device("cpu")
        result = func(*args, **kwargs)
        if to_device:
            return self._mark(result.clone() if result is source and not self.on_device(source) else result)
        return result.clone() if self.on_device(source) and result is source else result

    def _factory(self, func, name, args, kwargs, on_device):  # noqa: ANN001, ANN202
        device = kwargs.get("device")
        target = self._targets_device(device)
        if target:
            kwargs["device"] = torch.device("cpu")
        result = func(*args, **kwargs)
        if target or (target is None and name in _INHERITING and on_device and self.on_device(args[0])):
            return self._mark(result)
        if name == "as_tensor" and target is None and args and self.on_device(args[0]):
            return result  # as_tensor of a device tensor is that tensor
        return result


__all__ = ["DEVICE", "DeviceMismatch", "EmulatedDevice"]
