"""The plan itself: its line items, total and verdict against the GPU's memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from .launcher import Launcher
from .model_shape import ModelShape
from .run_shape import RunShape

GB = 2**30
TIGHT_FRACTION = 0.9


@dataclass(frozen=True)
class LineItem:
    name: str
    bytes: int
    how: str
    counted: bool = True  # False: a working set smaller than the one that sets the peak

    @property
    def gb(self) -> float:
        return self.bytes / GB


@dataclass
class MemoryPlan:
    recipe: str
    run: RunShape
    model: ModelShape
    launcher: Launcher
    nodes: int
    gpus_per_node: int
    gpu_memory_gb: float
    items: list[LineItem]
    notes: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    materialised_logits_bytes: int = 0  # what full logits would add where the fused head avoids them

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.items if item.counted)

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    @property
    def verdict(self) -> str:
        if self.total_gb <= TIGHT_FRACTION * self.gpu_memory_gb:
            return "fits"
        return "tight" if self.total_gb <= self.gpu_memory_gb else "does not fit"

    @property
    def fits(self) -> bool:
        return self.verdict != "does not fit"

    def item(self, name: str) -> LineItem | None:
        return next((i for i in self.items if i.name == name), None)

    def biggest(self) -> LineItem:
        return max((i for i in self.items if i.counted), key=lambda i: i.bytes)

    def summary(self) -> str:
        """One line: the total against the GPU, the biggest item, and what to change."""
        big = self.biggest()
        line = (
            f"{self.recipe}: the plan needs {self.total_gb:.1f} GB per GPU of {self.gpu_memory_gb:g} GB "
            f"(biggest: {big.name} {big.gb:.1f} GB)"
        )
        return f"{line}; {'; or '.join(self.advice)}" if self.advice else line


def short_count(n: float) -> str:
    """A parameter count as the plan writes it: 7.24B, 262.1M, 4.1k."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}" if unit == "B" else f"{n / size:.1f}{unit}"
    return str(int(n))
