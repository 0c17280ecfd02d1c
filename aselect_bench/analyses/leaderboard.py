"""The selectors' leaderboard across datasets: every comparison of one preset in a results folder, per selector
its mean and worst regret, mean Spearman(score, validation metric) and how often it is best."""

from __future__ import annotations

import sys
from pathlib import Path

from aselect_bench.io import read_json

#: Regrets within this many points of the best count as a tie for "best".
TIE = 1e-9


def comparison_label(result: dict) -> str:
    return f"{result['task']}/{result['dataset']}"


#: The tasks a comparison file can be of: ``<task>-<dataset>-<preset>.json``.
TASKS = ("fgvc", "ade20k")


def is_comparison(data, file_name: str, preset: str) -> bool:
    """Whether ``data`` read from ``file_name`` is a comparison of ``preset`` that scored selectors: its own
    task, dataset and preset spell the file's name, so no other file of the folder (a leaderboard, another
    preset's comparison whose name ends the same way) is ever read as one."""
    return (isinstance(data, dict) and data.get("preset") == preset and data.get("task") in TASKS
            and file_name == f"{data['task']}-{data.get('dataset')}-{preset}.json" and bool(data.get("selectors")))


def collect_comparisons(out_dir, preset: str) -> list[dict]:
    """Every ``<task>-<dataset>-<preset>.json`` comparison in ``out_dir`` that scored selectors (FGVC first, then
    ADE20K; by dataset name within a task). A damaged file is left out with one note naming it."""
    from aselect_bench.errors import CorruptFileError

    found = []
    for task in TASKS:
        for path in sorted(Path(out_dir).glob(f"{task}-*-{preset}.json")):
            try:
                data = read_json(path)
            except CorruptFileError as err:
                print(f"note: the leaderboard leaves out {path}: {err}", file=sys.stderr, flush=True)
                continue
            if is_comparison(data, path.name, preset):
                found.append(data)
    return sorted(found, key=lambda r: (r["task"] != "fgvc", r["dataset"]))


def build_leaderboard(comparisons: list[dict], preset: str) -> dict:
    """``{"preset", "comparisons": [label], "selectors": [{"name", "uses_labels", "regret": {label: r},
    "regret_ci": {label: [lo, hi]}, "mean_regret", "mean_regret_ci", "worst_regret", "mean_spearman", "wins",
    "shared_wins", "tied", "worse", "mean_saving_seconds"}]}``, best mean regret first. A comparison a selector did
    not run in is left out of its means (``datasets`` counts them).

    ``mean_regret_ci``: a two-stage bootstrap (:func:`~aselect_bench.uncertainty.mean_interval_over_groups`):
    the comparisons are resampled and, within each, its regret drawn from a normal with the regret's own
    bootstrap standard error over images (over the seed-mean metric when a comparison has seeds). ``wins``:
    the comparisons where the selector alone has the lowest regret, ``shared_wins`` where it shares it;
    ``tied``/``worse``: where its regret interval contains 0 / lies above 0.
    """
    from aselect_bench.uncertainty import mean_interval_over_groups

    rows: dict[str, dict] = {}
    for result in comparisons:
        label = comparison_label(result)
        best = min(r["regret"] for r in result["selectors"])
        sharing = sum(r["regret"] <= best + TIE for r in result["selectors"])
        for r in result["selectors"]:
            row = rows.setdefault(r["name"], {"name": r["name"], "uses_labels": r["uses_labels"], "regret": {},
                                              "regret_ci": {}, "regret_se": {}, "tied_with_best": {}, "spearman": {},
                                              "saving_seconds": {},
                                              "timestep": {}, "wins": 0, "shared_wins": 0, "tied": 0, "worse": 0})
            row["regret"][label], row["timestep"][label] = r["regret"], r["timestep"]
            row["spearman"][label], row["saving_seconds"][label] = r["spearman"], r["saving_seconds"]
            row["regret_ci"][label], row["regret_se"][label] = r.get("regret_ci"), r.get("regret_se")
            lowest = r["regret"] <= best + TIE
            row["wins"] += lowest and sharing == 1
            row["shared_wins"] += lowest and sharing > 1
            row["tied_with_best"][label] = bool(r.get("tied_with_best"))
            row["tied"] += bool(r.get("tied_with_best"))
            row["worse"] += bool(r.get("strictly_worse"))
    for row in rows.values():
        regrets = list(row["regret"].values())
        rhos = [v for v in row["spearman"].values() if v is not None]
        groups = [{"value": v, "se": row["regret_se"][label]} for label, v in row["regret"].items()]
        row.update(datasets=len(regrets), mean_regret=sum(regrets) / len(regrets), worst_regret=max(regrets),
                   mean_regret_ci=mean_interval_over_groups(groups)["ci"],
                   mean_spearman=sum(rhos) / len(rhos) if rhos else None,
                   mean_saving_seconds=sum(row["saving_seconds"].values()) / len(regrets),
                   mean_cost_fraction=sum(1 / s for s in row["saving_seconds"].values()) / len(regrets))
    ordered = sorted(rows.values(), key=lambda r: (r["mean_regret"], r["worst_regret"], r["name"]))
    return {"preset": preset, "comparisons": [comparison_label(r) for r in comparisons],
            "metrics": {comparison_label(r): r["metric"] for r in comparisons}, "selectors": ordered,
            "searches": search_board(comparisons)}


def search_board(comparisons: list[dict]) -> list[dict]:
    """The searches across the comparisons (``searches`` of each): ``[{"name", "regret": {label: r},
    "regret_ci": {label: [lo, hi]}, "timestep": {label: t}, "cost_fraction": {label: c}, "cannot_pick": {label:
    why}, "datasets", "tied", "worse", "mean_regret", "mean_regret_ci", "worst_regret", "mean_cost_fraction"}]``,
    best mean regret first; a comparison where a search cannot pick is left out of its means (and named)."""
    from aselect_bench.uncertainty import mean_interval_over_groups

    rows: dict[str, dict] = {}
    for result in comparisons:
        label = comparison_label(result)
        for r in result.get("searches", []):
            row = rows.setdefault(r["name"], {"name": r["name"], "regret": {}, "regret_ci": {}, "regret_se": {},
                                              "timestep": {}, "cost_fraction": {}, "cannot_pick": {}, "tied": 0,
                                              "worse": 0})
            if r.get("timestep") is None:
                row["cannot_pick"][label] = r.get("reason")
                continue
            row["regret"][label], row["regret_ci"][label] = r["regret"], r.get("regret_ci")
            row["regret_se"][label], row["timestep"][label] = r.get("regret_se"), r["timestep"]
            row["cost_fraction"][label] = r["cost_fraction"]
            row["tied"] += bool(r.get("tied_with_best"))
            row["worse"] += bool(r.get("strictly_worse"))
    for row in rows.values():
        regrets = list(row["regret"].values())
        row["datasets"] = len(regrets)
        if regrets:
            groups = [{"value": v, "se": row["regret_se"][label]} for label, v in row["regret"].items()]
            row.update(mean_regret=sum(regrets) / len(regrets), worst_regret=max(regrets),
                       mean_regret_ci=mean_interval_over_groups(groups)["ci"],
                       mean_cost_fraction=sum(row["cost_fraction"].values()) / len(regrets))
        else:
            row.update(mean_regret=None, worst_regret=None, mean_regret_ci=None, mean_cost_fraction=None)
    return sorted(rows.values(), key=lambda r: (r["mean_regret"] is None, r["mean_regret"] or 0, r["name"]))


def cheapest_always_tied(board: dict) -> dict | None:
    """The cheapest selector or search (by mean cost fraction) tied with the best on every comparison, or None."""
    n = len(board["comparisons"])
    rows = [r for r in [*board["selectors"], *board.get("searches", [])]
            if r.get("mean_cost_fraction") is not None and r["tied"] == n and r["datasets"] == n]
    return min(rows, key=lambda r: r["mean_cost_fraction"], default=None)


def search_lines(board: dict) -> list[str]:
    """The searches' table (:func:`search_board`) and the cheapest choice tied with the best everywhere."""
    from aselect_bench.analyses.compare_report import with_ci
    from aselect_bench.reports import markdown_table

    if not board.get("searches"):
        return []
    cheapest = cheapest_always_tied(board)
    rows = [[r["name"], with_ci(r["mean_regret"], r.get("mean_regret_ci")), r["worst_regret"],
             f"{r['tied']}/{r['datasets']}", f"{r['worse']}/{r['datasets']}",
             None if r["mean_cost_fraction"] is None else f"{100 * r['mean_cost_fraction']:.1f}%",
             "; ".join(f"{label}: {why}" for label, why in r["cannot_pick"].items()) or "-"]
            for r in board["searches"]]
    return ["\n## Searches (replayed on the sweeps' learning curves)\n",
            "A search trains candidates for a few epochs, reads the held-out metric, and ends with one full training "
            "at its pick (docs/searches.md). *Mean cost*: the epochs it trains as a share of the exhaustive "
            "search's (every candidate for every epoch), averaged over the comparisons; a selector's cost is its "
            "time (scan + one training) over the exhaustive search's.\n",
            markdown_table(["search", "mean regret [95% CI]", "worst regret", "tied with best", "strictly worse",
                            "mean cost", "cannot pick"], rows),
            "\nCheapest selector or search tied with the best on every comparison: "
            + (f"**{cheapest['name']}** at {100 * cheapest['mean_cost_fraction']:.1f}% of the exhaustive search's "
               f"cost." if cheapest else "none."),
            *by_cost_lines(board)]


def by_cost_lines(board: dict) -> list[str]:
    """Every selector and search (and the exhaustive search) by mean cost, with its mean regret and whether it is
    on the Pareto front of :func:`frontier_files`' figure."""
    from aselect_bench.analyses.compare_report import with_ci
    from aselect_bench.analyses.frontier import board_points, pareto_front
    from aselect_bench.reports import markdown_table

    points = sorted(board_points(board), key=lambda p: (p["cost"], p["regret"]))
    front = {(p["kind"], p["name"]) for p in pareto_front(points)}
    rows = [[p["name"], p["kind"], f"{100 * p['cost']:.1f}%", with_ci(p["regret"], p.get("ci")),
             "yes" if (p["kind"], p["name"]) in front else "no"] for p in points]
    return [f"\n## Selectors and searches by cost (`{frontier_name(board['preset'])}.png`)\n",
            markdown_table(["choice", "kind", "mean cost (share of the exhaustive search)", "mean regret [95% CI]",
                            "on the Pareto front"], rows)]


def frontier_name(preset: str) -> str:
    """``frontier`` for the default preset (``demo``), ``frontier-<preset>`` otherwise (as :func:`leaderboard_name`)."""
    return "frontier" if preset == "demo" else f"frontier-{preset}"


def frontier_files(board: dict) -> dict:
    """``{frontier_name.png: figure}`` over the leaderboard's means (:mod:`aselect_bench.analyses.frontier`)."""
    from aselect_bench.analyses.frontier import COST_LABEL, board_points, pareto_front
    from aselect_bench.plots import frontier_figure

    points = board_points(board)
    title = f"cost vs regret over {len(board['comparisons'])} comparisons, preset {board['preset']} (means)"
    return {f"{frontier_name(board['preset'])}.png": frontier_figure(points, pareto_front(points), title, COST_LABEL)}


def search_hparams(board: dict) -> list[tuple]:
    """The searches as HParams rows: ``({"search"}, {"hparam/mean_regret", "hparam/mean_cost_fraction",
    "hparam/tied_share", "hparam/regret/<label>"}, name)``, beside the selectors' sessions."""
    return [({"search": r["name"]},
             {"hparam/mean_regret": r["mean_regret"], "hparam/mean_cost_fraction": r["mean_cost_fraction"],
              "hparam/tied_share": r["tied"] / r["datasets"],
              **{f"hparam/regret/{label}": v for label, v in r["regret"].items()}}, f"search-{r['name']}")
            for r in board.get("searches", []) if r["datasets"]]


def leaderboard_markdown(board: dict, runs: list[dict]) -> str:
    from aselect_bench.analyses.compare_report import READING, with_ci
    from aselect_bench.reports import markdown_table

    labels = board["comparisons"]
    header = ["selector", "labels", "mean regret [95% CI]", "worst regret", "tied with best", "strictly worse",
              "best on (alone + shared)", "mean Spearman", "mean saving (time)"]
    rows = [[r["name"], "yes" if r["uses_labels"] else "no", with_ci(r["mean_regret"], r.get("mean_regret_ci")),
             r["worst_regret"], f"{r['tied']}/{r['datasets']}", f"{r['worse']}/{r['datasets']}",
             f"{r['wins']} + {r['shared_wins']} of {r['datasets']}", r["mean_spearman"], r["mean_saving_seconds"]]
            for r in board["selectors"]]
    per = [[r["name"], *[None if lab not in r["regret"] else
                         f"{with_ci(r['regret'][lab], r['regret_ci'].get(lab), '{:.1f}')} "
                         f"(t={'E' if r['timestep'][lab] is None else r['timestep'][lab]})"
                         for lab in labels]] for r in board["selectors"]]
    codes = sorted({run["code_version"] for run in runs})
    return "\n".join([
        f"# Timestep selectors across datasets, preset `{board['preset']}`\n",
        f"_From {len(labels)} comparisons in this folder ({', '.join(labels)}); code "
        f"{', '.join(codes)}; each comparison's own file says how it was run._\n",
        "Regret = the exhaustive search's reported-split metric at its best (chosen on held-out data) minus the "
        "selector's, in points of each task's metric (top-1 for FGVC, mIoU for ADE20K). The mean regret's interval "
        "resamples the comparisons and, within each, the images (two stages). *Tied with best*: comparisons where "
        "the selector's regret interval contains 0; *strictly worse*: where it lies above 0; *best on*: where no "
        "selector has a lower regret, alone or shared with others. Spearman: the selector's score against the "
        "held-out metric over the candidate grid. `random` is its expectation over the grid; rules (`t0`, "
        "`fixed-*`) need no scan.\n",
        markdown_table(header, rows),
        *search_lines(board),
        "\n## Regret per comparison [95% CI] (chosen timestep)\n",
        markdown_table(["selector", *labels], per),
        "", READING,
    ]) + "\n"


def leaderboard_name(preset: str) -> str:
    """``selectors`` for the embedded default (``demo``), ``selectors-<preset>`` for any other preset, so the
    leaderboards of several presets can share a results folder."""
    return "selectors" if preset == "demo" else f"selectors-{preset}"


def hparam_metrics(row: dict) -> dict:
    """A leaderboard row as one HParams session's metrics: the mean regret, the share of comparisons tied with the
    best, and each comparison's regret (``hparam/regret/<task>/<dataset>``): one session per selector, whatever the
    number of comparisons, so the report folder stays under TensorBoard's 40 runs."""
    ties = row["tied_with_best"]
    return {"hparam/mean_regret": row["mean_regret"], "hparam/tied_share": sum(ties.values()) / len(ties),
            **{f"hparam/regret/{label}": v for label, v in row["regret"].items() if v is not None}}


def write_leaderboard(out_dir, preset: str, tensorboard_dir=None) -> Path | None:
    """``selectors.{json,md,png}`` (:func:`leaderboard_name`) in ``out_dir`` from its comparisons of ``preset``
    (None when there are none)."""
    from aselect_bench.plots import leaderboard_figure
    from aselect_bench.reports import run_record, write_report

    comparisons = collect_comparisons(out_dir, preset)
    if not comparisons:
        return None
    board = build_leaderboard(comparisons, preset)
    runs = [c["run"] for c in comparisons if "run" in c]
    board["runs"] = {comparison_label(c): c["run"] for c in comparisons if "run" in c}
    fingerprints = {run.get("preset_fingerprint") for run in runs}
    board["run"] = {**run_record(), "preset": preset,
                    "preset_fingerprint": fingerprints.pop() if len(fingerprints) == 1 else None}
    name = leaderboard_name(preset)
    hparams = [({"selector": r["name"], "uses_labels": "yes" if r["uses_labels"] else "no"}, hparam_metrics(r),
                r["name"])
               for r in board["selectors"]]
    return write_report(out_dir, name, board, leaderboard_markdown(board, runs),
                        {f"{name}.png": leaderboard_figure(board), **frontier_files(board)}, tensorboard_dir=tensorboard_dir,
                        tensorboard={"hparams": hparams + search_hparams(board)})
