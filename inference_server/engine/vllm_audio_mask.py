"""Position-constrained sampling inside vLLM: a v1 custom logits processor.

vLLM runs this class in its engine-core process (named by its import path in the engine
args), so this module imports vLLM at the top and nothing of ours beyond the token facts.
A request opts in with `SamplingParams.extra_args = {AUDIO_MASK_ARG: True}`; at its
audio step k only the 4,096 ids of frame position k mod 7 survive, and the stop id only
where `tokens.stop_allowed(k)`. The step is the length of the request's output so far,
which vLLM keeps current in place (with async scheduling the list holds placeholders for
tokens still in flight, so its length is still the step being sampled).
"""

from __future__ import annotations

import torch
from vllm.config import VllmConfig
from vllm.sampling_params import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from ..orpheus import tokens as T
from .vllm_args import AUDIO_MASK_ARG


class OrpheusAudioMask(LogitsProcessor):
    """Per row: the legal 4,096 codes of its frame position, and the stop at a frame boundary."""

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        self._rows: dict[int, list[int]] = {}  # batch index -> that request's output ids
        self._codes = torch.arange(T.CODEBOOK_SIZE, device=device)

    def is_argmax_invariant(self) -> bool:
        return False

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        extra = sampling_params.extra_args or {}
        if not isinstance(extra.get(AUDIO_MASK_ARG, False), bool):
            raise ValueError(f"extra_args[{AUDIO_MASK_ARG!r}] must be a bool")

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        for index, params, _prompt, output_ids in batch_update.added:
            if params is not None and (params.extra_args or {}).get(AUDIO_MASK_ARG):
                self._rows[index] = output_ids
            else:
                self._rows.pop(index, None)
        for a, b, direction in batch_update.moved:
            row_a, row_b = self._rows.pop(a, None), self._rows.pop(b, None)
            if row_a is not None:
                self._rows[b] = row_a
            if direction == MoveDirectionality.SWAP and row_b is not None:
                self._rows[a] = row_b

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._rows:
            return logits
        index = sorted(self._rows)
        rows_steps = torch.tensor(
            [index, [len(self._rows[i]) for i in index]], device=logits.device
        )  # one host-to-device copy per step
        rows, steps = rows_steps[0], rows_steps[1]
        legal = T.legal_start(steps)[:, None] + self._codes[None, :]
        kept = logits.index_select(0, rows)
        codes = kept.gather(1, legal)
        stop = kept[:, T.END_OF_SPEECH].masked_fill(~T.stop_allowed(steps), -torch.inf)
        kept.fill_(-torch.inf)
        kept.scatter_(1, legal, codes)
        kept[:, T.END_OF_SPEECH] = stop
        logits.index_copy_(0, rows, kept)
        return logits
