"""Checks a run that pushes to the Hugging Face Hub can pass before it loads a model.

``push_to_hub: true`` otherwise fails only when the trainer first pushes, after the model and data have
loaded (or after the first checkpoint). Everything here reads the recipe, the environment and the local
token file; nothing talks to the network, and no token is ever printed.
"""

from __future__ import annotations

import os

from .errors import RecipeError, first_line

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub reads it."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE


def push_repo_id(recipe) -> tuple[str, str]:
    """The repository a push goes to, and where that name comes from (as transformers derives it)."""
    if recipe.get("hub_model_id"):
        return str(recipe.get("hub_model_id")), "hub_model_id"
    output_dir = str(recipe.get("output_dir") or "")
    return os.path.basename(os.path.abspath(output_dir)), f"the last part of output_dir '{output_dir}'"


def hub_token_available() -> bool:
    """A token in the environment or in the token file `hf auth login` writes (recipes may not hold one)."""
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    if os.environ.get("HF_OIDC_RESOURCE"):  # CI trusted publishing: huggingface_hub mints the token when it pushes
        return True
    import huggingface_hub

    try:
        return bool(huggingface_hub.get_token())
    except Exception:  # an unreadable or expired login is no token; its text may hold the token, so it is not shown
        return False


def check_push_to_hub(recipe) -> None:
    """One line naming the recipe, the key and the fix when a push could not happen."""
    path = recipe.path
    if hub_offline():
        raise RecipeError(
            f"{path}: push_to_hub: true needs the Hugging Face Hub, but HF_HUB_OFFLINE is set; "
            f"unset HF_HUB_OFFLINE or set push_to_hub: false"
        )
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, source = push_repo_id(recipe)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        reason = first_line(exc) if str(exc).strip() else "invalid name"
        raise RecipeError(
            f"{path}: push_to_hub: true pushes to '{repo_id}' ({source}), which is not a valid hub "
            f"repository id: {reason}; set hub_model_id: NAMESPACE/NAME (letters, digits, '-', '_', '.')"
        ) from None
    if not hub_token_available():
        raise RecipeError(
            f"{path}: push_to_hub: true needs a Hugging Face token and none was found; export HF_TOKEN, "
            f"run `hf auth login`, or set push_to_hub: false"
        )
