"""A left-padded batch of per-request KV caches that rows join and leave between steps.

Every row keeps its true positions (for RoPE); padding columns are masked out, so a
row's attention sees exactly what it would see alone. Joining pads whichever side is
shorter; leaving drops the row and then any leading columns no row uses any more.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class PaddedKVBatch:
    def __init__(self) -> None:
        self._layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._mask = torch.zeros((0, 0), dtype=torch.bool)  # (B, L): True = real token
        self.positions: list[int] = []  # next position id of each row

    @property
    def size(self) -> int:
        return len(self.positions)

    @property
    def length(self) -> int:
        return self._mask.shape[1]

    def add(self, cache: DynamicCache, prompt_len: int) -> None:
        """Append one row whose (batch-1) cache holds `prompt_len` tokens."""
        self.add_layers([(layer.keys, layer.values) for layer in cache.layers], prompt_len)

    def row_layers(self, row: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
        """One row's KV without padding (its real tokens are the trailing columns)."""
        n = self.positions[row]
        return [(k[row : row + 1, :, -n:], v[row : row + 1, :, -n:]) for k, v in self._layers], n

    def add_layers(self, new: list[tuple[torch.Tensor, torch.Tensor]], prompt_len: int) -> None:
        """Append one row given as per-layer (keys, values) of `prompt_len` tokens."""
        new_mask = torch.ones((1, prompt_len), dtype=torch.bool)
        if self.size == 0:
            self._layers, self._mask = new, new_mask
        else:
            width = max(self.length, prompt_len)
            self._layers = [
                (torch.cat([_lpad(k, width), _lpad(nk, width)]),
                 torch.cat([_lpad(v, width), _lpad(nv, width)]))
                for (k, v), (nk, nv) in zip(self._layers, new, strict=True)
            ]  # fmt: skip
            self._mask = torch.cat([_lpad(self._mask, width), _lpad(new_mask, width)])
        self.positions.append(prompt_len)

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in that order) and trim columns no remaining row uses."""
        if not rows:
            self.__init__()
            return
        index = torch.tensor(rows, dtype=torch.long)
        mask = self._mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else mask.shape[1]
        self._mask = mask[:, start:]
        self._layers = [
            (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
            for k, v in self._layers
        ]
        self.positions = [self.positions[r] for r in rows]

    def step_inputs(self) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """Cache, 4D attention mask and position ids for one decode token per row."""
        cache = DynamicCache(ddp_cache_data=self._layers)
        mask = torch.cat([self._mask, torch.ones((self.size, 1), dtype=torch.bool)], dim=1)
        positions = torch.tensor(self.positions, dtype=torch.long)[:, None]
        return cache, mask[:, None, None, :], positions

    def commit(self, cache: DynamicCache) -> None:
        """Adopt the cache after a decode step appended one token to every row."""
        self._layers = [(layer.keys, layer.values) for layer in cache.layers]
        self._mask = torch.cat([self._mask, torch.ones((self.size, 1), dtype=torch.bool)], dim=1)
        self.positions = [p + 1 for p in self.positions]


def _lpad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad the sequence axis (dim 2 of KV, dim 1 of masks) with zeros to `width`."""
    axis = 2 if t.dim() == 4 else 1
    missing = width - t.shape[axis]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[axis] = missing
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=axis)
