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


def comparison_figure(result: dict):
    """Per-timestep val/test metric (left axis) next to the HFR curve (right axis); chosen and best marked."""
    ts = [int(t) for t in result["candidates"]]
    per_t = result["exhaustive"]["per_timestep"]
    metric = result.get("metric", "metric")
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.plot(ts, [per_t[str(t)]["val"] for t in ts], marker="o", color="tab:green", label=f"val {metric}")
    ax.plot(ts, [per_t[str(t)]["test"] for t in ts], marker="s", color="tab:olive", label=f"test {metric}")
    ax.set_xlabel("timestep t (0 = clean)")
    ax.set_ylabel(f"{metric} (%)")
    twin = ax.twinx()
    twin.plot(ts, [result["hfr"][str(t)] for t in ts], marker=".", color="tab:blue", label="mean HFR")
    twin.set_ylabel("HFR", color="tab:blue")
    ax.axvline(result["aselect"]["timestep"], color="tab:red", linestyle="--",
               label=f"A-SelecT t={result['aselect']['timestep']}")
    ax.axvline(result["exhaustive"]["best_timestep"], color="black", linestyle=":",
               label=f"exhaustive best t={result['exhaustive']['best_timestep']}")
    lines = ax.get_legend_handles_labels()
    lines2 = twin.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="best")
    ax.set_title(f"{result['task']}/{result['dataset']} ({result['preset']}): saving "
                 f"{result['saving_seconds']:.1f}x time, {result['saving_forwards']:.1f}x forwards")
    fig.tight_layout()
    return fig


def cost_figure(result: dict):
    """Bar chart of the cost (seconds and forwards) of each strategy."""
    names = ["exhaustive", "A-SelecT"]
    secs = [result["exhaustive"]["seconds"], result["aselect"]["seconds"]]
    fwds = [result["exhaustive"]["forwards"], result["aselect"]["forwards"]]
    if "fused_exhaustive" in result:
        names.append("fused exhaustive")
        secs.append(result["fused_exhaustive"]["seconds"])
        fwds.append(result["fused_exhaustive"]["forwards"])
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, values, title in zip(axes, (secs, fwds), ("wall seconds", "backbone forwards (images)")):
        ax.bar(names, values, color=["tab:gray", "tab:red", "tab:purple"][: len(names)])
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig
