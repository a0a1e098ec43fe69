"""The LM head restricted to the token ids legal at each row's audio step.

Orpheus's vocabulary has 156,940 ids, but at any audio step only the 4,096 codes of the
frame position plus the stop token can be sampled. Projecting onto those 4,097 rows of
the head instead of all of them skips about 97% of the head's work, which on
tiny-random was most of a decode step (the head is 64 x 156,940; on the 3B model it
is about a sixth of the weights read per token).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..orpheus import tokens as T


class LegalSliceHead(nn.Module):
    """Drop-in for `lm_head`: full logits by default, (B, t, 4097) inside `restricted()`."""

    def __init__(self, full: nn.Linear) -> None:
        super().__init__()
        self.full = full
        self._starts: Sequence[int] | None = None

    @classmethod
    def install(cls, model: nn.Module) -> LegalSliceHead | None:
        """Wrap `model`'s output projection; None when it is not a plain bias-free Linear."""
        head = model.get_output_embeddings()
        if isinstance(head, cls):
            return head
        if type(head) is not nn.Linear or head.bias is not None:
            return None
        wrapped = cls(head)
        model.set_output_embeddings(wrapped)
        return wrapped

    @contextlib.contextmanager
    def restricted(self, starts: Sequence[int]) -> Iterator[None]:
        """Within the block, row i's logits are ids [starts[i], +4096) then the stop token."""
        self._starts = starts
        try:
            yield
        finally:
            self._starts = None

    @property
    def weight(self) -> torch.Tensor:
        return self.full.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._starts is None:
            return self.full(hidden)
        weight = self.full.weight
        batch, steps, _ = hidden.shape
        out = hidden.new_empty(batch, steps, T.CODEBOOK_SIZE + 1)
        for start in sorted(set(self._starts)):
            codes = weight[start : start + T.CODEBOOK_SIZE]
            rows = [i for i, s in enumerate(self._starts) if s == start]
            if len(rows) == batch:
                out[:, :, :-1] = hidden @ codes.T
                continue
            index = torch.tensor(rows, device=hidden.device)
            out[index, :, :-1] = hidden[index] @ codes.T
        out[:, :, -1] = hidden @ weight[T.END_OF_SPEECH]
        return out
