#!/usr/bin/env python
"""Streamed merging against loading everything, on two models of about 1B parameters, measured here and now.

Two synthetic bf16 models with Mistral-7B's shapes (hidden 4096, MLP 14336, 32 heads, 8 KV heads, vocabulary 32000)
and 3 layers instead of 32 (0.92B parameters, 1.8 GB each) are written to safetensors in a temporary directory. Each
merge (linear, 0.5/0.5) runs in its own process and reports its peak resident memory (VmHWM; ru_maxrss would
inherit this process's peak across fork and exec):
- streamed: scripts/run_merge.py, shards of at most 1 GB;
- baseline: both models loaded whole with safetensors' load_file, merged in memory, saved with save_file.
The I/O bound is reading both inputs and writing one output once, with the same reader and writer, in this process.
Printed: each peak, the streamed peak above its pre-merge footprint in units of the largest tensor, the peak ratio,
and the streamed merge's time over the I/O bound (target: at most 1.5).

    python bench/merge.py [--layers 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

HIDDEN, MLP, HEADS, KV_HEADS, VOCAB = 4096, 14336, 32, 8, 32000

BASELINE = """
import sys, time
sys.path.insert(0, {root!r})
from safetensors.torch import save_file
from distill_core.recipe import Section, load_recipe
from merging.config import MergeArguments, check_merge
from merging.inputs import resolve_models
from merging.plan import plan_jobs
from merging.run import merge_in_memory, peak_rss_mib
recipe = load_recipe({recipe!r}, [], [Section("merge", MergeArguments)], check_merge)
spec = recipe.parsed["merge"]
models = resolve_models(spec.models, {tmp!r}, None)
start = time.monotonic()
merged = merge_in_memory(spec, models, plan_jobs(spec, models), "bfloat16", 0)
save_file(merged, {out!r}, metadata={{"format": "pt"}})
print(time.monotonic() - start, peak_rss_mib())
"""


def write_model(path: str, layers: int, seed: int, tokenizer_dir: str) -> int:
    import torch
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    kv = HIDDEN // HEADS * KV_HEADS
    shapes = {
        "model.embed_tokens.weight": (VOCAB, HIDDEN),
        "model.norm.weight": (HIDDEN,),
        "lm_head.weight": (VOCAB, HIDDEN),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN), p + "self_attn.k_proj.weight": (kv, HIDDEN),
            p + "self_attn.v_proj.weight": (kv, HIDDEN), p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": (MLP, HIDDEN), p + "mlp.up_proj.weight": (MLP, HIDDEN),
            p + "mlp.down_proj.weight": (HIDDEN, MLP), p + "input_layernorm.weight": (HIDDEN,),
            p + "post_attention_layernorm.weight": (HIDDEN,),
        })  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    names = list(shapes)
    weight_map, shard, total, part = {}, {}, 0, 0
    for n, name in enumerate(names):  # written in shards of about 1 GB, as real checkpoints are
        shard[name] = (torch.randn(shapes[name], generator=gen) * 0.02).to(torch.bfloat16)
        total += shard[name].numel()
        if sum(t.numel() for t in shard.values()) * 2 > 1e9 or n == len(names) - 1:
            part += 1
            file = f"model-{part:05d}.safetensors"
            save_file(shard, os.path.join(path, file), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, file))
            shard = {}
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total * 2}, "weight_map": weight_map}, f)
    config = {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": HIDDEN,
        "intermediate_size": MLP, "num_hidden_layers": layers, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "dtype": "bfloat16", "tie_word_embeddings": False,
    }  # fmt: skip
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    for file in os.listdir(tokenizer_dir):
        if file.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(os.path.join(tokenizer_dir, file), path)
    return total


def io_bound(inputs: list[str], out_dir: str) -> float:
    """Seconds to read every tensor of both inputs and write one model's worth of output, with the merge's own
    reader and writer."""
    from merging.inputs import open_model
    from merging.shards import ShardWriter, read_tensor

    models = [open_model(p, p) for p in inputs]
    os.makedirs(out_dir, exist_ok=True)
    start = time.monotonic()
    infos = list(models[0].tensors.values())
    writer = ShardWriter(out_dir, infos, int(1e9))
    for info in infos:
        read_tensor(models[1].tensors[info.name])
        writer.write(info.name, read_tensor(info))
    writer.close()
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="merge-bench-")
    try:
        run(tmp, args.layers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: str, layers: int) -> None:
    per_model = 2 * (2 * VOCAB * HIDDEN + layers * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * HIDDEN // 4 + 3 * HIDDEN * MLP))
    free = shutil.disk_usage(tmp).free
    if free < 4.5 * per_model:  # two inputs, the streamed output and the baseline's (each removed in turn)
        layers = max(1, int(layers * free / (4.5 * per_model)))
        print(f"note: only {free / 1e9:.1f} GB free in {tmp}; scaled down to {layers} layers")
    from training.smoke_data import corpus_lines
    from training.tiny import build_tiny_model

    tokenizer_dir = build_tiny_model(os.path.join(tmp, "tokenizer"), corpus_lines()[:200])
    inputs = [os.path.join(tmp, name) for name in ("a", "b")]
    params = sum(write_model(path, layers, seed, tokenizer_dir) for seed, path in enumerate(inputs)) // 2
    largest_mib = VOCAB * HIDDEN * 2 / 2**20
    bound = io_bound(inputs, os.path.join(tmp, "io"))
    shutil.rmtree(os.path.join(tmp, "io"))
    import yaml

    recipe = os.path.join(tmp, "merge.yaml")
    with open(recipe, "w") as f:
        yaml.safe_dump({
            "merge_method": "linear", "dtype": "bfloat16", "output_dir": os.path.join(tmp, "out"),
            "max_shard_size_mb": 1000, "models": [{"model": p, "parameters": {"weight": 0.5}} for p in inputs],
        }, f)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_merge.py"), recipe], check=True, env=env)
    with open(os.path.join(tmp, "out", "manifest.json")) as f:
        memory = json.load(f)["memory"]
    shutil.rmtree(os.path.join(tmp, "out"))
    code = BASELINE.format(root=ROOT, recipe=recipe, tmp=tmp, out=os.path.join(tmp, "baseline.safetensors"))
    done = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    base_seconds, base_peak = map(float, done.stdout.split()[-2:])
    above = memory["peak_rss_mib"] - memory["rss_before_first_tensor_mib"]
    print(f"two models of {params / 1e9:.2f}B parameters ({layers} layers, Mistral-7B shapes, bf16), linear merge")
    print(f"largest tensor: {largest_mib:.0f} MiB (bf16); output shard limit 1000 MB")
    print(f"streamed: peak {memory['peak_rss_mib']:.0f} MiB ({memory['rss_before_first_tensor_mib']:.0f} MiB before "
          f"the first tensor; {above:.0f} MiB = {above / largest_mib:.1f} largest tensors above it), "
          f"{memory['seconds']:.1f} s")  # fmt: skip
    print(f"load-everything baseline: peak {base_peak:.0f} MiB, {base_seconds:.1f} s")
    print(f"peak memory ratio baseline/streamed: {base_peak / memory['peak_rss_mib']:.2f}x")
    print(f"I/O bound (read both inputs, write one output): {bound:.1f} s; streamed/I-O bound: "
          f"{memory['seconds'] / bound:.2f}x (target <= 1.5)")  # fmt: skip


if __name__ == "__main__":
    main()
