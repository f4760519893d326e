"""The merge arithmetic, one tensor at a time (float32 in, float32 out), with mergekit's semantics.

- linear: ``sum w_i T_i``, divided by ``sum w_i`` unless ``normalize`` is off.
- slerp (the base and one other model; ``t = 0`` is the base): the angle comes from normalised copies of the
  flattened tensors; when ``|cos| > 0.9995`` it falls back to linear interpolation, otherwise
  ``sin((1-t)θ)/sin θ · v0 + sin(tθ)/sin θ · v1`` on the original tensors.
- task_arithmetic, ties, dare_ties, dare_linear: ``base + λ · mix(w_i · sparsify(T_i - base))``. TIES keeps the top
  ``density`` fraction of each delta by magnitude, elects a sign per entry from the sum of the weighted deltas (a tie
  goes to +), keeps the weighted deltas that agree and divides by the sum of the weights that contributed. DARE
  drops each delta entry with probability ``1 - density`` and divides the rest by ``density`` (the paper's rescale;
  ``rescale: false`` keeps them as they are), from a generator seeded by the recipe's seed, the tensor's name and
  the model's position, so a merge is reproducible and independent of the order tensors are visited in.
- model_stock (the base and at least two fine-tunes): ``cos`` is the mean pairwise cosine of the offsets from the
  base (per output row with ``filter_wise``), ``t = N cos / (1 + (N - 1) cos)`` and the result is
  ``t · mean(fine-tunes) + (1 - t) · base``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch

SLERP_COLINEAR = 0.9995
_EPS = 1e-8


@dataclass(frozen=True)
class DeltaRule:
    sparsify: str | None  # None, "magnitude" (TIES) or "random" (DARE)
    consensus: bool  # TIES sign election
    normalize: bool  # the default of the `normalize` parameter


DELTA_RULES = {
    "task_arithmetic": DeltaRule(None, False, False),
    "ties": DeltaRule("magnitude", True, True),
    "dare_ties": DeltaRule("random", True, True),
    "dare_linear": DeltaRule("random", False, False),
}


def linear(tensors: list[torch.Tensor], weights: list[float], normalize: bool = True) -> torch.Tensor:
    out = tensors[0] * weights[0]  # in place from here: a merge's time is mostly memory traffic
    for tensor, weight in zip(tensors[1:], weights[1:]):
        out.add_(tensor, alpha=weight)
    total = sum(weights)
    if normalize and abs(total) > _EPS:
        out.div_(total)
    return out


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    a, b = v0.reshape(-1).double(), v1.reshape(-1).double()
    a = a / max(a.norm().item(), _EPS)
    b = b / max(b.norm().item(), _EPS)
    dot = float(torch.dot(a, b))
    if abs(dot) > SLERP_COLINEAR:
        return (1 - t) * v0 + t * v1
    theta = math.acos(max(-1.0, min(1.0, dot)))
    sin_theta = math.sin(theta)
    return (math.sin((1 - t) * theta) / sin_theta) * v0 + (math.sin(t * theta) / sin_theta) * v1


def magnitude_sparsify(delta: torch.Tensor, density: float) -> torch.Tensor:
    """The top ``density`` fraction of entries by magnitude; the rest set to zero."""
    if density >= 1:
        return delta
    keep = int(density * delta.numel())
    if keep <= 0:
        return torch.zeros_like(delta)
    top = torch.topk(delta.abs().reshape(-1), keep).indices
    mask = torch.zeros(delta.numel(), dtype=torch.bool)
    mask[top] = True
    return delta * mask.reshape(delta.shape)


def random_sparsify(delta: torch.Tensor, density: float, generator: torch.Generator, rescale: bool) -> torch.Tensor:
    """Each entry kept with probability ``density`` (and divided by it when ``rescale``)."""
    if density >= 1:
        return delta
    kept = delta * (torch.rand(delta.shape, generator=generator) < density)
    return kept / density if rescale and density > 0 else kept


def dare_generator(seed: int, name: str, model_index: int) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}:{model_index}".encode()))


def delta_merge(
    rule: DeltaRule,
    base: torch.Tensor,
    tensors: list[torch.Tensor],
    weights: list[float],
    densities: list[float],
    *,
    normalize: bool,
    lam: float = 1.0,
    rescale: bool = True,
    seed: int = 0,
    name: str = "",
) -> torch.Tensor:
    """Task arithmetic and its sparsified, sign-elected variants (see the module docstring)."""
    weighted = []
    for i, (tensor, weight, density) in enumerate(zip(tensors, weights, densities)):
        delta = tensor - base
        if rule.sparsify == "magnitude":
            delta = magnitude_sparsify(delta, density)
        elif rule.sparsify == "random":
            delta = random_sparsify(delta, density, dare_generator(seed, name, i), rescale)
        weighted.append(delta * weight)
    stacked = torch.stack(weighted)
    weight_stack = torch.tensor(weights, dtype=stacked.dtype).reshape((-1,) + (1,) * base.dim())
    if rule.consensus:
        majority = torch.where(stacked.sum(dim=0) >= 0, 1.0, -1.0).to(stacked.dtype)
        agree = stacked.sign() == majority
        mixed = (stacked * agree).sum(dim=0)
        divisor = (weight_stack * agree).sum(dim=0)
    else:
        mixed = stacked.sum(dim=0)
        divisor = weight_stack.sum(dim=0).expand_as(mixed)
    if normalize:
        divisor = torch.where(divisor.abs() < _EPS, torch.ones_like(divisor), divisor)
        mixed = mixed / divisor
    return base + lam * mixed


def model_stock(base: torch.Tensor, tensors: list[torch.Tensor], filter_wise: bool = False) -> torch.Tensor:
    rows = base.shape[0] if filter_wise and base.dim() > 1 else 1
    offsets = [(t - base).reshape(rows, -1).double() for t in tensors]
    cosines = []
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            norms = offsets[i].norm(dim=1) * offsets[j].norm(dim=1)
            cosines.append((offsets[i] * offsets[j]).sum(dim=1) / norms.clamp_min(_EPS))
    cos = torch.stack(cosines).mean(dim=0).clamp(-1.0, 1.0)
    n = len(tensors)
    denom = 1 + (n - 1) * cos
    ratio = torch.where(denom.abs() < _EPS, torch.zeros_like(cos), n * cos / denom)
    shape = (rows,) + (1,) * (base.dim() - 1) if filter_wise and base.dim() > 1 else ()
    ratio = ratio.to(base.dtype).reshape(shape) if shape else ratio.to(base.dtype).reshape(())
    mean = torch.stack(tensors).mean(dim=0)
    return ratio * mean + (1 - ratio) * base
