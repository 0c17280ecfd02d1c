"""How A-SelecT behaves as the demo DiT learns: the cub comparison at each kept pretraining checkpoint.

``aselect-bench pretrain`` keeps checkpoints at 1/8, 1/4 and 1/2 of the demo recipe's steps
(``$ASELECT_CACHE/demo-dit-checkpoints/<recipe fingerprint>/step-NNNNN/``); the end is the shipped model. For
each, this runs the FGVC cub-stand-in comparison of ``aselect-bench compare`` (exhaustive search vs the HFR
choice, preset ``demo``, no HFR-variant ablation) and tabulates: exhaustive best (chosen on val, test reported),
the HFR choice and its bootstrap support, regret and Spearman(HFR, val top-1) across the 21 candidates. The end
point runs as plain ``make compare-exhaustive`` does, so it resumes that run's finished candidates. Finished
candidates are kept (``--state``): an interrupted run resumes. Writes ``results/demo/checkpoints/step-NNNNN.json`` (each
comparison in full) and ``results/demo/checkpoints.json`` / ``.md``; ``pretrain_demo.py`` puts the table
into ``results/demo/pretrain.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from aselect_bench.analyses.compare import run_comparison
from aselect_bench.backbones.registry import DEMO_FOLDER
from aselect_bench.experiments import build_experiment, preset_backbone
from aselect_bench.io import atomic_write_json
from aselect_bench.pretrain import checkpoint_folder
from aselect_bench.reports import markdown_table, run_header, write_report
from aselect_bench.settings import load_bench_preset

COLUMNS = ["step", "samples", "fixed-draw loss", "exhaustive best t (val)", "exhaustive test", "HFR t",
           "HFR support", "A-SelecT test", "regret", "Spearman(HFR, val)"]


def kept_checkpoints(root: Path) -> list[tuple[int, Path, dict]]:
    """``[(step, folder, card)]``: the checkpoints kept under ``root``, in step order."""
    points = [(card["step"], folder, card) for folder in root.glob("step-*")
              for card in [json.loads((folder / "card.json").read_text())]]
    return sorted(points, key=lambda p: p[0])


def checkpoints(root: Path) -> list[tuple[int, Path, dict]]:
    """The kept checkpoints under ``root``, then the shipped end model (all of one recipe)."""
    points = kept_checkpoints(root)
    end = json.loads((DEMO_FOLDER / "card.json").read_text())
    if not points:
        raise SystemExit(f"no checkpoints in {root}: the shipped model comes without them. Rebuild them with "
                         "`aselect-bench pretrain --out /tmp/demo-dit --force` (the demo recipe keeps them there; "
                         f"{end['steps']} steps, see the duration it prints) or pass --checkpoints FOLDER")
    if points[0][2]["checkpoint_of"] != end["recipe_fingerprint"]:
        raise SystemExit(f"{root} holds checkpoints of recipe {points[0][2]['checkpoint_of']}, but the shipped "
                         f"model is recipe {end['recipe_fingerprint']}: pass --checkpoints for the shipped recipe")
    return points + [(end["steps"], DEMO_FOLDER, end)]


def compare_at(folder: Path, is_end: bool, state: str, runs: str) -> dict:
    """The cub comparison of preset ``demo`` with the backbone in ``folder`` (the preset's own at the end): what
    ``aselect-bench compare [--backbone FOLDER] --no-variants`` runs, at the preset's precision."""
    preset = load_bench_preset("demo")
    if not is_end:
        preset = preset.override(backbone=str(folder))
    exp = build_experiment("fgvc", "cub", preset, preset_backbone(preset, "fgvc"))
    return run_comparison(exp, state_root=state, runs_dir=runs, selectors=False)


def row(step: int, card: dict, result: dict) -> dict:
    """One checkpoint's line of the study (a checkpoint's card holds its fixed-draw loss, the end's a pair)."""
    ex, a, fixed = result["exhaustive"], result["aselect"], card["fixed_draw_loss"]
    return {"step": step, "samples": step * card["recipe"]["batch_size"],
            "fixed_draw_loss": fixed["after"] if isinstance(fixed, dict) else fixed,
            "exhaustive_t": ex["best_timestep"], "exhaustive_test": ex["test_at_best"], "hfr_t": a["timestep"],
            "support": a.get("support"), "aselect_test": a["test"], "regret": result["regret"],
            "spearman_hfr_val": result["spearman_hfr_val"], "weights_sha256": card["weights_sha256"]}


def markdown_rows(study: dict) -> str:
    """The study's table (also embedded in ``results/demo/pretrain.md``)."""
    rows = [[r["step"], r["samples"], r["fixed_draw_loss"], r["exhaustive_t"], r["exhaustive_test"], r["hfr_t"],
             "-" if r["support"] is None else f"{100 * r['support']:.0f}%", r["aselect_test"], r["regret"],
             r["spearman_hfr_val"]] for r in study["rows"]]
    return markdown_table(COLUMNS, rows, floatfmt="{:.3f}")


def markdown(study: dict) -> str:
    return "\n".join([
        "# A-SelecT along the demo DiT's pretraining (cub stand-in)\n",
        run_header(study["run"]),
        f"Each row: the comparison of `aselect-bench compare` (preset `demo`, tap `{study['tap']}`, "
        f"{study['num_candidates']} candidates; timestep and epoch chosen on val, test reported) with the "
        "checkpoint's weights. The last row is the shipped model. Fixed-draw loss: the DDPM loss on 256 fixed "
        "crops, timesteps and noise draws. Only the accuracies are compared here: a checkpoint's comparison may "
        "run while the pretraining goes on, so its seconds (in `checkpoints/step-*.json`) are not a cost measurement; "
        "the cost is measured alone in `results/compare/fgvc-cub-demo.md`.\n",
        markdown_rows(study),
    ])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=None, help="folder of step-NNNNN checkpoints (default: the demo "
                        "recipe's, $ASELECT_CACHE/demo-dit-checkpoints/<fingerprint>)")
    parser.add_argument("--out", default="results/demo", help="results folder")
    parser.add_argument("--state", default="runs/compare", help="where finished candidates are kept for resuming")
    parser.add_argument("--runs", default="runs", help="TensorBoard log folder")
    parser.add_argument("--only", default=None, help="compare only the checkpoints of these steps (e.g. 300,600) "
                        "and stop: a later run without --only resumes them and writes the table")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = Path(args.checkpoints) if args.checkpoints else checkpoint_folder()
    if args.only:  # kept checkpoints only: usable while the pretraining is still running
        steps = {int(s) for s in args.only.split(",")}
        points = [p for p in kept_checkpoints(root) if p[0] in steps]
    else:
        points = checkpoints(root)
    rows, result = [], None
    for step, folder, card in points:
        is_end = folder == DEMO_FOLDER
        print(f"checkpoint study: step {step} ({'the shipped model' if is_end else folder})", flush=True)
        result = compare_at(folder, is_end, args.state, args.runs)
        # the full comparison as JSON only: its seconds are not a cost measurement (see markdown())
        atomic_write_json(Path(args.out) / "checkpoints" / f"step-{step:05d}.json", result)
        rows.append(row(step, card, result))
    if args.only:
        return {"rows": rows}
    study = {"rows": rows, "tap": result["tap"], "num_candidates": len(result["candidates"]),
             "run": result["run"], "seconds": time.perf_counter() - start}
    text = markdown(study)
    write_report(args.out, "checkpoints", study, text)
    print(text)
    return study


if __name__ == "__main__":
    main()
