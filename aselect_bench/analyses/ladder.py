"""The known-answer ladder: one comparison per level of one corruption kind, and how each selector tracks the best.

An image that already carries Gaussian noise of std ``sigma`` looks, to a pixel-space denoiser, like a sample at
the timestep whose own noise matches it (:func:`~aselect_bench.backbones.noise.matched_timestep`). As ``sigma``
grows the exhaustive best should move up; a selector that reads the data should move with it, a rule that ignores
it (``t0``, ``fixed-100``) cannot. Each level is a full comparison (:class:`~aselect_bench.analyses.compare.Comparison`:
its pieces are resumable jobs of one sweep); this module merges their results into levels and tracking.
"""

from __future__ import annotations

from pathlib import Path

from aselect_bench.analyses.compare import spearman
from aselect_bench.analyses.error_bars import seed_pick
from aselect_bench.uncertainty import mean_interval_over_groups

#: Why a level has no matched timestep, by cause.
NO_MATCH = {
    "kind": "only additive Gaussian noise (gauss) has a counterpart in the noise schedule; {kind} has no known "
            "answer and is reported the same way without one",
    "latent": "backbone {name} works in a VAE's latent space: pixel noise has no exact counterpart there, so no "
              "matched timestep is given",
}
#: Row keys of a selector or search a ladder level keeps (the scores and settings stay in the comparison).
PICK_KEYS = ("name", "timestep", "timesteps", "test", "regret", "regret_ci", "regret_se", "tied_with_best",
             "strictly_worse", "uses_labels", "spearman", "epochs", "cost_fraction", "seconds", "forwards", "reason")


def level_preset(preset, kind: str, level: float):
    """``preset`` with its corruption set to ``kind`` at ``level`` (the preset's own corruption seed, else 0),
    recorded as an override."""
    seed = preset.corruption.seed if preset.corruption is not None else 0
    return preset.override(corruption={"kind": kind, "level": float(level), "seed": seed})


def matched_for(backbone, kind: str) -> tuple[callable | None, str | None]:
    """``(level -> matched timestep, None)`` for ``gauss`` on a pixel-space backbone (its own schedule at its
    native token count), else ``(None, why there is none)``."""
    from aselect_bench.backbones.noise import matched_timestep

    if kind != "gauss":
        return None, NO_MATCH["kind"].format(kind=kind)
    if backbone.vae is not None:
        return None, NO_MATCH["latent"].format(name=backbone.name)
    process = backbone.noise.for_tokens((backbone.image_size // backbone.patch_size) ** 2)
    return (lambda level: matched_timestep(process, level)), None


def _pick(row: dict) -> dict:
    return {k: row[k] for k in PICK_KEYS if k in row}


def level_entry(level: float, matched, comparison: dict) -> dict:
    """One rung: ``{"level", "matched_timestep", "fingerprint", "exhaustive", "aselect", "selectors"[, "searches"]}``
    from the level's comparison (its exhaustive summary with ``tied_with_best``, each pick with its regret
    interval)."""
    entry = {"level": level, "matched_timestep": matched, "fingerprint": comparison["fingerprint"],
             "exhaustive": comparison["exhaustive"],
             "aselect": {k: comparison["aselect"].get(k) for k in ("timestep", "timesteps", "test", "tied_with_best")
                         if k in comparison["aselect"]} | {"regret": comparison["regret"],
                                                           "regret_ci": comparison.get("regret_ci")},
             "selectors": [_pick(r) for r in comparison.get("selectors", [])]}
    if "searches" in comparison:
        entry["searches"] = [_pick(r) for r in comparison["searches"]]
    return entry


def pick_of(row: dict):
    """A row's one timestep: its ``timestep``, else its ``timesteps``' :func:`seed_pick` (None: the random rule)."""
    if row.get("timestep") is not None or not row.get("timesteps"):
        return row.get("timestep")
    return seed_pick(row["timesteps"])


def tracking(levels: list[dict]) -> dict:
    """Per selector and search found at every level: ``{"picks", "spearman" (pick vs exhaustive best over the
    levels), "spearman_matched" (pick vs matched timestep; None without one), "tied_share", "mean_regret",
    "mean_regret_ci" (two-stage bootstrap over levels and images), "levels"}``. Spearman is None when undefined
    (fewer than 3 levels, or a pick or best that never moves, or a level without a pick). ``levels`` counts the
    levels it picked at (a search that cannot pick at a level has no regret there); the shares and means are
    over those (None at none)."""
    bests = [lv["exhaustive"]["best_timestep"] for lv in levels]
    matched = [lv["matched_timestep"] for lv in levels]
    rows: dict[str, list[dict]] = {}
    for lv in levels:
        for row in [*lv["selectors"], *lv.get("searches", [])]:
            rows.setdefault(row["name"], []).append(row)
    out = {}
    for name, found in rows.items():
        if len(found) != len(levels):
            continue  # a selector missing at some level (e.g. left out there) is not tracked
        picks = [pick_of(r) for r in found]
        moves = all(p is not None for p in picks)
        scored = [r for r in found if r.get("regret") is not None]
        groups = [{"value": r["regret"], "se": r.get("regret_se")} for r in scored]
        out[name] = {"picks": picks, "spearman": spearman(picks, bests) if moves else None,
                     "spearman_matched": spearman(picks, matched) if moves and None not in matched else None,
                     "tied_share": sum(bool(r.get("tied_with_best")) for r in scored) / len(scored) if scored else None,
                     "mean_regret": sum(r["regret"] for r in scored) / len(scored) if scored else None,
                     "mean_regret_ci": mean_interval_over_groups(groups)["ci"] if scored else None,
                     "levels": len(scored)}
    return out


def ladder_result(task: str, dataset: str, preset, kind: str, levels: list[float], comparisons: list[dict],
                  backbone) -> dict:
    """The ladder from each level's comparison (in ``levels`` order)."""
    from aselect_bench.data.corruption import KINDS
    from aselect_bench.reports import run_record

    match, reason = matched_for(backbone, kind)
    rungs = [level_entry(level, None if match is None else match(level), c) for level, c in zip(levels, comparisons)]
    first = comparisons[0]
    bests, matched = [r["exhaustive"]["best_timestep"] for r in rungs], [r["matched_timestep"] for r in rungs]
    return {"task": task, "dataset": dataset, "preset": preset.name, "kind": kind, "level_scale": KINDS[kind],
            "backbone": backbone.name, "tap": first["tap"], "metric": first["metric"], "splits": first["splits"],
            "candidates": first["candidates"], "seeds": first.get("seeds", 1),
            "matched": {"rule": "gauss on a pixel-space backbone: the t of its own schedule where sqrt((1 - abar_t) / "
                                "abar_t) (DDPM) or s_t / (1 - s_t) (rectified flow) is nearest 2 sigma",
                        "reason": reason},
            "levels": rungs, "spearman_best_matched": None if reason else spearman(bests, matched),
            "tracking": tracking(rungs),
            "seconds": sum(c["exhaustive"]["seconds"] + c["aselect"]["seconds"] for c in comparisons),
            "run": run_record(preset, backbone)}


def ladder_name(ladder: dict) -> str:
    return f"{ladder['task']}-{ladder['dataset']}-{ladder['preset']}-{ladder['kind']}"


def _cell(row: dict | None) -> str:
    from aselect_bench.analyses.compare_report import tie_mark, with_ci

    if row is None:
        return "-"
    if row.get("regret") is None:
        return "no pick"
    t = pick_of(row)
    return f"t={'E' if t is None else t}: {with_ci(row['regret'], row.get('regret_ci'), '{:.1f}')} {tie_mark(row)}"


def ladder_markdown(ladder: dict) -> str:
    """The ladder as Markdown: per level the best, its ties and the matched timestep; each pick with its regret
    interval; tracking per selector and search."""
    from aselect_bench.analyses.compare_report import READING, with_ci
    from aselect_bench.reports import markdown_table, run_header

    m, test = ladder["metric"], ladder["splits"]["test"]
    levels = ladder["levels"]
    names = list(ladder["tracking"]) or [r["name"] for r in levels[0]["selectors"]]
    reason = ladder["matched"]["reason"]
    rows = [[f"{lv['level']:g}", lv["matched_timestep"], lv["exhaustive"]["best_timestep"],
             ", ".join(map(str, lv["exhaustive"].get("tied_with_best", []))) or "-",
             with_ci(lv["exhaustive"]["test_at_best"], lv["exhaustive"].get("test_at_best_ci"))] for lv in levels]
    by_level = [{r["name"]: r for r in [*lv["selectors"], *lv.get("searches", [])]} for lv in levels]
    picks = [[name, *[_cell(found.get(name)) for found in by_level]] for name in names]
    track = [[name, *("n/a" if t[k] is None else t[k] for k in ("spearman", "spearman_matched")),
              None if t["tied_share"] is None else f"{100 * t['tied_share']:.0f}% of {t['levels']}",
              with_ci(t["mean_regret"], t["mean_regret_ci"])] for name, t in ladder["tracking"].items()]
    rho = ladder["spearman_best_matched"]
    return "\n".join([
        f"# Known-answer ladder: {ladder['task']} / {ladder['dataset']} / preset `{ladder['preset']}` / "
        f"`{ladder['kind']}`\n",
        run_header(ladder["run"]),
        f"Backbone `{ladder['backbone']}`, tap `{ladder['tap']}`, {len(ladder['candidates'])} candidates, "
        f"{ladder['seeds']} seed(s); level = {ladder['level_scale']}. Each level is a full comparison (every choice "
        f"on the {ladder['splits']['val']} split, the {test} split only reported); docs/ladder.md says how to read "
        f"it.\n",
        f"Matched timestep: {reason or ladder['matched']['rule']}.\n",
        markdown_table(["level", "matched t", "exhaustive best t", "tied with the best", f"{test} {m} at best"],
                       rows),
        f"\n- Spearman(exhaustive best, matched t) over the levels: "
        f"**{'n/a' if rho is None else f'{rho:.3f}'}**\n",
        f"## Picks per level: timestep, regret [95% CI] in {m} points, vs best\n",
        markdown_table(["selector / search", *[f"level {lv['level']:g}" for lv in levels]], picks),
        "\n## Tracking over the levels\n",
        "Spearman of each pick with the exhaustive best (and with the matched timestep) over the levels: 1 = it "
        "moves as the best moves; n/a = undefined (a pick or best that never moves, or fewer than 3 levels). "
        "*Tied share*: levels where its regret interval contains 0. Mean regret: over the levels, with a two-stage "
        "bootstrap interval (levels, then images).\n",
        markdown_table(["selector / search", "Spearman(pick, best)", "Spearman(pick, matched)", "tied share",
                        "mean regret [95% CI]"], track),
        "", READING,
    ]) + "\n"


def tensorboard_extras(ladder: dict) -> tuple[dict, dict]:
    """``(scalars, extras)``: the best, matched and picked timesteps over the level index (the step axis), and one
    HParams row per selector or search with its tracking."""
    levels = ladder["levels"]
    scalars = {"ladder/best_timestep": {i: lv["exhaustive"]["best_timestep"] for i, lv in enumerate(levels)},
               "ladder/matched_timestep": {i: lv["matched_timestep"] for i, lv in enumerate(levels)},
               "ladder/level": {i: lv["level"] for i, lv in enumerate(levels)}}
    for name, t in ladder["tracking"].items():
        scalars[f"picks/{name}"] = {i: p for i, p in enumerate(t["picks"])}
    hparams = [({"selector": name, "kind": ladder["kind"]},
                {f"hparam/{k}": float(t[k]) for k in ("spearman", "spearman_matched", "tied_share", "mean_regret")
                 if t[k] is not None}, name) for name, t in ladder["tracking"].items()]
    return scalars, {"hparams": hparams}


def write_ladder(ladder: dict, out_dir="results/ladder", tensorboard_dir=None) -> Path:
    """``<task>-<dataset>-<preset>-<kind>.{json,md,png}`` atomically, and the TensorBoard view (Text, Images,
    Scalars, HParams). Returns the path without suffix."""
    from aselect_bench.plots import ladder_figure
    from aselect_bench.reports import write_report

    name = ladder_name(ladder)
    scalars, extras = tensorboard_extras(ladder)
    return write_report(out_dir, name, ladder, ladder_markdown(ladder), {f"{name}.png": ladder_figure(ladder)},
                        tensorboard_dir=tensorboard_dir, scalars=scalars, tensorboard=extras)
