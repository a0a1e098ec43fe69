"""Build or load the 24 kHz SNAC codec: seeded random weights or a local checkpoint.

`NoiseBlock` (learned-scale Gaussian noise after each decoder upsampler) is replaced
by identity: decoded audio must be a pure function of the codes, so that streamed
windows match a full decode, batched decodes match single ones, and tests are
reproducible. The block only adds a faint noise floor; dropping it is inaudible.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from snac import SNAC
from snac.layers import NoiseBlock
from torch import nn
from torch.nn.utils import parametrize

from ..orpheus.codes import codes_to_frames
from ..orpheus.tokens import SAMPLE_RATE
from .snac_kernels import use_fast_kernels

log = logging.getLogger(__name__)

RANDOM = "random"
SNAC_24KHZ_CONFIG: dict = {
    "sampling_rate": 24000,
    "encoder_dim": 48,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1024,
    "decoder_rates": [8, 8, 4, 2],
    "attn_window_size": None,
    "codebook_size": 4096,
    "codebook_dim": 8,
    "vq_strides": [4, 2, 1],
    "noise": True,
    "depthwise": True,
}


def load_snac(
    spec: str = RANDOM, *, device: str = "cpu", seed: int = 0, fast_kernels: bool = True
) -> SNAC:
    """`random` (seeded 24 kHz architecture) or a local dir with config.json + pytorch_model.bin.

    `fast_kernels` swaps in the CPU forms of snake and the dilated convolutions (CPU
    only: on a GPU the stock kernels are fused enough); `False` keeps SNAC's own layer
    code, as the reference path in bench/ does.
    """
    if spec == RANDOM:
        torch.manual_seed(seed)
        model = SNAC(**SNAC_24KHZ_CONFIG)
        log.warning("SNAC uses RANDOM weights: decoded audio is noise, not speech")
    else:
        model = _load_local(spec)
    _disable_noise(model)
    _fold_weight_norm(model)
    if fast_kernels and torch.device(device).type == "cpu":
        use_fast_kernels(model)
    return model.to(device).eval()


def _load_local(spec: str) -> SNAC:
    path = Path(spec)
    config, weights = path / "config.json", path / "pytorch_model.bin"
    if not (config.is_file() and weights.is_file()):
        raise FileNotFoundError(
            f"--snac {spec!r}: expected 'random' or a local directory with config.json and "
            "pytorch_model.bin (weights are never downloaded at run time)"
        )
    model = SNAC.from_config(str(config))
    if model.sampling_rate != SAMPLE_RATE:
        raise ValueError(
            f"--snac {spec!r}: sampling_rate {model.sampling_rate}, need {SAMPLE_RATE}"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


def _disable_noise(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, NoiseBlock):
                setattr(parent, name, nn.Identity())


def _fold_weight_norm(model: nn.Module) -> None:
    # Weight norm is a training-time reparametrization; folding it saves a norm per conv per call.
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def encode_audio(model: SNAC, samples_24k: np.ndarray) -> np.ndarray:
    """Mono float audio at 24 kHz -> Orpheus frames of shape (n, 7) (int64 codes)."""
    audio = np.asarray(samples_24k, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"encode_audio expects mono samples of shape (n,), got {audio.shape}")
    if audio.size == 0:
        return np.empty((0, 7), dtype=np.int64)
    device = next(model.parameters()).device
    with torch.inference_mode():
        codes = model.encode(torch.from_numpy(audio).to(device).view(1, 1, -1))
    l0, l1, l2 = (c[0].cpu().numpy() for c in codes)
    return codes_to_frames(l0, l1, l2)
