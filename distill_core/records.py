"""The one run-record writer: every stage leaves ``manifest.json`` and a card (README.md) in its output directory.

Manifests and cards share what is here: the recipe record, the package versions, atomic writes, and the rule that
decides whether a name is a hub repository (standard card metadata) or a path of this machine (named in the body).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from typing import Any, Iterable

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets", "openai")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on; a manifest and a card list the same ones."""
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


def write_atomic(path: str, text: str | Iterable[str]) -> None:
    """Write ``text`` (a string, or its pieces, written as they come) beside ``path``, then rename it over ``path``:
    a reader sees the old file or the new one, never part of one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines([text] if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def recipe_record(recipe) -> dict[str, Any]:
    """The recipe as a manifest records it: where it was read, its hash, the values it resolved to and the
    command-line overrides, so the run can be repeated from the manifest alone."""
    return {"path": recipe.path, "sha256": recipe.sha256, "values": recipe.values, "overrides": recipe.overrides}


def hub_repo_id(name: str | None) -> str | None:
    """``name`` when it names a Hugging Face Hub repository, else None.

    A name that exists on this machine was loaded from there (transformers and datasets look locally first), and a
    path means nothing to a reader of the card elsewhere: only hub ids go into a card's ``base_model`` and
    ``datasets`` metadata; local inputs are named in the card's body as the recipe wrote them.
    """
    if not name or os.path.exists(os.path.expanduser(name)):
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def write_card(out_dir: str, card_data, body: str) -> str:
    """README.md: ``card_data`` (huggingface_hub ModelCardData or DatasetCardData) as the YAML header, then the
    Markdown body. huggingface_hub writes the header, so values are quoted and escaped as the hub reads them; the
    file is replaced atomically, so a reader never sees half a card."""
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard

    card_class = DatasetCard if isinstance(card_data, DatasetCardData) else ModelCard
    card = card_class(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    path = os.path.join(out_dir, "README.md")
    write_atomic(path, str(card))
    return path


def write_manifest(out_dir: str, stage: str, **fields: Any) -> str:
    """manifest.json: stage, time, package versions, plus whatever the stage records (config, inputs, counts, cost)."""
    manifest = {
        "stage": stage,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "packages": package_versions(),
        **fields,
    }
    path = os.path.join(out_dir, "manifest.json")
    write_atomic(path, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
    return path
