"""Exhaustive search vs A-SelecT on the same candidate grid, data, seeds, head and schedule.

- exhaustive: train + validate a head at every candidate, take the best validation metric, test there;
- A-SelecT: the HFR scan, then one training at the chosen timestep, tested;
- fused exhaustive (optional, classification): one data loop with one head per candidate;
- HFR variants (ablation): other HFR settings scanned on the same images, scored on the shared curve.

Every finished piece is written atomically under a folder keyed by a fingerprint of the configuration,
so an interrupted comparison resumes without recomputing anything, and a changed configuration never
reuses stale results. Costs: wall seconds and ``forwards`` (images passed through the backbone).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

from aselect_bench.hfr import MODES, scan_hfr_variants, summarize_scan
from aselect_bench.io import atomic_write_json, read_json


def fingerprint(obj) -> str:
    """A short stable hash of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman rank correlation, ``None`` when undefined (fewer than 3 points or a constant series)."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    value = float(spearmanr(xs, ys).statistic)
    return None if math.isnan(value) else value


class Store:
    """Finished pieces of one comparison as JSON files under ``root`` (atomic writes, resumable)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def get_or_run(self, name: str, fn):
        path = self.root / f"{name}.json"
        if path.exists():
            return read_json(path), True
        value = fn()
        atomic_write_json(path, value)
        return value, False


def variant_grid() -> dict[str, dict]:
    """The ablation: mode x remove_mean x noise_draws (1, 8) at the paper's cutoff 0.15."""
    grid = {}
    for draws in (1, 8):
        for mode in MODES:
            for remove_mean in (False, True):
                name = f"{mode}{'-demean' if remove_mean else ''}-K{draws}"
                grid[name] = dict(cutoff=0.15, mode=mode, remove_mean=remove_mean, noise_draws=draws)
    return grid


def run_comparison(exp, candidates, out_dir="results/compare", state_root="runs/compare", runs_dir="runs",
                   variants: bool = True, fused: bool = False, only=None, progress: bool = True) -> dict | None:
    """Run (or resume) the comparison for experiment ``exp`` (see :mod:`aselect_bench.experiments`).

    ``only``: train just these candidates of the exhaustive sweep and stop (split a sweep over jobs,
    e.g. a SLURM array; a later run without ``only`` merges). Returns the comparison dict (or None).
    """
    candidates = [int(t) for t in candidates]
    config = dict(exp.describe(), hfr=exp.preset["hfr"])
    config.pop("candidates", None)
    fp = fingerprint(config)
    label = f"{exp.task}-{exp.dataset}-{exp.preset['name']}"
    store = Store(Path(state_root) / label / fp)
    atomic_write_json(store.root / "config.json", config)
    with private_feature_cache(store.root / "features"):  # costs measured from cold, not helped by other runs
        return _compare(exp, candidates, store, fp, runs_dir, label, variants, fused, only, progress)


@contextmanager
def private_feature_cache(folder: Path):
    """Point the feature cache at ``folder`` for the duration (restored afterwards)."""
    old = os.environ.get("ASELECT_FEATURE_CACHE")
    os.environ["ASELECT_FEATURE_CACHE"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ASELECT_FEATURE_CACHE", None)
        else:
            os.environ["ASELECT_FEATURE_CACHE"] = old


def _compare(exp, candidates, store, fp, runs_dir, label, variants, fused, only, progress):
    """The body of :func:`run_comparison`, inside its private feature cache."""
    log_root = Path(runs_dir) / "compare" / label

    def train(t: int, name: str):
        run = exp.fit(timestep=t, log_dir=log_root, name=name, progress=progress)
        return {"val": run.val, "test": run.test, "seconds": run.seconds, "forwards": run.forwards}

    per_timestep, reused = {}, 0
    for t in (only or candidates):
        print(f"exhaustive: t={t}")
        per_timestep[str(t)], was_reused = store.get_or_run(f"exhaustive/t{t:04d}", lambda t=t: train(t, f"exhaustive-t{t}"))
        reused += was_reused
    if only:
        print(f"trained {len(only) - reused} candidate(s), reused {reused}; state in {store.root}")
        return None

    scan, _ = store.get_or_run("aselect/scan", lambda: _scan(exp, candidates, {"hfr": exp.hfr_settings()},
                                                             exp.preset["hfr"]["noise_draws"], progress)["hfr"])
    chosen = scan["timestep"]
    with private_feature_cache(store.root / "features-aselect"):  # A-SelecT pays for its own features
        aselect_train, _ = store.get_or_run("aselect/train", lambda: train(chosen, f"aselect-t{chosen}"))
    best_t = max(candidates, key=lambda t: per_timestep[str(t)]["val"])
    exhaustive = {
        "per_timestep": per_timestep, "best_timestep": best_t, "test_at_best": per_timestep[str(best_t)]["test"],
        "seconds": sum(r["seconds"] for r in per_timestep.values()),
        "forwards": sum(r["forwards"] for r in per_timestep.values()),
    }
    aselect = {
        "timestep": chosen, "val": aselect_train["val"], "test": aselect_train["test"],
        "seconds": scan["seconds"] + aselect_train["seconds"], "forwards": scan["forwards"] + aselect_train["forwards"],
        "stages": {"scan": {"seconds": scan["seconds"], "forwards": scan["forwards"]},
                   "train": {"seconds": aselect_train["seconds"], "forwards": aselect_train["forwards"]}},
    }
    hfr = scan["hfr"]
    result = {
        "task": exp.task, "dataset": exp.dataset, "preset": exp.preset["name"], "metric": exp.metric_name,
        "backbone": exp.backbone.name, "tap": exp.hfr_tap, "candidates": candidates, "hfr": hfr,
        "exhaustive": exhaustive, "aselect": aselect,
        "saving_seconds": exhaustive["seconds"] / aselect["seconds"],
        "saving_forwards": exhaustive["forwards"] / aselect["forwards"],
        "ideal_saving": len(candidates),
        "scan_share_of_one_training": scan["seconds"] / aselect_train["seconds"],
        "regret": exhaustive["test_at_best"] - aselect["test"],
        "spearman_hfr_val": spearman([hfr[str(t)] for t in candidates], [per_timestep[str(t)]["val"] for t in candidates]),
        "fingerprint": fp,
    }
    if fused and exp.supports_fused:
        with private_feature_cache(store.root / "features-fused"):
            result["fused_exhaustive"], _ = store.get_or_run("fused", lambda: exp.fit_fused(candidates, log_root,
                                                                                            progress))
    if variants:
        result["variants"] = _variants(exp, store, candidates, per_timestep, exhaustive, progress)
    return result


def _scan(exp, candidates, variants: dict, noise_draws: int, progress: bool) -> dict:
    """One timed scan reading several HFR variants: ``{variant: selection json}``."""
    images = exp.calibration_images()
    per_variant, seconds, forwards = scan_hfr_variants(
        exp.backbone, images, candidates, [exp.hfr_tap], variants, noise_draws=noise_draws,
        seed=exp.preset["seed"], progress=progress)
    return {name: summarize_scan(per_image[exp.hfr_tap], exp.hfr_tap, seconds, forwards,
                                 {**variants[name], "noise_draws": noise_draws}).to_json()
            for name, per_image in per_variant.items()}


def _variants(exp, store, candidates, per_timestep, exhaustive, progress) -> dict:
    """Each HFR variant's choice scored on the shared exhaustive curve (no extra training)."""
    grid = variant_grid()
    out = {}
    for draws in sorted({v["noise_draws"] for v in grid.values()}):
        group = {name: {k: v for k, v in s.items() if k != "noise_draws"}
                 for name, s in grid.items() if s["noise_draws"] == draws}
        scans, _ = store.get_or_run(f"variants/K{draws}", lambda group=group, draws=draws: _scan(
            exp, candidates, group, draws, progress))
        for name, scan in scans.items():
            t = scan["timestep"]
            curve = [scan["hfr"][str(c)] for c in candidates]
            out[name] = {**grid[name], "timestep": t, "val": per_timestep[str(t)]["val"],
                         "test": per_timestep[str(t)]["test"], "regret": exhaustive["test_at_best"] - per_timestep[str(t)]["test"],
                         "spearman_hfr_val": spearman(curve, [per_timestep[str(c)]["val"] for c in candidates]),
                         "scan_seconds": scan["seconds"], "scan_forwards": scan["forwards"], "hfr": scan["hfr"]}
    return out


def write_comparison(result: dict, out_dir="results/compare", tensorboard_dir=None) -> Path:
    """``<task>-<dataset>-<preset>.json``, ``.md`` and ``.png`` (atomic), and the same in TensorBoard."""
    from aselect_bench.io import atomic_write_text
    from aselect_bench.plots import comparison_figure, cost_figure, save_figure

    stem = Path(out_dir) / f"{result['task']}-{result['dataset']}-{result['preset']}"
    atomic_write_json(stem.with_suffix(".json"), result)
    atomic_write_text(stem.with_suffix(".md"), comparison_markdown(result))
    save_figure(comparison_figure(result), stem.with_suffix(".png"))
    if tensorboard_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(Path(tensorboard_dir) / "comparison")) as writer:
            for t in result["candidates"]:
                row = result["exhaustive"]["per_timestep"][str(t)]
                writer.add_scalar(f"compare/val_{result['metric']}", row["val"], global_step=t)
                writer.add_scalar(f"compare/test_{result['metric']}", row["test"], global_step=t)
                writer.add_scalar("compare/hfr", result["hfr"][str(t)], global_step=t)
            writer.add_figure("compare/curves", comparison_figure(result))
            writer.add_figure("compare/cost", cost_figure(result))
            writer.add_scalar("compare/saving_seconds", result["saving_seconds"])
            writer.add_scalar("compare/saving_forwards", result["saving_forwards"])
            writer.add_scalar("compare/regret", result["regret"])
    return stem


def comparison_markdown(result: dict) -> str:
    """The comparison as Markdown: summary, cost, per-timestep table, and the HFR variants."""
    from aselect_bench.reports import markdown_table

    m, ex, a = result["metric"], result["exhaustive"], result["aselect"]
    rho = result["spearman_hfr_val"]
    lines = [
        f"# Exhaustive search vs A-SelecT: {result['task']} / {result['dataset']} / preset `{result['preset']}`\n",
        f"Backbone `{result['backbone']}`, HFR tap `{result['tap']}`, {len(result['candidates'])} candidate "
        f"timesteps. Metric: {m} in percent.\n",
        markdown_table(["strategy", "timestep", f"val {m}", f"test {m}", "seconds", "forwards"], [
            ["exhaustive (best val)", ex["best_timestep"], ex["per_timestep"][str(ex["best_timestep"])]["val"],
             ex["test_at_best"], ex["seconds"], ex["forwards"]],
            ["A-SelecT (scan + 1 training)", a["timestep"], a["val"], a["test"], a["seconds"], a["forwards"]],
        ] + ([["fused exhaustive (1 loop, 1 head per t)", result["fused_exhaustive"]["best_timestep"], None,
               result["fused_exhaustive"]["test_at_best"], result["fused_exhaustive"]["seconds"],
               result["fused_exhaustive"]["forwards"]]] if "fused_exhaustive" in result else [])),
        f"\n- saving: **{result['saving_seconds']:.2f}x** wall time, **{result['saving_forwards']:.2f}x** forwards "
        f"(ideal: {result['ideal_saving']}x, the number of candidates)",
        f"- A-SelecT stages: scan {a['stages']['scan']['seconds']:.1f}s / {a['stages']['scan']['forwards']} forwards, "
        f"training {a['stages']['train']['seconds']:.1f}s / {a['stages']['train']['forwards']} forwards "
        f"(scan = {100 * result['scan_share_of_one_training']:.1f}% of one training)",
        f"- regret (exhaustive test at best - A-SelecT test): **{result['regret']:.2f}** points",
        f"- Spearman(HFR, val {m}) over the grid: **{'n/a' if rho is None else f'{rho:.3f}'}**\n",
        "## Per timestep\n",
        markdown_table(["timestep", "mean HFR", f"val {m}", f"test {m}", "seconds", "forwards"], [
            [int(t), result["hfr"][str(t)], ex["per_timestep"][str(t)]["val"], ex["per_timestep"][str(t)]["test"],
             ex["per_timestep"][str(t)]["seconds"], ex["per_timestep"][str(t)]["forwards"]]
            for t in result["candidates"]]),
    ]
    if "variants" in result:
        lines += ["\n## HFR variants (ablation; scored on the exhaustive curve above)\n",
                  markdown_table(["variant", "mode", "remove_mean", "noise_draws", "timestep", f"test {m}",
                                  "regret", "Spearman(HFR, val)"], [
                      [name, v["mode"], v["remove_mean"], v["noise_draws"], v["timestep"], v["test"], v["regret"],
                       v["spearman_hfr_val"]] for name, v in result["variants"].items()])]
    return "\n".join(lines) + "\n"
