"""Exhaustive search vs A-SelecT on the same candidate grid, data, seeds, head and schedule.

- exhaustive: train + validate a head at every candidate, take the best validation metric, test there;
- A-SelecT: the HFR scan, then one training at the chosen timestep, tested;
- fused exhaustive (optional, classification): one data loop with one head per candidate;
- HFR variants (ablation): other HFR settings scanned on the same images, scored on the shared curve.

Every finished piece is written atomically under a folder keyed by a fingerprint of everything that
changes it (the preset with its overrides and candidate grid, the backbone's weights and precision, the
data), so an interrupted comparison resumes without recomputing anything and a changed configuration never
reuses stale results. Costs (:mod:`aselect_bench.costs`): wall seconds and ``forwards`` (images passed
through the backbone). Each strategy trains from its own cold feature cache. Timesteps are ``int`` keys in
memory.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from aselect_bench.costs import Cost, cost_across_attempts
from aselect_bench.errors import UserError
from aselect_bench.experiments.base import exhaustive_summary
from aselect_bench.hfr import DEFAULTS, MODES, scan_hfr_variants, summarize_scan
from aselect_bench.io import atomic_write_json, read_json
from aselect_bench.reports import run_record


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


def int_keys(mapping: dict) -> dict:
    """``{"50": v}`` (as JSON stores timesteps) -> ``{50: v}``."""
    return {int(k): v for k, v in mapping.items()}


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
        return json.loads(json.dumps(value)), False  # the same form a resumed run reads back


def variant_grid() -> dict[str, dict]:
    """The ablation: mode x remove_mean x noise_draws (1, 8) at the default cutoff."""
    grid = {}
    for draws in (1, 8):
        for mode in MODES:
            for remove_mean in (False, True):
                name = f"{mode}{'-demean' if remove_mean else ''}-K{draws}"
                grid[name] = dict(cutoff=DEFAULTS.cutoff, mode=mode, remove_mean=remove_mean, noise_draws=draws)
    return grid


def check_candidates_to_compare(candidates) -> None:
    """A comparison needs at least two candidate timesteps (with one, both strategies are the same training)."""
    if len(set(candidates)) < 2:
        raise UserError(f"a comparison needs at least 2 candidate timesteps, got {list(candidates)}: with one, "
                        f"exhaustive search and A-SelecT train the same head; give --candidates 0,50,... (or use "
                        f"'aselect-bench select' for a single scan)")


def run_comparison(exp, state_root="runs/compare", runs_dir="runs", variants: bool = True, fused: bool = False,
                   only=None, progress: bool = True) -> dict | None:
    """Run (or resume) the comparison for experiment ``exp`` on its preset's candidate grid (at least two).

    ``only``: train just these candidates of the exhaustive sweep and stop (split a sweep over jobs,
    e.g. a SLURM array; a later run without ``only`` merges). Returns the comparison dict (or None).
    """
    check_candidates_to_compare(exp.preset.hfr.candidates)
    config = exp.describe()
    fp = fingerprint(config)
    label = f"{exp.task}-{exp.dataset}-{exp.preset.name}"
    store = Store(Path(state_root) / label / fp)
    atomic_write_json(store.root / "config.json", config)
    log_root = Path(runs_dir) / "compare" / label
    candidates = list(exp.preset.hfr.candidates)

    def train(t: int, name: str, cache: str, piece: str):  # each strategy trains from its own cold feature cache
        with cost_across_attempts(store.root / f"{piece}.attempts.json", exp.backbone) as earlier:
            run = exp.fit(timestep=t, log_dir=log_root, name=name, progress=progress,
                          feature_cache_root=store.root / cache)
        # a resumed training reads the features its interrupted attempts cached: count what those cost too
        return {"val": run.val, "test": run.test, "seconds": run.seconds + earlier.cost.seconds,
                "forwards": run.forwards + earlier.cost.forwards, **earlier.to_json()}

    per_timestep, reused = {}, 0
    for t in (only or candidates):
        print(f"exhaustive: t={t}")
        piece = f"exhaustive/t{t:04d}"
        per_timestep[t], was_reused = store.get_or_run(piece, lambda t=t, piece=piece: train(
            t, f"exhaustive-t{t}", "features", piece))
        reused += was_reused
    if only:
        print(f"trained {len(only) - reused} candidate(s), reused {reused}; state in {store.root}")
        return None

    scan, _ = store.get_or_run("aselect/scan", lambda: _scan(exp, {"hfr": exp.preset.hfr.band()},
                                                             exp.preset.hfr.noise_draws, progress)["hfr"])
    chosen = scan["timestep"]
    aselect_train, _ = store.get_or_run("aselect/train", lambda: train(chosen, f"aselect-t{chosen}", "features-aselect",
                                                                       "aselect/train"))
    exhaustive = exhaustive_summary(per_timestep)
    stages = {"scan": Cost(scan["seconds"], scan["forwards"]),
              "train": Cost(aselect_train["seconds"], aselect_train["forwards"])}
    total = stages["scan"] + stages["train"]
    aselect = {"timestep": chosen, "val": aselect_train["val"], "test": aselect_train["test"], **total.to_json(),
               "stages": {name: cost.to_json() for name, cost in stages.items()},
               **{k: scan[k] for k in ("support", "runner_up", "margin") if k in scan}}
    hfr = int_keys(scan["hfr"])
    result = {
        "task": exp.task, "dataset": exp.dataset, "preset": exp.preset.name, "metric": exp.metric_name,
        "splits": exp.split_names(), "backbone": exp.backbone.name, "tap": exp.hfr_tap, "candidates": candidates,
        "hfr": hfr, "exhaustive": exhaustive, "aselect": aselect,
        "saving_seconds": exhaustive["seconds"] / aselect["seconds"],
        "saving_forwards": exhaustive["forwards"] / aselect["forwards"],
        "ideal_saving": len(candidates),
        "scan_share_of_one_training": scan["seconds"] / aselect_train["seconds"],
        "regret": exhaustive["test_at_best"] - aselect["test"],
        "spearman_hfr_val": spearman([hfr[t] for t in candidates], [per_timestep[t]["val"] for t in candidates]),
        "test_checkpoint": exp.test_checkpoint, "hfr_settings": exp.preset.hfr.to_json(), "fingerprint": fp, "run": run_record(exp.preset, exp.backbone),
        "resumed": {name: {k: row[k] for k in ("attempts", "cost_complete")} for name, row in
                    [*((f"exhaustive t={t}", r) for t, r in per_timestep.items()), ("A-SelecT training", aselect_train)]
                    if "attempts" in row},
    }
    if fused and exp.supports_fused:
        fused_result, _ = store.get_or_run("fused", lambda: exp.fit_fused(
            candidates, log_root, progress, feature_cache_root=store.root / "features-fused"))
        result["fused_exhaustive"] = {**fused_result, "per_timestep": int_keys(fused_result["per_timestep"])}
    if variants:
        result["variants"] = _variants(exp, store, candidates, per_timestep, exhaustive, progress)
    return result


def _scan(exp, variants: dict, noise_draws: int, progress: bool) -> dict:
    """One timed scan of the preset's grid reading several HFR variants: ``{variant: selection json}``."""
    images = exp.calibration_images()
    per_variant, seconds, forwards = scan_hfr_variants(
        exp.backbone, images, exp.preset.hfr.candidates, [exp.hfr_tap], variants, noise_draws=noise_draws,
        seed=exp.preset.seed, progress=progress)
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
            exp, group, draws, progress))
        for name, scan in scans.items():
            t, hfr = scan["timestep"], int_keys(scan["hfr"])
            out[name] = {**grid[name], "timestep": t, "val": per_timestep[t]["val"], "test": per_timestep[t]["test"],
                         "regret": exhaustive["test_at_best"] - per_timestep[t]["test"],
                         "spearman_hfr_val": spearman([hfr[c] for c in candidates],
                                                      [per_timestep[c]["val"] for c in candidates]),
                         "scan_seconds": scan["seconds"], "scan_forwards": scan["forwards"], "hfr": hfr,
                         **{k: scan[k] for k in ("support", "runner_up", "margin") if k in scan}}
    return out


def write_comparison(result: dict, out_dir="results/compare", tensorboard_dir=None) -> Path:
    """``<task>-<dataset>-<preset>.json``, ``.md`` and ``.png`` (atomic), and the same in TensorBoard."""
    from aselect_bench.plots import comparison_figure, cost_figure
    from aselect_bench.reports import write_report

    name = f"{result['task']}-{result['dataset']}-{result['preset']}"
    per_t, m = result["exhaustive"]["per_timestep"], result["metric"]
    scalars = {f"compare/val_{m}": {t: per_t[t]["val"] for t in result["candidates"]},
               f"compare/test_{m}": {t: per_t[t]["test"] for t in result["candidates"]},
               "compare/hfr": result["hfr"], **{f"compare/{k}": result[k]
                                               for k in ("saving_seconds", "saving_forwards", "regret")}}
    return write_report(out_dir, name, result, comparison_markdown(result),
                        {f"{name}.png": comparison_figure(result), f"{name}-cost.png": cost_figure(result)},
                        tensorboard_dir=None if tensorboard_dir is None else Path(tensorboard_dir) / "comparison",
                        scalars=scalars)


def resumed_note(resumed: dict) -> str:
    """One line on pieces resumed after an interruption (their costs include the interrupted attempts), or ``""``."""
    if not resumed:
        return ""
    pieces = ", ".join(f"{name} ({r['attempts']} attempts)" for name, r in resumed.items())
    partial = [name for name, r in resumed.items() if not r["cost_complete"]]
    return (f"Resumed after an interruption: {pieces}; their seconds and forwards include the interrupted attempts"
            + (f", except attempts killed outright ({', '.join(partial)}), whose cost was never recorded: those costs "
               f"are lower bounds" if partial else "") + ".\n")


def comparison_markdown(result: dict) -> str:
    """The comparison as Markdown: how it was run, summary, cost, per-timestep table, and the HFR variants."""
    from aselect_bench.reports import markdown_table, run_header

    m, ex, a = result["metric"], result["exhaustive"], result["aselect"]
    val, test = (result["splits"][s] for s in ("val", "test"))
    rho = result["spearman_hfr_val"]
    last = result.get("test_checkpoint") == "last"
    choices, at = ("timestep", ", at the last iteration") if last else ("timestep, epoch", "")
    support = (f"; bootstrap support {100 * a['support']:.0f}% (runner-up t={a['runner_up']}, margin "
               f"{a['margin']:.4f})" if "support" in a else "")
    lines = [
        f"# Exhaustive search vs A-SelecT: {result['task']} / {result['dataset']} / preset `{result['preset']}`\n",
        run_header(result["run"]) if "run" in result else "",
        f"Backbone `{result['backbone']}`, HFR tap `{result['tap']}`, {len(result['candidates'])} candidate "
        f"timesteps. Metric: {m} in percent; every choice ({choices}) is made on the {val} split, the "
        f"{test} split is only reported{at}.\n",
        markdown_table(["strategy", "timestep", f"{val} {m}", f"{test} {m}", "seconds", "forwards"], [
            [f"exhaustive (best {val})", ex["best_timestep"], ex["per_timestep"][ex["best_timestep"]]["val"],
             ex["test_at_best"], ex["seconds"], ex["forwards"]],
            ["A-SelecT (scan + 1 training)", a["timestep"], a["val"], a["test"], a["seconds"], a["forwards"]],
        ] + ([["fused exhaustive (1 loop, 1 head per t)", result["fused_exhaustive"]["best_timestep"], None,
               result["fused_exhaustive"]["test_at_best"], result["fused_exhaustive"]["seconds"],
               result["fused_exhaustive"]["forwards"]]] if "fused_exhaustive" in result else [])),
        f"\n- saving: **{result['saving_seconds']:.2f}x** wall time, **{result['saving_forwards']:.2f}x** forwards "
        f"(ideal: {result['ideal_saving']}x, the number of candidates)",
        f"- A-SelecT stages: scan {a['stages']['scan']['seconds']:.1f}s / {a['stages']['scan']['forwards']} forwards, "
        f"training {a['stages']['train']['seconds']:.1f}s / {a['stages']['train']['forwards']} forwards "
        f"(scan = {100 * result['scan_share_of_one_training']:.1f}% of one training){support}",
        f"- regret (exhaustive {test} at best - A-SelecT {test}): **{result['regret']:.2f}** points",
        f"- Spearman(HFR, {val} {m}) over the grid: **{'n/a' if rho is None else f'{rho:.3f}'}**\n",
        resumed_note(result.get("resumed", {})),
        "## Per timestep\n",
        markdown_table(["timestep", "mean HFR", f"{val} {m}", f"{test} {m}", "seconds", "forwards"], [
            [t, result["hfr"][t], ex["per_timestep"][t]["val"], ex["per_timestep"][t]["test"],
             ex["per_timestep"][t]["seconds"], ex["per_timestep"][t]["forwards"]]
            for t in result["candidates"]]),
    ]
    if "variants" in result:
        lines += ["\n## HFR variants (ablation; scored on the exhaustive curve above)\n",
                  markdown_table(["variant", "mode", "remove_mean", "noise_draws", "timestep", f"{test} {m}",
                                  "regret", f"Spearman(HFR, {val})"], [
                      [name, v["mode"], v["remove_mean"], v["noise_draws"], v["timestep"], v["test"], v["regret"],
                       v["spearman_hfr_val"]] for name, v in result["variants"].items()])]
    return "\n".join(lines) + "\n"
