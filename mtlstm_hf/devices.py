"""Where every command and tool runs, and at what float32 precision: one rule for all packages.

Device: ``None`` (no ``--device`` given) means CUDA when this machine has it, else the CPU;
``mtlstm-train`` follows the same rule through ``accelerate`` (``--cpu`` to stay on the CPU).
A device that does not exist here is refused with :class:`UnavailableDeviceError` (the commands'
exit code 3, "this machine cannot run the requested setting"), before anything is computed.

Float32 precision on CUDA: PyTorch runs float32 matrix products in full precision by default
but lets cuDNN's LSTM use TensorFloat-32 (10-bit mantissas in the products' inputs). Here one
setting covers both (:data:`FLOAT32_PRECISIONS`): training takes it from
``TrainingSettings.matmul_precision``; evaluation and the analyses run at ``"highest"``
(:func:`float32_precision`), so that the numbers they report do not depend on a global flag
someone else set. CPUs are not affected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

FLOAT32_PRECISIONS: tuple[str, ...] = ("highest", "high")
"""``highest``: float32 products in full precision everywhere (the default); ``high``:
TensorFloat-32 on CUDA for the output layer's and the LSTM's matrix products (faster on Ampere
and later GPUs, about 1e-3 relative error in each product); the names are those of
``torch.set_float32_matmul_precision``."""


class UnavailableDeviceError(ValueError):
    """The requested device does not exist on this machine (e.g. ``cuda`` without CUDA); the
    commands exit with code 3, "this machine cannot run the requested setting"."""

    exit_code = 3  # mtlstm_hf.exit_codes.UNSUPPORTED_SETTING


def default_device_name() -> str:
    """``"cuda"`` when CUDA is available here, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: Any = None) -> Any:
    """``device`` as a ``torch.device`` that exists on this machine; ``None`` gives
    :func:`default_device_name`. Every accelerator type is probed, not only CUDA: ``mps``,
    ``xpu`` and the others must be available here (``torch.<type>.is_available()``), and an index
    must be below their device count.

    Raises:
        ValueError: ``device`` is not a torch device name.
        UnavailableDeviceError: a device this machine does not have.
    """
    import torch

    if device is None:
        return torch.device(default_device_name())
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {err}") from None
    if device.type not in ("cpu", "meta"):  # meta: no data, on every machine (tests emulate a GPU with it)
        _check_available(device)
    return device


def _check_available(device: Any) -> None:
    """Raise :class:`UnavailableDeviceError` unless the accelerator ``device`` (not the CPU) exists here."""
    import torch

    backend = getattr(torch, device.type, None)  # torch.cuda, torch.mps, torch.xpu, ...
    is_available = getattr(backend, "is_available", None)
    name = "CUDA" if device.type == "cuda" else device.type
    here = f"use {' or '.join(repr(choice) for choice in dict.fromkeys([default_device_name(), 'cpu']))}"
    if not callable(is_available) or not is_available():
        raise UnavailableDeviceError(f"device {str(device)!r}: {name} is not available on this machine; {here}.")
    count = getattr(backend, "device_count", None)
    if device.index is not None and callable(count) and device.index >= count():
        raise UnavailableDeviceError(
            f"device {str(device)!r}: this machine has {count()} {name} device(s) (from index 0); {here}."
        )


def check_float32_precision(value: Any, field: str = "matmul_precision") -> str:
    """``value`` if it is one of :data:`FLOAT32_PRECISIONS`, else ``ValueError`` naming ``field``."""
    if value not in FLOAT32_PRECISIONS:
        raise ValueError(f"{field} must be one of {list(FLOAT32_PRECISIONS)}, got {value!r}.")
    return value


@contextlib.contextmanager
def float32_precision(precision: str = "highest") -> Iterator[None]:
    """Run the block with CUDA's float32 matrix products (``torch.matmul``, ``nn.Linear``, the
    cuDNN LSTM) at ``precision`` (:data:`FLOAT32_PRECISIONS`); the previous settings come back
    afterwards. These are process-wide switches (``torch.set_float32_matmul_precision`` and
    ``torch.backends.cudnn.allow_tf32``, the API that torch's newer per-backend one stays
    consistent with): do not change them from another thread meanwhile.

    Raises:
        ValueError: an unknown ``precision``.
    """
    import torch

    check_float32_precision(precision, "precision")
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = precision != "highest"
        yield
    finally:
        torch.set_float32_matmul_precision(previous[0])
        torch.backends.cudnn.allow_tf32 = previous[1]


__all__ = [
    "FLOAT32_PRECISIONS",
    "UnavailableDeviceError",
    "check_float32_precision",
    "default_device_name",
    "float32_precision",
    "resolve_device",
]
