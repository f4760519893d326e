"""Training curves drawn from the trainer's log history, saved next to the model."""

from __future__ import annotations

import os

# Which logged metrics each stage's figure shows, one panel each (train and eval series share a panel).
CURVES = {
    "dSFT": ["loss", "mean_token_accuracy"],
    "dDPO": ["loss", "rewards/margins", "rewards/accuracies"],
}


def plot_training_curves(log_history: list[dict], stage: str, out_dir: str) -> str | None:
    """Write training_curves.png; returns its file name, or None when nothing was logged."""
    panels = [k for k in CURVES.get(stage, ["loss"]) if any(k in r or f"eval_{k}" in r for r in log_history)]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for name, style in ((key, "-"), (f"eval_{key}", "o--")):
            points = [(r["step"], r[name]) for r in log_history if name in r and "step" in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, label="eval" if name.startswith("eval_") else "train", markersize=4)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{stage}: {os.path.basename(os.path.abspath(out_dir))}")
    fig.tight_layout()
    name = "training_curves.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name
