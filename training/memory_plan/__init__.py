"""Per-GPU memory plan of a training recipe before launch: will it fit, and if not, what to change.

The plan reads the model's ``config.json`` only (no weights, no torch) and the launcher's accelerate and DeepSpeed
configs. It counts, per GPU, in GB of 2**30 bytes (the unit DeepSpeed's estimator prints and nvidia-smi's MiB
imply; an "80 GB" A100/H100 holds about 80 of them):

Model states (held the whole step)
    Under DeepSpeed ZeRO-2/3 their total is DeepSpeed's own estimate (``estimate_zero3_model_states_mem_needs`` and
    ``estimate_zero2_model_states_mem_needs`` of deepspeed 0.19.8, reproduced in deepspeed_estimators.py without
    importing torch; tests/test_preflight.py checks that the numbers are equal): 18 bytes per trainable parameter split
    across the GPUs (16-bit weights, fp32 gradients, fp32 master weights, two fp32 Adam moments), ZeRO-3 adding 4 bytes
    x the largest layer for gathering, ZeRO-2 keeping the 16-bit weights whole on every GPU. ``offload_optimizer``
    moves gradients and optimizer states to CPU RAM, ``offload_param`` the weights too. ZeRO-3 may also keep up to
    ``stage3_max_live_parameters`` gathered 16-bit weights resident; the excess over the estimator's allowance is its
    own line. Under DDP every GPU holds everything: weights and gradients in the load dtype, a second gradient copy in
    DDP's all-reduce buckets, optimizer moments (torch AdamW: two in the weights' dtype).
LoRA / QLoRA
    The base weights are frozen (16-bit, or 4-bit: 0.5 byte per linear-layer weight plus one fp32 absmax per
    64-weight block, 1/64 byte plus a second level with nested quantization; embeddings and head stay 16-bit).
    Only the adapters train: lora_r x (in + out) per targeted linear of every layer, fp32 (PEFT's default
    autocast_adapter_dtype), plus full copies of lora_modules_to_save.
DPO reference
    ref_mode model: a second copy of the weights, sharded like the policy under ZeRO-3 (TRL's prepare_deepspeed),
    whole on every GPU otherwise; no gradients or optimizer. precomputed and adapter: nothing during training.
Activations
    Saved for backward by one decoder layer, per token (transformers 5.24, Llama/Mistral layer, flash/sdpa
    attention): two RMSNorms (fp32 input, normalised input, output: 4h + 2 x 2h bytes, plus an fp32 rsqrt),
    attention (q after RoPE and the output at h, k and v at the key-value width, an fp32 log-sum-exp per head) and
    the gated MLP (gate, up, SiLU(gate), their product: 4 x intermediate), all in the compute dtype. For Mistral-7B
    in bf16 that is 200,840 bytes per token, exactly what saved-tensor hooks measure on a one-layer model of real
    width. LoRA adds, per targeted linear, its dropout copy and mask ((2 + 1) x in) and the r-wide intermediate.
    With activation checkpointing (``activation_checkpointing`` / ``gradient_checkpointing``, on by default in
    TRL) a checkpointed layer keeps only its 16-bit input; ``every_n_layers`` checkpoints every n-th layer and the
    others keep everything; ``offload`` moves the kept inputs to host memory.
    Tokens per micro-batch: per_device_train_batch_size x max_length (SFT, packed or padded to at most max_length);
    DPO concatenates chosen and rejected, so 2 x per_device_train_batch_size sequences of max_length.
Working sets of the peak (only the largest counts: they do not coincide)
    Backward of one checkpointed layer: its recomputed activations, two MLP-wide and two hidden-wide gradients,
    its 16-bit weight gradients before ZeRO's reduce-scatter. Loss head: TRL 1.16's fused LM head
    (trl/trainer/utils.py add_fused_lm_head) never materialises the batch x seq x vocab logits; it works in tiles of
    4096 tokens x 32768 vocabulary entries and accumulates fp32 gradients of the hidden states and the head.
    Reference forward (DPO): one layer's transient MLP tensors without grad, while the policy's saved activations
    are held.
Logits
    Not materialised under TRL 1.16 for SFT and DPO. Where they are (label smoothing in SFT), they are counted as
    batch x seq x vocab x (compute dtype + 4 bytes of fp32 upcast for the loss). The plan prints what materialised
    logits would add, for comparison with estimates made for older TRL.
Margin
    2.5 GB for the CUDA context, NCCL buffers and allocator fragmentation.

Verdict: fits when the total is at most 90% of the GPU's memory, tight up to 100%, does not fit above.

Compared with the usual estimates for the Zephyr recipes on 8 x 80 GB under ZeRO-3 (dSFT 40-45 GB, dDPO with a
frozen reference 33-38 GB), this plan gives about 37 and 30 GB: the difference is the logits, which those
estimates count (bf16 plus the fp32 upcast: 5.9 GB for dSFT; 2.9 GB each for the DPO policy and reference) and
TRL 1.16 no longer materialises. Adding them back lands inside both ranges (the plan prints that figure).
"""

from .deepspeed_estimators import zero2_model_states, zero3_model_states
from .estimate import plan_memory
from .from_recipe import infer_stage, preflight
from .plan import GB, LineItem, MemoryPlan
from .rendering import render

__all__ = [
    "GB",
    "LineItem",
    "MemoryPlan",
    "infer_stage",
    "plan_memory",
    "preflight",
    "render",
    "zero2_model_states",
    "zero3_model_states",
]
