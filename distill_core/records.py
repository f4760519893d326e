"""The one run-record writer: every stage leaves ``manifest.json`` and a short card in its output directory."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from typing import Any

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets", "openai")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(out_dir: str, stage: str, **fields: Any) -> str:
    """manifest.json: stage, time, package versions, plus whatever the stage records (config, inputs, counts, cost)."""
    manifest = {"stage": stage, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "packages": package_versions(), **fields}
    path = os.path.join(out_dir, "manifest.json")
    write_atomic(path, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
    return path
