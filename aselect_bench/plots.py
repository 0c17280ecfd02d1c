"""Matplotlib figures for the dashboards and result files (Agg backend, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def hfr_curve_figure(curve: dict, chosen: int, spread: dict | None = None, title: str = "HFR over timesteps"):
    """Mean HFR per candidate timestep (with +-1 std band), the chosen timestep marked."""
    ts = sorted(int(t) for t in curve)
    ys = [curve[t] if t in curve else curve[str(t)] for t in ts]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ts, ys, marker="o", color="tab:blue", label="mean HFR")
    if spread:
        sd = [spread[t] if t in spread else spread[str(t)] for t in ts]
        ax.fill_between(ts, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen t={chosen}")
    ax.set_xlabel("timestep t (0 = clean)")
    ax.set_ylabel("high-frequency ratio")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Save a figure atomically as PNG and close it."""
    import io

    from aselect_bench.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def hfr_curves_figure(curves: dict, title: str):
    """Several HFR curves ``{label: (curve {t: v}, chosen t)}`` on one axis, each choice marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (curve, chosen) in curves.items():
        ts = sorted(int(t) for t in curve)
        ys = [curve[str(t)] if str(t) in curve else curve[t] for t in ts]
        (line,) = ax.plot(ts, ys, marker=".", label=f"{label} (t={chosen})")
        chosen_y = ys[ts.index(int(chosen))] if int(chosen) in ts else None
        if chosen_y is not None:
            ax.plot([int(chosen)], [chosen_y], marker="*", markersize=14, color=line.get_color())
    ax.set_xlabel("timestep t (0 = clean)")
    ax.set_ylabel("mean HFR")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
