"""Component analysis: probe every (block, component) tap of a grid in one fused run.

One backbone pass per batch and timestep serves every tap; one head per tap trains in the same data
loop; with fixed views the features are cached, so every image goes through the backbone once per
distinct timestep. Each tap's timestep is its own HFR argmax (one scan reads all taps) or a fixed one.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import lightning as L

from aselect_bench.analyses.compare import private_feature_cache, spearman
from aselect_bench.backbones import COMPONENTS, grid_taps
from aselect_bench.experiments.fgvc import fused_probe
from aselect_bench.hfr import scan_hfr, summarize_scan
from aselect_bench.io import cache_dir
from aselect_bench.tasks.fit import DETERMINISTIC
from aselect_bench.tasks.fused import pair_key


@contextmanager
def cold_feature_cache():
    """A private, empty feature cache for the duration (deleted afterwards: a grid's features are large)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="components-", dir=cache_dir()) as folder:
        with private_feature_cache(Path(folder)):
            yield


def default_blocks(num_blocks: int) -> list[int]:
    """Every block of a small model; a spread including block 9 (the authors' choice) for deep ones."""
    if num_blocks <= 12:
        return list(range(num_blocks))
    return sorted({0, 3, 6, 9, 13, 17, 20, 24, num_blocks - 1})


def authors_tap(backbone) -> str:
    from aselect_bench.backbones import PRESETS

    preset = PRESETS.get(backbone.name)
    return "blocks.9.query" if backbone.num_blocks > 9 else (preset.default_tap if preset else "blocks.0.out")


def run_components(exp, blocks=None, components=COMPONENTS, timestep: int | None = None, runs_dir="runs",
                   progress: bool = True, measure_separate: bool = True) -> dict:
    """Probe the grid on ``exp`` (an :class:`~aselect_bench.experiments.FGVCExperiment`); returns the result dict."""
    backbone, preset = exp.backbone, exp.preset
    blocks = list(blocks) if blocks is not None else default_blocks(backbone.num_blocks)
    taps = grid_taps(blocks, components)
    start, forwards0 = time.perf_counter(), backbone.forwards
    candidates = preset["hfr"]["candidates"] if timestep is None else [timestep]
    settings = dict(cutoff=preset["hfr"]["cutoff"], mode=preset["hfr"]["mode"], remove_mean=preset["hfr"]["remove_mean"])
    per_image, scan_seconds, scan_forwards = scan_hfr(
        backbone, exp.calibration_images(), candidates, taps, noise_draws=preset["hfr"]["noise_draws"],
        seed=preset["seed"], progress=progress, **settings)
    scans = {tap: summarize_scan(per_image[tap], tap, scan_seconds, scan_forwards, settings) for tap in taps}
    chosen = {tap: scans[tap].timestep for tap in taps}

    with cold_feature_cache():  # the cost is measured from cold, not helped by earlier runs' features
        L.seed_everything(preset["seed"], workers=True, verbose=False)
        task = fused_probe(preset, backbone, [(tap, chosen[tap]) for tap in taps], exp.datamodule.num_classes)
        log_name = f"{preset['name']}-{exp.dataset}"
        trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=exp.max_epochs, enable_checkpointing=False,
                            logger=L.pytorch.loggers.TensorBoardLogger(str(Path(runs_dir) / "components"),
                                                                       name=log_name),
                            enable_progress_bar=progress, enable_model_summary=False, deterministic=DETERMINISTIC,
                            num_sanity_val_steps=0)
        trainer.fit(task, datamodule=exp.datamodule)
        trainer.test(task, datamodule=exp.datamodule, verbose=False)
    val = task.best_val_top1()
    grid = {tap: {"timestep": chosen[tap], "hfr": scans[tap].curve[chosen[tap]],
                  "val_top1": val[pair_key(tap, chosen[tap])], "test_top1": task.test_top1[pair_key(tap, chosen[tap])]}
            for tap in taps}
    result = {
        "preset": preset["name"], "dataset": exp.dataset, "backbone": backbone.name, "blocks": blocks,
        "components": list(components), "timestep_mode": "hfr per tap" if timestep is None else f"fixed {timestep}",
        "fixed_timestep": timestep,
        "candidates": candidates, "grid": grid,
        "best_tap": max(taps, key=lambda t: grid[t]["val_top1"]), "authors_tap": authors_tap(backbone),
        "spearman_hfr_val": spearman([grid[t]["hfr"] for t in taps], [grid[t]["val_top1"] for t in taps]),
        "forwards": backbone.forwards - forwards0, "scan_forwards": scan_forwards,
        "seconds": time.perf_counter() - start, "distinct_timesteps": len(set(chosen.values())),
        "hfr_curves": {tap: {str(t): v for t, v in scans[tap].curve.items()} for tap in taps},
    }
    if measure_separate:  # one separate probe run, measured, times the number of taps
        ref_tap = result["authors_tap"] if result["authors_tap"] in grid else taps[0]
        before = backbone.forwards
        with cold_feature_cache():  # not served by the fused run's cached features
            run = exp.fit(chosen[ref_tap], Path(runs_dir) / "components", f"{log_name}-separate", progress=progress,
                          tap=ref_tap)
        result["one_separate_run"] = {"tap": ref_tap, "forwards": backbone.forwards - before, "seconds": run.seconds,
                                      "val_top1": run.val, "test_top1": run.test}
        result["separate_forwards"] = result["one_separate_run"]["forwards"] * len(taps)
    return result


def components_markdown(r: dict) -> str:
    from aselect_bench.reports import markdown_table

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
    from aselect_bench.io import atomic_write_json, atomic_write_text
    from aselect_bench.plots import components_heatmap, save_figure

    fixed = r.get("fixed_timestep")
    stem = Path(out_dir) / f"{r['preset']}-{r['dataset']}{'' if fixed is None else f'-t{fixed}'}"
    atomic_write_json(stem.with_suffix(".json"), r)
    atomic_write_text(stem.with_suffix(".md"), components_markdown(r))
    save_figure(components_heatmap(r), stem.with_suffix(".png"))
    if tensorboard_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(tensorboard_dir)) as writer:
            writer.add_figure("components/heatmap", components_heatmap(r))
            for tap, row in r["grid"].items():
                writer.add_scalar(f"components/val_top1/{tap}", row["val_top1"])
                writer.add_scalar(f"components/hfr/{tap}", row["hfr"])
    return stem
