#!/usr/bin/env python
"""Merge a LoRA/QLoRA adapter (e.g. the QLoRA dSFT output) into its base model, for dDPO or inference.

python scripts/merge_adapter.py runs/zephyr-7b-sft-qlora runs/zephyr-7b-sft-qlora-merged [--dtype bfloat16]
"""

import argparse

import _bootstrap  # noqa: F401

from distill_core.errors import run_cli


def main(argv):
    parser = argparse.ArgumentParser(prog="merge_adapter.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    args = parser.parse_args(argv)
    from training.merge import merge_lora_adapter

    print(f"merged model written to {merge_lora_adapter(args.adapter_dir, args.out_dir, args.dtype)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
