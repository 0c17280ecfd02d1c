"""Matplotlib figures for the dashboards and result files (Agg backend, no display needed)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator, ScalarFormatter  # noqa: E402


def hfr_curve_figure(curve: dict, chosen: int, spread: dict | None = None, title: str = "HFR over timesteps",
                     note: str | None = None):
    """Mean HFR per candidate timestep (with +-1 std band), the chosen timestep marked; ``note`` (e.g. the
    bootstrap support of the choice, ``SelectionResult.firmness()``) becomes the title's second line."""
    ts = sorted(int(t) for t in curve)
    ys = [curve[t] if t in curve else curve[str(t)] for t in ts]
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(ts, ys, marker="o", color="tab:blue", label="mean HFR")
    if spread:
        sd = [spread[t] if t in spread else spread[str(t)] for t in ts]
        ax.fill_between(ts, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen t={chosen}")
    ax.set_xlabel("timestep t (0 = the clean end)")
    ax.set_ylabel("high-frequency ratio")
    ax.set_title(f"{title}\n{note}" if note else title, fontsize=10 if note else None)
    ax.legend(loc="best")
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
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for label, (curve, chosen) in curves.items():
        ts = sorted(int(t) for t in curve)
        ys = [curve[str(t)] if str(t) in curve else curve[t] for t in ts]
        (line,) = ax.plot(ts, ys, marker=".", label=f"{label} (t={chosen})")
        chosen_y = ys[ts.index(int(chosen))] if int(chosen) in ts else None
        if chosen_y is not None:
            ax.plot([int(chosen)], [chosen_y], marker="*", markersize=14, color=line.get_color())
    ax.set_xlabel("timestep t (0 = the clean end)")
    ax.set_ylabel("mean HFR")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def comparison_figure(result: dict):
    """Per-timestep val/test metric (left axis) next to the HFR curve (right axis); chosen and best marked.

    ``result``: a comparison with ``int`` timestep keys (as :func:`~aselect_bench.analyses.compare.run_comparison`
    returns it)."""
    ts = [int(t) for t in result["candidates"]]
    per_t = result["exhaustive"]["per_timestep"]
    metric = result.get("metric", "metric")
    val_name, test_name = (result.get("splits", {}).get(s, s) for s in ("val", "test"))
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    for split, key, marker, colour, name in (("val", "val_ci", "o", "tab:green", val_name),
                                             ("test", "ci", "s", "tab:olive", test_name)):
        ax.plot(ts, [per_t[t][split] for t in ts], marker=marker, color=colour, label=f"{name} {metric}")
        if key in per_t[ts[0]]:  # the 95% bootstrap interval over images
            ax.fill_between(ts, [per_t[t][key][0] for t in ts], [per_t[t][key][1] for t in ts], color=colour,
                            alpha=0.15)
    tied = result["exhaustive"].get("tied_with_best", [])
    if tied:
        ax.plot(tied, [per_t[t]["test"] for t in tied], "o", markersize=11, markerfacecolor="none",
                color="black", label="tied with the best")
    ax.set_xlabel("timestep t (0 = the clean end)")
    ax.set_ylabel(f"{metric} (%)")
    twin = ax.twinx()
    twin.plot(ts, [result["hfr"][t] for t in ts], marker=".", color="tab:blue", label="mean HFR")
    twin.set_ylabel("HFR", color="tab:blue")
    ax.axvline(result["aselect"]["timestep"], color="tab:red", linestyle="--",
               label=f"A-SelecT t={result['aselect']['timestep']}")
    ax.axvline(result["exhaustive"]["best_timestep"], color="black", linestyle=":",
               label=f"exhaustive best t={result['exhaustive']['best_timestep']}")
    lines = ax.get_legend_handles_labels()
    lines2 = twin.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="best")
    time_saving = ("disturbed timing" if result.get("timing_disturbed")  # above its ideal: not a result
                   else f"{result['saving_seconds']:.1f}x time")
    ax.set_title(f"{result['task']}/{result['dataset']} ({result['preset']}): saving "
                 f"{time_saving}, {result['saving_forwards']:.1f}x forwards")
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
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    for ax, values, title in zip(axes, (secs, fwds), ("wall seconds", "backbone forwards (images)")):
        ax.bar(names, values, color=["tab:gray", "tab:red", "tab:purple"][: len(names)])
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=8)
    return fig


def selector_regret_figure(result: dict):
    """Horizontal bars: each selector's regret on one comparison (label-using selectors hatched), best first."""
    rows = sorted(result["selectors"], key=lambda r: r["regret"])
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.28 * len(rows)), layout="constrained")
    names = [r["name"] + (" (E)" if r["timestep"] is None else f" (t={r['timestep']})") for r in rows]
    bars = ax.barh(names, [r["regret"] for r in rows], xerr=interval_errors(rows, "regret", "regret_ci"),
                   error_kw={"elinewidth": 1, "capsize": 2},
                   color=["tab:red" if r["name"] == "hfr" else "tab:gray" for r in rows])
    ax.axvline(0, color="black", linewidth=0.8)
    for bar, r in zip(bars, rows):
        if r["uses_labels"]:
            bar.set_hatch("//")
    ax.invert_yaxis()
    ax.set_xlabel(f"regret ({result['metric']} points; {result['splits']['test']} split)")
    ax.set_title(f"{result['task']}/{result['dataset']} ({result['preset']}): regret per selector, 95% interval "
                 f"(hatched: uses labels)", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return fig


def leaderboard_figure(board: dict):
    """Mean regret per selector (bars) with the worst regret marked, over the leaderboard's comparisons."""
    rows = board["selectors"]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.28 * len(rows)), layout="constrained")
    names = [f"{r['name']} ({r['tied']}/{r['datasets']} tied)" if "tied" in r else r["name"] for r in rows]
    ax.barh(names, [r["mean_regret"] for r in rows], xerr=interval_errors(rows, "mean_regret", "mean_regret_ci"),
            error_kw={"elinewidth": 1, "capsize": 2},
            color=["tab:red" if r["name"] == "hfr" else "tab:gray" for r in rows], label="mean regret, 95% interval")
    ax.plot([r["worst_regret"] for r in rows], names, "k|", markersize=10, label="worst regret")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("regret (points of each task's metric)")
    ax.set_title(f"selectors over {len(board['comparisons'])} comparisons (preset {board['preset']})", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def interval_errors(rows: list[dict], value: str, interval: str):
    """Matplotlib's ``xerr`` ``[2, n]`` (distances below and above) of each row's ``interval`` around its
    ``value``; None when the rows carry no intervals."""
    if not rows or not all(r.get(interval) for r in rows):
        return None
    return [[max(0.0, r[value] - r[interval][0]) for r in rows], [max(0.0, r[interval][1] - r[value]) for r in rows]]


def frontier_figure(points: list[dict], front: list[dict], title: str, xlabel: str):
    """Cost against regret: ``points`` ``[{"name", "kind", "cost", "regret", "ci"}]`` (selectors as circles,
    searches as squares, the exhaustive search as a star), each regret with its interval, x on a log scale,
    and the Pareto ``front`` as a step line."""
    fig, ax = plt.subplots(figsize=(8, 5.5), layout="constrained")
    style = {"selector": ("o", "tab:blue"), "search": ("s", "tab:orange"), "exhaustive": ("*", "tab:green")}
    for kind, (marker, colour) in style.items():
        rows = [p for p in points if p["kind"] == kind]
        if not rows:
            continue
        errors = [[max(0.0, p["regret"] - p["ci"][0]) if p.get("ci") else 0.0 for p in rows],
                  [max(0.0, p["ci"][1] - p["regret"]) if p.get("ci") else 0.0 for p in rows]]
        ax.errorbar([p["cost"] for p in rows], [p["regret"] for p in rows], yerr=errors, fmt=marker, color=colour,
                    markersize=10 if kind == "exhaustive" else 5, capsize=2, linewidth=0.8, label=kind)
    names: dict[tuple, list[str]] = {}  # one label per spot: points at the same cost and regret share it
    for p in points:
        names.setdefault((p["cost"], p["regret"]), []).append(p["name"])
    for (cost, regret), named in names.items():
        ax.annotate(", ".join(named), (cost, regret), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if front:  # a step line from the cheapest point of the front to the most expensive point of all
        right = max(p["cost"] for p in points)
        ax.step([p["cost"] for p in front] + [right], [p["regret"] for p in front] + [front[-1]["regret"]],
                where="post", color="k", linewidth=1, linestyle="--", label="Pareto front")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("regret (points) [95% CI]")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def palette(num_classes: int):
    """A fixed palette ``uint8 [K + 1, 3]`` (ADE20K's when it has enough colours; the last row: ignore)."""
    import numpy as np

    from aselect_bench.data.ade20k import PALETTE

    colours = np.array(PALETTE[:num_classes] if num_classes <= len(PALETTE) else
                       np.random.default_rng(0).integers(0, 255, (num_classes, 3)), dtype=np.uint8)
    return np.concatenate([colours, np.zeros((1, 3), np.uint8)])


def segmentation_overlay(samples, num_classes: int = 150):
    """Rows of image | ground truth | prediction for ``[(image [3, h, w] in [-1, 1], mask [H, W], pred [H, W])]``.

    Returns ``uint8 [rows * H, 3 * W, 3]`` (ignored pixels black).
    """
    import numpy as np
    import torch.nn.functional as F

    colours = palette(num_classes)
    rows = []
    for image, mask, pred in samples:
        h, w = mask.shape
        img = F.interpolate(image[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        img = ((img.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy().astype(np.uint8)

        def paint(labels):
            labels = labels.numpy().copy()
            labels[(labels < 0) | (labels >= num_classes)] = num_classes
            return colours[labels]

        rows.append(np.concatenate([img, paint(mask), paint(pred)], axis=1))
    return np.concatenate(rows, axis=0)


def components_heatmap(r: dict):
    """Blocks x components heatmaps of validation top-1 and HFR; best (star) and authors' (circle) taps."""
    import numpy as np

    blocks, comps = r["blocks"], r["components"]
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 1.1 * len(comps) * 2, 1.2 + 0.45 * len(blocks)), layout="constrained")
    for ax, key, title in zip(axes, ("val_top1", "hfr"), ("validation top-1 (%)", "HFR at the tap's timestep")):
        data = np.array([[r["grid"][f"blocks.{b}.{c}"][key] for c in comps] for b in blocks])
        im = ax.imshow(data, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(comps)), comps, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(blocks)), [f"block {b}" for b in blocks], fontsize=8)
        for i in range(len(blocks)):
            for j in range(len(comps)):
                ax.text(j, i, f"{data[i, j]:.1f}" if key == "val_top1" else f"{data[i, j]:.2f}", ha="center",
                        va="center", fontsize=6, color="white")
        for tap, marker in ((r["best_tap"], "*"), (r["authors_tap"], "o")):
            if tap in r["grid"]:
                b, c = int(tap.split(".")[1]), tap.split(".")[2]
                ax.plot(comps.index(c), blocks.index(b), marker, markersize=14, markerfacecolor="none",
                        markeredgecolor="red", markeredgewidth=2)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{r['dataset']} / {r['preset']}: star = best, circle = authors' pick", fontsize=9)
    return fig


def ladder_figure(ladder: dict):
    """A known-answer ladder: the exhaustive best timestep against the corruption level (its tie set as a band),
    the matched-timestep curve, and each selector's and search's pick (offset a little sideways to stay visible;
    selectors or searches with the same picks at every level share one line, searches dashed). The timestep axis
    is linear up to 100 and logarithmic above, where the grids are sparse."""
    levels = ladder["levels"]
    xs = [lv["level"] for lv in levels]
    ties = [lv["exhaustive"].get("tied_with_best") or [lv["exhaustive"]["best_timestep"]] for lv in levels]
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    ax.fill_between(xs, [min(t) for t in ties], [max(t) for t in ties], color="tab:green", alpha=0.15,
                    label="tied with the best (95%)")
    ax.plot(xs, [lv["exhaustive"]["best_timestep"] for lv in levels], "o-", color="tab:green", linewidth=2,
            label="exhaustive best")
    if all(lv["matched_timestep"] is not None for lv in levels):
        ax.plot(xs, [lv["matched_timestep"] for lv in levels], "k--", label="matched timestep")
    searches = {r["name"] for lv in levels for r in lv.get("searches", [])}
    same: dict[tuple, list[str]] = {}
    for name, t in ladder["tracking"].items():
        same.setdefault(tuple(t["picks"]), []).append(name)
    width = (max(xs) - min(xs) or 1) * 0.012
    for i, (picks, names) in enumerate(same.items()):
        shown = [(x + (i - len(same) / 2) * width, p) for x, p in zip(xs, picks) if p is not None]
        if not shown:
            continue
        star = "hfr" in names
        ax.plot(*zip(*shown), marker="*" if star else "x", linestyle="--" if names[0] in searches else ":",
                linewidth=0.8, markersize=10 if star else 5, color="tab:red" if star else None,
                label=textwrap.fill(" = ".join(names), 48, subsequent_indent="  ", break_on_hyphens=False))
    ax.set_yscale("symlog", linthresh=100)
    ax.set_yticks(sorted(set(ladder["candidates"])))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"{ladder['kind']} level ({ladder['level_scale']})")
    ax.set_ylabel("timestep t (0 = the clean end)")
    ax.set_title(f"{ladder['task']}/{ladder['dataset']} ({ladder['preset']}): does the pick follow the best?",
                 fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
