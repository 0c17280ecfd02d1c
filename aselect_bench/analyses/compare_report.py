"""How a comparison is written: its Markdown (every number with its interval), figures, and TensorBoard view
(the table in the Text tab, the exhaustive curve with its band and the HFR curve over the timestep, each seed's
curves, the regrets with error bars as a figure)."""

from __future__ import annotations

from pathlib import Path

from aselect_bench.reports import comparison_name, markdown_table, run_header

#: How to read a regret interval and a tie, said under every comparison's and the leaderboard's table.
READING = ("Intervals are 95% bootstrap intervals over the images (1,000 resamples): a regret interval resamples "
           "the split that chose the best and the reported split together and re-takes the best on each resample. "
           "A pick whose regret interval contains 0 is *tied with the best*: on another draw of as many images the "
           "exhaustive search could as well have ended there; one whose interval lies above 0 is *strictly "
           "worse*.")


def with_ci(value, ci=None, fmt: str = "{:.2f}") -> str:
    """``"38.50 [34.10, 42.90]"``; a dash for a missing value; the value alone without an interval."""
    if value is None:
        return "-"
    if not ci or ci[0] is None or ci[0] != ci[0]:
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def with_se(stats: dict | None, fmt: str = "{:.2f}") -> str:
    """``"3.10 ± 1.20 (3 seeds)"`` from :func:`~aselect_bench.uncertainty.mean_and_se`."""
    if not stats:
        return "-"
    se = f" ± {fmt.format(stats['se'])}" if stats.get("se") is not None else ""
    return f"{fmt.format(stats['mean'])}{se} ({stats['n']} seeds)"


def timesteps(row: dict):
    """A pick's timestep, or each seed's (``"50, 100, 50"``) when they differ; ``E[grid]`` for the random rule."""
    picks = row.get("timesteps") or [row.get("timestep")]
    if picks[0] is None:
        return "E[grid]"
    return picks[0] if len(set(picks)) == 1 else ", ".join(map(str, picks))


def tie_mark(row: dict) -> str:
    if "tied_with_best" not in row:
        return "-"
    return "tied" if row["tied_with_best"] else ("worse" if row.get("strictly_worse", True) else "better")


def resumed_note(resumed: dict) -> str:
    """One line on pieces resumed after an interruption (their costs include the interrupted attempts), or ``""``."""
    if not resumed:
        return ""
    pieces = ", ".join(f"{name} ({r['attempts']} attempts)" for name, r in resumed.items())
    partial = [name for name, r in resumed.items() if not r["cost_complete"]]
    return (f"Resumed after an interruption: {pieces}; their seconds and forwards include the interrupted attempts"
            + (f", except attempts killed outright ({', '.join(partial)}), whose cost was never recorded: those costs "
               f"are lower bounds" if partial else "") + ".\n")


def launcher_note(result: dict) -> str:
    """One line on a sweep run as jobs: how many, and its wall-clock beside the summed compute."""
    launcher = result.get("launcher")
    if not launcher:
        return ""
    wall = result.get("wall_seconds")
    return (f"Run as {launcher['jobs']} {launcher['kind']} jobs (submitit); the sweep took "
            f"{'-' if wall is None else f'{wall:.0f}'} s of wall-clock. Seconds and forwards above are summed "
            f"over the jobs, and the saving is computed on those sums.\n")


#: How each time measure a saving can be computed from is named in the reports.
MEASURES = {"cpu_seconds": "CPU time", "seconds": "wall time"}


def time_saving_text(result: dict, bold: str = "") -> str:
    """The time saving in words: ``4.16x CPU time (wall time 3.90x)``, or, above its ideal (impossible for
    undisturbed timing), ``disturbed timing`` with the numbers and why they are not a result."""
    measure = MEASURES[result.get("saving_measure", "seconds")]
    wall = result.get("saving_wall_seconds")
    beside = f" (wall time {wall:.2f}x)" if wall is not None and measure != "wall time" else ""
    if result.get("timing_disturbed"):
        return (f"{bold}disturbed timing{bold}: {result['saving_seconds']:.2f}x {measure}{beside} is above its ideal "
                f"{result['ideal_saving']}x, which undisturbed timing cannot give (other processes or a warm-up "
                f"slowed some trainings): not a result; rerun on an idle machine")
    return f"{bold}{result['saving_seconds']:.2f}x{bold} {measure}{beside}"


def row_saving(row: dict) -> str:
    """A selector's time saving for its table cell: ``3.95x``, or ``disturbed (12.10x)`` above its ideal."""
    return f"disturbed ({row['saving_seconds']:.2f}x)" if row.get("timing_disturbed") else f"{row['saving_seconds']:.2f}x"


def spearman_text(rho: float | None, result: dict) -> str:
    """Spearman(HFR, val) as ``0.428``, or ``undefined (why)``: no HFR curve, fewer than 3 candidates, or a
    constant series (:func:`~aselect_bench.analyses.compare.spearman`)."""
    if rho is not None:
        return f"{rho:.3f}"
    why = ("no HFR scan" if not result.get("hfr") else "fewer than 3 candidates" if len(result["candidates"]) < 3
           else "a constant series: every candidate scored or validated the same")
    return f"undefined ({why})"


def console_lines(result: dict, stem) -> list[str]:
    """What ``compare`` prints for one comparison: the saving, the regret, the correlation, every number
    formatted (an undefined one with why), and each selector that picked no timestep, with why."""
    val = result["splits"]["val"]
    lines = [f"{result['dataset']}: saving {time_saving_text(result)} / {result['saving_forwards']:.2f}x "
             f"forwards (ideal {result['ideal_saving']}x), regret {with_ci(result['regret'], result.get('regret_ci'))}"
             f", Spearman(HFR, {val}) {spearman_text(result['spearman_hfr_val'], result)}  -> {stem}.md"]
    lines += [f"note: selector {r['name']} picks no timestep: {r['reason']}" for r in result.get("selectors_no_pick", [])]
    return lines


def summary_lines(result: dict) -> list[str]:
    """The headline: both strategies with intervals, the saving, the regret and its verdict."""
    m, ex, a = result["metric"], result["exhaustive"], result["aselect"]
    val, test = (result["splits"][s] for s in ("val", "test"))
    best = ex["per_timestep"][ex["best_timestep"]]
    selector = a.get("selector", "hfr")
    rows = [[f"exhaustive (best {val})", ex["best_timestep"], with_ci(best["val"], best.get("val_ci")),
             with_ci(ex["test_at_best"], ex.get("test_at_best_ci")), ex["seconds"], ex["forwards"]],
            [f"A-SelecT (scan + `{selector}` + 1 training)", timesteps(a), a["val"],
             with_ci(a["test"], a.get("ci")), a["seconds"], a["forwards"]]]
    if "fused_exhaustive" in result:
        f = result["fused_exhaustive"]
        rows.append(["fused exhaustive (1 loop, 1 head per t)", f["best_timestep"], None, f["test_at_best"],
                     f["seconds"], f["forwards"]])
    support = ""
    if a.get("support") is not None:
        other = f"runner-up t={a['runner_up']}" if a.get("runner_up") is not None else "no other t chosen"
        margin = f", margin {a['margin']:.4f}" if a.get("margin") is not None else ""
        support = f"; bootstrap support of the choice {100 * a['support']:.0f}% ({other}{margin})"
    rho = result["spearman_hfr_val"]
    verdict = "" if "tied_with_best" not in a else (
        " (tied with the best)" if a["tied_with_best"] else " (worse than the best)" if result["regret_ci"][0] > 0
        else " (better than the best)")
    seeds = result.get("seeds", 1) > 1
    per_seed_saving = f" (per seed {with_se(result.get('saving_seconds_seeds'))})" if seeds else ""
    regret_seeds = f"; within each seed {with_se(result.get('regret_seeds'))}" if seeds else ""
    best_seeds = f"; best per seed: {ex.get('best_by_seed')}" if seeds else ""
    lines = [
        markdown_table(["strategy", "timestep", f"{val} {m}",
                        f"{test} {m} [95% CI: exhaustive's best re-chosen on each resample; A-SelecT at its pick]",
                        "seconds", "forwards"], rows),
        f"\n- saving: {time_saving_text(result, '**')}{per_seed_saving}, "
        f"**{result['saving_forwards']:.2f}x** forwards (ideal: {result['ideal_saving']}x, the number of candidates)",
        f"- A-SelecT stages: scan {a['stages']['scan']['seconds']:.1f}s / {a['stages']['scan']['forwards']} forwards, "
        f"training {a['stages']['train']['seconds']:.1f}s / {a['stages']['train']['forwards']} forwards "
        f"(scan = {100 * result['scan_share_of_one_training']:.1f}% of one training){support}",
        f"- regret (exhaustive {test} at best - A-SelecT {test}): **{with_ci(result['regret'], result.get('regret_ci'))}**"
        f" points{verdict}{regret_seeds}",
        f"- candidates tied with the best: {', '.join(map(str, ex.get('tied_with_best', []))) or '-'}{best_seeds}",
        f"- Spearman(HFR, {val} {m}) over the grid: **{spearman_text(rho, result)}**\n",
    ]
    return lines


def selectors_lines(result: dict) -> list[str]:
    m = result["metric"]
    val, test = (result["splits"][s] for s in ("val", "test"))
    scan = result["scan"]
    seeds = result.get("seeds", 1) > 1
    return [
        "## Selectors (scored on the exhaustive curve below)\n",
        f"Every selector reads one scan ({scan['num_images']} calibration images x {len(result['candidates'])} "
        f"candidates: {scan['seconds']:.1f}s, {scan['forwards']} forwards); label-using ones read "
        f"{scan['num_labelled']} labelled images of the {val} split, never the {test} split. *extra* is what a "
        f"selector needs beyond the scan (its own computation, more noise draws, the labelled images); *saving* is "
        f"the exhaustive sweep's cost over the selector's (scan if it needs one, extra, and one training at its "
        f"timestep, as measured in the sweep). `random` is the expectation over the grid. Spearman: the "
        f"selector's score against the {val} {m}, over the grid.\n",
        markdown_table(["selector", "labels", "timestep", f"{test} {m}", "regret [95% CI]", "vs best",
                        *(["regret within seeds"] if seeds else []), f"Spearman(score, {val})", "extra forwards",
                        "extra s", f"saving ({MEASURES[result.get('saving_measure', 'seconds')]})",
                        "saving (forwards)"],
                       [[r["name"], "yes" if r["uses_labels"] else "no",
                         timesteps(r), r["test"],
                         with_ci(r["regret"], r.get("regret_ci")), tie_mark(r),
                         *([with_se(r.get("regret_seeds"))] if seeds else []), r["spearman"], r["extra_forwards"],
                         r["extra_seconds"], row_saving(r), r["saving_forwards"]] for r in result["selectors"]]),
    ]


def search_picks(row: dict) -> str:
    """A search's pick(s): ``500``, or how often each was picked over the runs (``500 x7, 300 x3``)."""
    from collections import Counter

    picks = row.get("timesteps") or [row["timestep"]]
    counts = Counter(picks).most_common()
    return str(picks[0]) if len(counts) == 1 else ", ".join(f"{t} x{n}" for t, n in counts)


def searches_lines(result: dict) -> list[str]:
    """The searches' table (``result["searches"]``, :mod:`aselect_bench.searches`): each pick, its cost (epochs
    as a share of the exhaustive search's, seconds, forwards), its regret scored as a selector's, or why it
    cannot pick."""
    rows = result.get("searches")
    if not rows:
        return []
    m, test = result["metric"], result["splits"]["test"]
    seeds = result.get("seeds", 1) > 1
    picked = [r for r in rows if r["timestep"] is not None]
    table = [[r["name"], search_picks(r), f"{100 * r['cost_fraction']:.1f}%", r["epochs"], r["seconds"],
              r["forwards"], r["test"], with_ci(r["regret"], r.get("regret_ci")), tie_mark(r),
              *([with_se(r.get("regret_seeds"))] if seeds else []),
              "-" if "spread" not in r else f"regret sd {r['spread']['regret']['sd']:.2f}, cost sd "
              f"{100 * r['spread']['cost_fraction']['sd']:.1f}% over {r['spread']['sampler_seeds']} sampler seeds"]
             for r in picked]
    lines = ["## Searches (replayed on the sweep's learning curves)\n",
             f"Each search trains candidates for some epochs, reads the {result['splits']['val']} {m} only, and ends "
             f"with one full training at its pick (the sweep's run there); the replay reads the sweep's recorded "
             f"curves, so nothing is trained again (docs/searches.md). *cost*: epochs trained as a share of the "
             f"exhaustive search's (every candidate for every epoch{', per seed' if seeds else ''}); seconds and "
             f"forwards are read off the curves at those epochs{', summed over seeds' if seeds else ''}. A pick is "
             f"scored as a selector's: regret against the exhaustive best, same interval and tie rule. Optuna's "
             f"TPE runs once per sampler seed: its numbers are the mean over them.\n",
             markdown_table(["search", "timestep", "cost (of exhaustive epochs)", "epochs", "seconds", "forwards",
                             f"{test} {m}", "regret [95% CI]", "vs best", *(["mean regret within seeds"] if seeds
                                                                             else []), "spread"], table)]
    lines += [f"- {r['name']} cannot pick: {r['reason']}" for r in rows if r["timestep"] is None]
    return lines + [""]


def comparison_frontier(result: dict):
    """The comparison's cost-regret frontier figure (:mod:`aselect_bench.analyses.frontier`)."""
    from aselect_bench.analyses.frontier import COST_LABEL, comparison_points, pareto_front
    from aselect_bench.plots import frontier_figure

    points = comparison_points(result)
    title = f"{result['task']}/{result['dataset']} ({result['preset']}): cost vs regret"
    return frontier_figure(points, pareto_front(points), title, COST_LABEL)


def no_pick_lines(rows: list[dict]) -> list[str]:
    """The selectors that picked no timestep (asked for, but unable to score on this data), each with why."""
    if not rows:
        return []
    return ["\nSelectors that pick no timestep here (not scored):\n",
            markdown_table(["selector", "labels", "why no pick"],
                           [[r["name"], "yes" if r["uses_labels"] else "no", r["reason"]] for r in rows])]


def per_timestep_lines(result: dict) -> list[str]:
    m, ex = result["metric"], result["exhaustive"]
    val, test = (result["splits"][s] for s in ("val", "test"))
    per_t = ex["per_timestep"]
    seeds = result.get("seeds", 1) > 1
    best_seeds = ex.get("best_frequency_seeds", {})
    return [
        "## Per timestep\n",
        markdown_table(["timestep", "mean HFR", f"{val} {m} [95% CI]", f"{test} {m} [95% CI at this fixed t]",
                        "regret if picked [best re-chosen]", "vs best",
                        "best in resamples", *(["best in seeds", f"{test} s.e. over seeds"] if seeds else []),
                        "seconds", "forwards"],
                       [[t, result["hfr"].get(t), with_ci(per_t[t]["val"], per_t[t].get("val_ci")),
                         with_ci(per_t[t]["test"], per_t[t].get("ci")),
                         with_ci(per_t[t].get("regret_if_picked"), per_t[t].get("regret_ci")), tie_mark(per_t[t]),
                         f"{100 * ex['best_frequency'][t]:.0f}%" if "best_frequency" in ex else None,
                         *([f"{100 * best_seeds.get(t, 0):.0f}%", per_t[t].get("test_se")] if seeds else []),
                         per_t[t]["seconds"], per_t[t]["forwards"]] for t in result["candidates"]]),
    ]


def comparison_markdown(result: dict) -> str:
    """The comparison as Markdown: how it was run, the summary with intervals, the cost, the selectors table,
    the per-timestep table, and how to read the intervals."""
    m = result["metric"]
    val, test = (result["splits"][s] for s in ("val", "test"))
    last = result.get("test_checkpoint") == "last"
    choices, at = ("timestep", ", at the last iteration") if last else ("timestep, epoch", "")
    seeds = result.get("seeds", 1)
    lines = [
        f"# Exhaustive search vs A-SelecT: {result['task']} / {result['dataset']} / preset `{result['preset']}`\n",
        run_header(result["run"]) if "run" in result else "",
        f"Backbone `{result['backbone']}`, tap `{result['tap']}`, {len(result['candidates'])} candidate timesteps, "
        f"A-SelecT's selector `{result['aselect'].get('selector', 'hfr')}`"
        f"{f', {seeds} seeds (metrics: the mean over seeds; seconds and forwards: the sum)' if seeds > 1 else ''}. "
        f"Metric: {m} in percent; every choice ({choices}) is made on the {val} split, the {test} split is only "
        f"reported{at}.\n",
        *summary_lines(result),
        launcher_note(result),
        resumed_note(result.get("resumed", {})),
    ]
    if result.get("selectors"):
        lines += selectors_lines(result)
    lines += no_pick_lines(result.get("selectors_no_pick", []))
    lines += searches_lines(result)
    lines += per_timestep_lines(result)
    if result.get("bootstrap"):
        lines += ["", READING]
    return "\n".join(lines) + "\n"


def tensorboard_extras(result: dict) -> tuple[dict, dict]:
    """``(scalars, extras)`` of a comparison for :func:`~aselect_bench.reports.write_report`: the exhaustive
    curves and their interval bounds and the HFR curve over the timestep (the step axis), a Custom Scalars
    ``Margin`` chart that shades the interval, and with seeds each seed's curves (``seeds/<split>_<metric>/seed<r>``)
    in one ``Multiline`` chart per split: tags of the one report run, so the run count stays one."""
    m, candidates = result["metric"], result["candidates"]
    per_t = result["exhaustive"]["per_timestep"]
    tags = {split: f"exhaustive/{split}_{m}" for split in ("val", "test")}
    scalars = {tags["val"]: {t: per_t[t]["val"] for t in candidates},
               tags["test"]: {t: per_t[t]["test"] for t in candidates}, "scan/hfr": dict(result["hfr"])}
    layout = {}
    for split, key in (("val", "val_ci"), ("test", "ci")):
        if key in per_t[candidates[0]]:
            for end, i in (("low", 0), ("high", 1)):
                scalars[f"{tags[split]}_ci_{end}"] = {t: per_t[t][key][i] for t in candidates}
            layout[f"{split} {m} over the timestep, 95% interval"] = [
                "Margin", [tags[split], f"{tags[split]}_ci_low", f"{tags[split]}_ci_high"]]
    for split in ("val", "test") if result.get("seeds", 1) > 1 else ():
        seed_tag = f"seeds/{split}_{m}"
        scalars.update({f"{seed_tag}/seed{r}": {t: per_t[t]["repeats"][r][split] for t in candidates}
                        for r in range(result["seeds"])})
        layout[f"{split} {m} over the timestep, each seed"] = ["Multiline", [f"^{seed_tag}/"]]
    return scalars, {"layout": {"comparison": layout}} if layout else {}


def write_comparison(result: dict, out_dir="results/compare", tensorboard_dir=None) -> Path:
    """``<task>-<dataset>-<preset>.json``, ``.md`` and ``.png`` (curves with bands), ``-cost.png`` and
    ``-selectors.png`` (regret per selector with its interval), atomically, and the TensorBoard view."""
    from aselect_bench.plots import comparison_figure, cost_figure, selector_regret_figure
    from aselect_bench.reports import write_report
    from aselect_bench.searches.score import with_transfer

    name = comparison_name(result)
    with_transfer(result, out_dir)  # the transfer search reads the other comparisons of this folder
    figures = {f"{name}.png": comparison_figure(result), f"{name}-cost.png": cost_figure(result)}
    if result.get("selectors"):
        figures[f"{name}-selectors.png"] = selector_regret_figure(result)
    if result.get("searches"):
        figures[f"{name}-frontier.png"] = comparison_frontier(result)
    scalars, extras = tensorboard_extras(result)
    return write_report(out_dir, name, result, comparison_markdown(result), figures,
                        tensorboard_dir=tensorboard_dir, scalars=scalars, tensorboard=extras)
