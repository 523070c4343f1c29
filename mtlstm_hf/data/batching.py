"""Language-model batching as in AWD-LSTM (Merity et al., 2018).

A token stream is cut into ``batch_size`` contiguous rows (:func:`batchify`);
training then walks along the rows in BPTT windows (:class:`BPTTIterator`),
carrying the recurrent state from one window to the next. Batch-first layout,
``(batch, time)``, as Hugging Face models expect (AWD-LSTM itself is
time-major, ``(time, batch)``; the windows are the same).
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

RandomSource = torch.Generator | random.Random


def num_dropped_tokens(num_tokens: int, batch_size: int) -> int:
    """How many tokens at the end of a stream :func:`batchify` drops.

    ``num_tokens % batch_size``: fewer than one token per row, so dropping
    them keeps every row the same length (AWD-LSTM does the same).
    """
    return num_tokens % batch_size


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into ``batch_size`` contiguous rows.

    Row ``b`` is ``stream[b * n : (b + 1) * n]`` with
    ``n = len(stream) // batch_size``; the last
    ``num_dropped_tokens(len(stream), batch_size)`` tokens are dropped.

    Args:
        stream: token ids, shape ``(num_tokens,)``.
        batch_size: number of rows ``B``.

    Returns:
        Tensor ``(B, n)``, a view of ``stream`` (same dtype and device).
    """
    if stream.dim() != 1:
        raise ValueError(f"stream must be 1-D (num_tokens,), got shape {tuple(stream.shape)}")
    if stream.numel() == 0:
        raise ValueError("stream is empty: no tokens to batch")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size > stream.numel():
        raise ValueError(
            f"batch_size {batch_size} is larger than the stream ({stream.numel()} tokens): "
            "every row needs at least one token"
        )
    row_length = stream.numel() // batch_size
    return stream[: row_length * batch_size].view(batch_size, row_length)


class BPTTIterator:
    """Walk over batchified data in BPTT windows; resumable mid-epoch.

    Yields ``(inputs, targets)``, both LongTensors ``(B, L)``, where
    ``targets[:, t] == data[:, pos + t + 1]`` and ``inputs[:, t] == data[:, pos + t]``.
    Windows are consecutive and cover each row exactly once per epoch: the
    number of target tokens in one epoch is ``B * (n - 1)``. The last window
    may be shorter than the rest.

    Window length ``L``:
      * fixed: ``bptt``;
      * ``variable_length=True`` (AWD-LSTM): draw ``mean = bptt`` with
        probability ``p_full`` else ``bptt / 2``; then
        ``L = max(min_seq_len, int(normal(mean, std)))`` capped at
        ``max_seq_len`` (default ``bptt + 40``, AWD-LSTM's
        ``max_seq_len_delta``). The draws come from ``generator``, so runs are
        reproducible. (AWD-LSTM also scales the learning rate by ``L / bptt``;
        that is the training loop's business: read ``last_seq_len``.)

    One pass of a ``for`` loop is one epoch; when it ends the position goes
    back to 0 and the next loop is the next epoch (the random stream goes on).
    To resume exactly, save :meth:`state_dict` between windows and, in a new
    run, build the iterator over the same data with the same settings and
    call :meth:`load_state_dict`: the rest of the epoch, and later epochs, are
    then the same windows as in an uninterrupted run.

    Args:
        data: ``(B, n)`` from :func:`batchify`; ``n >= 2``.
        bptt: nominal window length in tokens, ``1 <= bptt <= n - 1``.
        variable_length: draw window lengths as above.
        generator: a ``torch.Generator`` or ``random.Random`` (used, and
            advanced, in place), or an ``int`` seed for a new
            ``random.Random``; ``None``: an unseeded ``random.Random``
            (still resumable: its state is in the ``state_dict``).
        p_full, std, min_seq_len, max_seq_len: the variable-length law.
        drop_single_target: end the epoch when a single target is left rather than train a
            one-token window on it, as AWD-LSTM's loop does (``while i < len(data) - 1 - 1``);
            ``B`` targets per epoch are then left out.
    """

    def __init__(
        self,
        data: torch.Tensor,
        bptt: int,
        *,
        variable_length: bool = False,
        generator: RandomSource | int | None = None,
        p_full: float = 0.95,
        std: float = 5.0,
        min_seq_len: int = 5,
        max_seq_len: int | None = None,
        drop_single_target: bool = False,
    ) -> None:
        if data.dim() != 2:
            raise ValueError(f"data must be (batch_size, n) from batchify, got shape {tuple(data.shape)}")
        batch_size, row_length = data.shape
        if batch_size < 1 or row_length < 2:
            raise ValueError(
                f"data of shape {tuple(data.shape)} has no (input, target) pair: each row needs at least 2 tokens"
            )
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        if bptt > row_length - 1:
            raise ValueError(
                f"bptt={bptt} is longer than the data: each row has {row_length} tokens, "
                f"so at most {row_length - 1} (input, target) steps"
            )
        if max_seq_len is None:
            max_seq_len = bptt + 40
        if variable_length:
            if not 0.0 <= p_full <= 1.0:
                raise ValueError(f"p_full must be a probability, got {p_full}")
            if std < 0:
                raise ValueError(f"std must be >= 0, got {std}")
            if not 1 <= min_seq_len <= max_seq_len:
                raise ValueError(f"need 1 <= min_seq_len <= max_seq_len, got {min_seq_len} and {max_seq_len}")
        if isinstance(generator, int) and not isinstance(generator, bool):
            generator = random.Random(generator)
        elif generator is None:
            generator = random.Random()
        elif not isinstance(generator, (torch.Generator, random.Random)):
            raise TypeError(
                f"generator must be a torch.Generator, random.Random, int or None, got {type(generator).__name__}"
            )
        self.data = data
        self.bptt = bptt
        self.variable_length = variable_length
        self.generator: RandomSource = generator
        self.p_full = p_full
        self.std = std
        self.min_seq_len = min_seq_len
        self.max_seq_len = max_seq_len
        self.drop_single_target = drop_single_target
        self.position = 0  # column of data where the next window starts
        self.last_seq_len: int | None = None  # L drawn for the last window (before clipping at the end)

    @property
    def num_target_tokens(self) -> int:
        """Target tokens per epoch: ``B * (n - 1)``."""
        return self.data.shape[0] * (self.data.shape[1] - 1)

    @property
    def nominal_num_windows(self) -> int:
        """Windows per epoch at length ``bptt``: exact if fixed, an estimate if variable."""
        return math.ceil((self.data.shape[1] - 1) / self.bptt)

    def _uniform(self) -> float:
        if isinstance(self.generator, torch.Generator):
            return torch.rand((), generator=self.generator).item()
        return self.generator.random()

    def _normal(self, mean: float, std: float) -> float:
        if isinstance(self.generator, torch.Generator):
            return torch.normal(mean, std, size=(1,), generator=self.generator).item()
        return self.generator.gauss(mean, std)

    def draw_seq_len(self) -> int:
        """Length of the next window (before clipping at the end of the data)."""
        if not self.variable_length:
            return self.bptt
        mean = self.bptt if self._uniform() < self.p_full else self.bptt / 2
        # int() truncates toward zero, as AWD-LSTM's int(np.random.normal(...)).
        seq_len = max(self.min_seq_len, int(self._normal(mean, self.std)))
        return min(seq_len, self.max_seq_len)

    def __iter__(self) -> BPTTIterator:
        return self

    @property
    def end(self) -> int:
        """The column where an epoch ends: the last column is a target only (and with
        ``drop_single_target`` the one before it starts no window)."""
        return self.data.shape[1] - (2 if self.drop_single_target else 1)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        last_start = self.data.shape[1] - 1  # the last column is a target only
        if self.position >= self.end:
            self.position = 0  # epoch over; the next loop starts the next one
            raise StopIteration
        self.last_seq_len = self.draw_seq_len()
        start = self.position
        seq_len = min(self.last_seq_len, last_start - start)
        self.position = start + seq_len
        # contiguous(): independent (B, L) tensors, not strided views of data.
        inputs = self.data[:, start : start + seq_len].contiguous()
        targets = self.data[:, start + 1 : start + 1 + seq_len].contiguous()
        return inputs, targets

    def state_dict(self) -> dict[str, Any]:
        """Position and RNG state; plain tensors/tuples (``torch.load(weights_only=True)`` safe)."""
        if isinstance(self.generator, torch.Generator):
            rng_state: Any = self.generator.get_state()
        else:
            rng_state = self.generator.getstate()
        return {
            "position": self.position,
            "rng_state": rng_state,
            # Stored to refuse resuming over different data or settings.
            "data_shape": tuple(self.data.shape),
            "bptt": self.bptt,
            "variable_length": self.variable_length,
            "drop_single_target": self.drop_single_target,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also sets the generator's state)."""
        for key, current in (
            ("data_shape", tuple(self.data.shape)),
            ("bptt", self.bptt),
            ("variable_length", self.variable_length),
            ("drop_single_target", self.drop_single_target),
        ):
            saved = tuple(state[key]) if key == "data_shape" else state.get(key, False)
            if saved != current:
                raise ValueError(f"state was saved with {key}={saved!r}, this iterator has {current!r}")
        position = int(state["position"])
        if not 0 <= position <= self.data.shape[1] - 1:
            raise ValueError(f"position {position} is outside the data (0..{self.data.shape[1] - 1})")
        rng_state = state["rng_state"]
        if isinstance(self.generator, torch.Generator):
            if not isinstance(rng_state, torch.Tensor):
                raise ValueError("state holds a random.Random state but the generator is a torch.Generator")
            self.generator.set_state(rng_state)
        else:
            if isinstance(rng_state, torch.Tensor):
                raise ValueError("state holds a torch.Generator state but the generator is a random.Random")
            # torch.save/load may turn the nested tuples into lists.
            version, internal, gauss_next = rng_state
            self.generator.setstate((version, tuple(internal), gauss_next))
        self.position = position
