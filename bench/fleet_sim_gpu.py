"""A modelled GPU node for the fleet simulator: batched decode step time and LoRA costs.

One decode step reads the weights once for the whole batch plus each stream's KV cache
(bench/gpu_model.py's bytes and bandwidths) at an achieved fraction of peak bandwidth,
plus a fixed per-step cost (scheduling, sampling, the audio-position logits processor).
The fixed cost is calibrated on the only GPU figure we have: the talk's L40S at FP8 runs
10 streams at ~100 tok/s each, i.e. a 10 ms step at batch 10 with ~300-token contexts.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.gpu_model import (
    GPU_BANDWIDTH_GBS,
    ORPHEUS_3B,
    STEP_S,
    kv_bytes_per_token,
    param_count,
    weight_bytes_per_step,
)

BANDWIDTH_EFFICIENCY = 0.7  # share of datasheet bandwidth a vLLM decode step achieves
TALK_BATCH, TALK_STEP_S, TALK_CONTEXT = 10, 0.010, 300  # L40S FP8, ~100 tok/s per stream
LORA_RANK = 16  # the talk's voices: rank 16 on every attention and MLP projection
FP8_DENSE_TFLOPS = {"L40S": 362.0, "H100-SXM": 989.0}  # datasheets, without sparsity
PREFILL_FLOP_EFFICIENCY = 0.4
LORA_FROM_CPU_S = 0.005  # adapter bytes host -> GPU (~50 MB over PCIe) plus vLLM bookkeeping
LORA_FROM_DISK_S = 0.080  # read + parse the safetensors from local NVMe, then to the GPU
SNAC_FIRST_DECODE_S = 0.004  # the first window's SNAC decode on the same GPU
HOP_S = 0.001  # the one proxy hop from the ingress node to the owner (same DC)


def lora_bytes(dims: dict = ORPHEUS_3B, rank: int = LORA_RANK) -> int:
    """bf16 A and B matrices of one adapter on q/k/v/o/gate/up/down of every layer."""
    h, i = dims["hidden_size"], dims["intermediate_size"]
    q = dims["num_attention_heads"] * dims["head_dim"]
    kv = dims["num_key_value_heads"] * dims["head_dim"]
    pairs = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
    return 2 * rank * dims["num_hidden_layers"] * sum(a + b for a, b in pairs)


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    bandwidth: float  # bytes/s achieved
    weights: float  # bytes read per step (FP8 linears, bf16 lm_head)
    kv_per_token: float
    lora: float  # bytes of one adapter, read once per step per distinct adapter in the batch
    fixed_s: float  # per-step cost that does not scale with bytes
    prefill_s_per_token: float

    def step_s(self, batch: float, context_tokens: float, distinct_loras: int) -> float:
        """One batched decode step: `batch` streams holding `context_tokens` KV in all."""
        if batch <= 0:
            return self.fixed_s
        read = self.weights + self.kv_per_token * context_tokens + self.lora * distinct_loras
        return self.fixed_s + read / self.bandwidth

    def prefill_s(self, prompt_tokens: int) -> float:
        return prompt_tokens * self.prefill_s_per_token

    def max_streams(self, mean_context: float, max_step_s: float, lora_slots: int) -> int:
        """Most streams whose step stays within `max_step_s`, each on its own adapter up to
        the `lora_slots` the batch can hold."""
        streams = 0
        while (
            self.step_s(streams + 1, (streams + 1) * mean_context, min(streams + 1, lora_slots))
            <= max_step_s
        ):
            streams += 1
        return streams


def gpu_spec(name: str) -> GpuSpec:
    """The modelled node; the fixed step cost comes from the talk's L40S figure."""
    weights = weight_bytes_per_step(ORPHEUS_3B, "fp8")
    kv = kv_bytes_per_token(ORPHEUS_3B)

    def bandwidth(gpu: str) -> float:
        return GPU_BANDWIDTH_GBS[gpu] * 1e9 * BANDWIDTH_EFFICIENCY

    talk_read = weights + TALK_BATCH * TALK_CONTEXT * kv + TALK_BATCH * lora_bytes()
    fixed = TALK_STEP_S - talk_read / bandwidth("L40S")
    flops_per_token = 2 * param_count(ORPHEUS_3B)
    tflops = FP8_DENSE_TFLOPS[name] * 1e12 * PREFILL_FLOP_EFFICIENCY
    return GpuSpec(
        name=name,
        bandwidth=bandwidth(name),
        weights=weights,
        kv_per_token=kv,
        lora=lora_bytes(),
        fixed_s=fixed,
        prefill_s_per_token=flops_per_token / tflops,
    )


def real_time_step_s(headroom: float) -> float:
    """Longest step that keeps every stream `headroom` ahead of real time."""
    return STEP_S / (1.0 + headroom)
