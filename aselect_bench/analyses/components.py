"""Component analysis: probe every (block, component) tap of a grid in one fused run.

One backbone pass per batch and timestep serves every tap; one head per tap trains in the same data
loop; with fixed views the features are cached, so every image goes through the backbone once per
distinct timestep. Each tap's timestep is its own HFR argmax (one scan reads all taps) or a fixed one.
"""

from __future__ import annotations

from pathlib import Path

from aselect_bench.analyses.compare import spearman
from aselect_bench.backbones import COMPONENTS, grid_taps
from aselect_bench.cache import cold_feature_cache
from aselect_bench.costs import measure_cost
from aselect_bench.experiments.base import best_on_validation
from aselect_bench.reports import run_record, training_logdir
from aselect_bench.selectors import scan_hfr, summarize_scan


def default_blocks(num_blocks: int) -> list[int]:
    """Every block of a small model; a spread including block 9 (the authors' choice) for deep ones."""
    if num_blocks <= 12:
        return list(range(num_blocks))
    return sorted({0, 3, 6, 9, 13, 17, 20, 24, num_blocks - 1})


def authors_tap(backbone) -> str:
    """The authors' pick, ``blocks.9.query``, where the model is that deep; else the backbone's default tap."""
    from aselect_bench.backbones.registry import default_tap

    return "blocks.9.query" if backbone.num_blocks > 9 else default_tap(backbone.name)


def run_components(exp, blocks=None, components=COMPONENTS, timestep: int | None = None, runs_dir="runs",
                   progress: bool = True, measure_separate: bool = True) -> dict:
    """Probe the grid on ``exp`` (an :class:`~aselect_bench.experiments.FGVCExperiment`); returns the result dict."""
    backbone, preset = exp.backbone, exp.preset
    blocks = list(blocks) if blocks is not None else default_blocks(backbone.num_blocks)
    taps = grid_taps(blocks, components)
    candidates = list(preset.hfr.candidates) if timestep is None else [timestep]
    log_dir, log_name = training_logdir(runs_dir, "components"), f"{preset.name}-{exp.dataset}"
    with measure_cost(backbone) as cost:
        per_image, scan_seconds, scan_forwards = scan_hfr(
            backbone, exp.calibration_images(), candidates, taps, noise_draws=preset.hfr.noise_draws,
            seed=preset.seed, progress=progress, **preset.hfr.band())
        scans = {tap: summarize_scan(per_image[tap], tap, scan_seconds, scan_forwards, preset.hfr.band())
                 for tap in taps}
        chosen = {tap: scans[tap].timestep for tap in taps}
        with cold_feature_cache() as features:  # the cost is measured from cold, not helped by earlier runs
            rows, _ = exp.fit_pairs([(tap, chosen[tap]) for tap in taps], log_dir, log_name, progress, features)
    grid = {tap: {"timestep": chosen[tap], "hfr": scans[tap].curve[chosen[tap]],
                  "val_top1": rows[(tap, chosen[tap])]["val"], "test_top1": rows[(tap, chosen[tap])]["test"]}
            for tap in taps}
    result = {
        "preset": preset.name, "dataset": exp.dataset, "splits": exp.split_names(), "backbone": backbone.name,
        "blocks": blocks, "components": list(components),
        "timestep_mode": "hfr per tap" if timestep is None else f"fixed {timestep}", "fixed_timestep": timestep,
        "candidates": candidates, "grid": grid,
        "best_tap": best_on_validation({tap: {"val": row["val_top1"]} for tap, row in grid.items()}),
        "authors_tap": authors_tap(backbone),
        "spearman_hfr_val": spearman([grid[t]["hfr"] for t in taps], [grid[t]["val_top1"] for t in taps]),
        "forwards": cost.forwards, "scan_forwards": scan_forwards, "seconds": cost.seconds,
        "distinct_timesteps": len(set(chosen.values())),
        "hfr_curves": {tap: scans[tap].curve for tap in taps}, "run": run_record(preset, backbone),
    }
    if measure_separate:  # one separate probe run, measured, times the number of taps
        ref_tap = result["authors_tap"] if result["authors_tap"] in grid else taps[0]
        with cold_feature_cache() as features:  # not served by the fused run's cached features
            run = exp.fit(chosen[ref_tap], log_dir, f"{log_name}-separate", progress=progress, tap=ref_tap,
                          feature_cache_root=features)
        result["one_separate_run"] = {"tap": ref_tap, "forwards": run.forwards, "seconds": run.seconds,
                                      "val_top1": run.val, "test_top1": run.test}
        result["separate_forwards"] = result["one_separate_run"]["forwards"] * len(taps)
    return result


def components_markdown(r: dict) -> str:
    from aselect_bench.reports import markdown_table, run_header

    def table(key, fmt):
        rows = []
        for b in r["blocks"]:
            row = [f"block {b}"]
            for c in r["components"]:
                tap = f"blocks.{b}.{c}"
                value = fmt.format(r["grid"][tap][key])
                marks = ("**" if tap == r["best_tap"] else "") + ("_" if tap == r["authors_tap"] else "")
                row.append(f"{marks}{value}{marks[::-1]}")
            rows.append(row)
        return markdown_table(["", *r["components"]], rows)

    rho = r["spearman_hfr_val"]
    lines = [f"# Which block and component: {r['dataset']} / preset `{r['preset']}` ({r['backbone']})\n",
             run_header(r["run"]) if "run" in r else "",
             f"Timestep: {r['timestep_mode']} over {len(r['candidates'])} candidates. **Bold**: the best tap by "
             f"validation top-1 (`{r['best_tap']}`); _italic_: the authors' pick (`{r['authors_tap']}`).\n",
             f"- cost: {r['forwards']} backbone forwards for all {len(r['grid'])} taps (HFR scan included, "
             f"{r['distinct_timesteps']} distinct timesteps)"
             + (f"; one separate probe run costs {r['one_separate_run']['forwards']}, so {len(r['grid'])} separate runs "
                f"would cost {r['separate_forwards']} (**{r['separate_forwards'] / r['forwards']:.1f}x** more)"
                if "separate_forwards" in r else ""),
             f"- Spearman(HFR, val top-1) across taps: **{'n/a' if rho is None else f'{rho:.3f}'}**\n",
             "## Validation top-1 (%)\n", table("val_top1", "{:.1f}"),
             "\n## Test top-1 (%)\n", table("test_top1", "{:.1f}"),
             "\n## HFR at the tap's timestep\n", table("hfr", "{:.3f}"),
             "\n## Timestep per tap\n", table("timestep", "{}")]
    return "\n".join(lines) + "\n"


def write_components(r: dict, out_dir="results/components", tensorboard_dir=None) -> Path:
    """``<preset>-<dataset>[-t<T>].json``, ``.md`` and the heatmap ``.png`` (atomic), and TensorBoard scalars."""
    from aselect_bench.plots import components_heatmap
    from aselect_bench.reports import write_report

    fixed = r.get("fixed_timestep")
    name = f"{r['preset']}-{r['dataset']}{'' if fixed is None else f'-t{fixed}'}"
    scalars = {f"components/{key}/{tap}": row[key] for tap, row in r["grid"].items() for key in ("val_top1", "hfr")}
    return write_report(out_dir, name, r, components_markdown(r), {f"{name}.png": components_heatmap(r)},
                        tensorboard_dir=tensorboard_dir, scalars=scalars)
