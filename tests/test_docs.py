"""The docs: README.md is a short front page, docs/ is a strict mkdocs site, and README's numbers are the files'.

`python tests/test_docs.py` prints README's generated blocks (the headline table and the first run's output) from
the committed result files; `python tests/test_docs.py --write` puts them into README.md. The tests fail when
README's copy differs from the files, so a re-run of the results is followed by a refresh of the front page.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 220
#: Selectors that are A-SelecT itself (the paper's `hfr`) or its variants: not "another selector".
ASELECT = re.compile(r"^hfr($|-)")


def needs_mkdocs():
    missing = [m for m in ("mkdocs", "material") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"mkdocs and mkdocs-material are not installed ({', '.join(missing)} not importable): "
                    f"`make setup` installs them (the `docs` extra)")


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=config.parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_docs_build_strictly(tmp_path):
    needs_mkdocs()
    done = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "site" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path):
    """The strict build is what catches broken links: prove it does on a copy with one."""
    needs_mkdocs()
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    with open(tmp_path / "docs" / "index.md", "a") as f:
        f.write("\nSee [nowhere](no-such-page.md).\n")
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0 and "no-such-page.md" in done.stdout + done.stderr


def nav_pages(nav) -> list[str]:
    """Every Markdown file named in mkdocs.yml's nav (nested sections included)."""
    if isinstance(nav, str):
        return [nav] if nav.endswith(".md") else []
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in nav_pages(v)]
    return [p for item in nav for p in nav_pages(item)]


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    listed = nav_pages(config["nav"])
    assert sorted(set(listed)) == pages, f"pages not in the nav: {sorted(set(pages) - set(listed))}; " \
                                         f"nav entries without a page: {sorted(set(listed) - set(pages))}"


def test_readme_is_a_front_page():
    text = README.read_text()
    lines = text.count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the front page stays within " \
                                      f"{MAX_README_LINES}: move the reference into docs/"
    for command in ("make bench-fgvc", "make test"):
        assert command in text
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in text, f"README.md does not link docs/{page.name}"


# --- README's generated blocks -------------------------------------------------------------------------------

def _timesteps(values) -> str:
    """`t = 50` for one comparison, `t = 50 on 5, 150 on 1` for several."""
    counts = Counter(values)
    if len(values) == 1:
        return f"t = {values[0]}"
    return "t = " + ", ".join(f"{t} on {n}" for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def headline_block(root: Path = ROOT) -> str:
    """One row per task from results/compare/<task>-<dataset>-demo.json (FGVC: the mean over its datasets)."""
    by_task: dict[str, list[dict]] = {}
    for path in sorted((root / "results" / "compare").glob("*-demo.json")):
        comparison = json.loads(path.read_text())
        by_task.setdefault(comparison["task"], []).append(comparison)
    names = {"fgvc": "FGVC, {n} stand-ins (mean test top-1, %)", "ade20k": "ADE20K stand-in (validation mIoU)"}
    rows = ["| task (reported metric) | exhaustive search | A-SelecT (`hfr`) | best other selector | A-SelecT's saving |",
            "|---|---|---|---|---|"]
    for task in ("fgvc", "ade20k"):
        comparisons = by_task.get(task, [])
        if not comparisons:
            continue
        n = len(comparisons)
        best = sum(c["exhaustive"]["test_at_best"] for c in comparisons) / n
        aselect = sum(c["aselect"]["test"] for c in comparisons) / n
        saving = sum(c["saving_seconds"] for c in comparisons) / n
        regrets: dict[str, list[float]] = {}
        ties: dict[str, int] = Counter()
        for c in comparisons:
            for s in c["selectors"]:
                regrets.setdefault(s["name"], []).append(s["regret"])
                ties[s["name"]] += bool(s.get("tied_with_best"))
        others = {k: sum(v) / n for k, v in regrets.items() if len(v) == n and not ASELECT.match(k)}
        lowest = min(others.values())
        winners = sorted(k for k, v in others.items() if v <= lowest + 1e-6)
        mine = sum(bool(c["aselect"].get("tied_with_best")) for c in comparisons)
        interval = f" [{comparisons[0]['regret_ci'][0]:.1f}, {comparisons[0]['regret_ci'][1]:.1f}]" if n == 1 else ""
        seeds = max(c.get("seeds", 1) for c in comparisons)
        rows.append(
            f"| {names[task].format(n=n)}{f', {seeds} seeds' if n == 1 and seeds > 1 else ''} "
            f"| {best:.1f} ({_timesteps([c['exhaustive']['best_timestep'] for c in comparisons])}) "
            f"| {aselect:.1f} ({_timesteps([c['aselect']['timestep'] for c in comparisons])}), regret "
            f"{best - aselect:.1f}{interval}, tied with the best on {mine} of {n} "
            f"| {', '.join(f'`{w}`' for w in winners)}: {best - lowest:.1f}, regret {lowest:.1f}, tied on "
            f"{'/'.join(str(ties[w]) for w in winners)} of {n} "
            f"| {saving:.1f}x less time (ideal {len(comparisons[0]['candidates'])}x) |")
    rows += ["", cheapest_line(root)]
    fgvc = json.loads((root / "results" / "fgvc" / "demo" / "summary.json").read_text())
    ade = json.loads((root / "results" / "ade20k" / "demo" / "summary.json").read_text())
    chance = sum(d["chance_top1"] for d in fgvc["datasets"].values()) / len(fgvc["datasets"])
    rows += ["", f"The benchmarks on their own: `make bench-fgvc` reaches {fgvc['mean_test_top1']:.1f}% mean test top-1 "
                 f"(chance {chance:.1f}%); `make bench-ade20k` {ade['val_miou']:.1f} mIoU at the HFR's "
                 f"t = {ade['timestep']} (a constant predictor: {ade['constant_predictor_miou']:.1f})."]
    return "\n".join(rows)


def cheapest_line(root: Path = ROOT) -> str:
    """The cheapest selector or search tied with the best on every comparison of the leaderboard
    (results/compare/selectors.json, :func:`aselect_bench.analyses.leaderboard.cheapest_always_tied`), with its cost."""
    from aselect_bench.analyses.leaderboard import cheapest_always_tied

    board = json.loads((root / "results" / "compare" / "selectors.json").read_text())
    n = len(board["comparisons"])
    cheapest = cheapest_always_tied(board)
    if cheapest is None:
        return (f"Cheapest selector or search tied with the best on all {n} comparisons: none (searches: "
                f"[docs/searches.md](docs/searches.md)).")
    kind = "search" if cheapest in board.get("searches", []) else "selector"
    return (f"Cheapest selector or search tied with the best on all {n} comparisons: `{cheapest['name']}` ({kind}), "
            f"at {100 * cheapest['mean_cost_fraction']:.1f}% of the exhaustive search's cost on average "
            f"([searches](docs/searches.md)).")


def first_run_block(root: Path = ROOT) -> str:
    """What `make bench-fgvc` prints, with the committed run's numbers (results/fgvc/demo/summary.json)."""
    from aselect_bench.analyses.compare_report import with_ci

    summary = json.loads((root / "results" / "fgvc" / "demo" / "summary.json").read_text())
    run, datasets = summary["run"], summary["datasets"]
    native = "yes" if run["hardware"].get("cpu_bf16_native") else "no"
    requested = run.get("overrides", {}).get("precision", "auto")
    lines = ["```", f"precision: {run['precision']} (requested {requested}; device {run['hardware']['device']}; "
                    f"CPU bf16 native: {native})",
             f"backbone {summary['backbone']}, precision {run['precision']}, {len(datasets)} datasets"]
    for i, (name, d) in enumerate(datasets.items()):
        if 0 < i < len(datasets) - 1:
            if i == 1:
                lines.append("...")
            continue
        lines += [f"[{i + 1}/{len(datasets)}] {name}",
                  f"    t={d['timestep']}  val={d['val_top1']:.1f}%  test={with_ci(d['test_top1'], d.get('test_ci'))}% "
                  f" ({d['seconds']:.0f}s)"]
    mean = with_ci(summary["mean_test_top1"], summary.get("mean_test_ci"))
    lines += [f"mean test top-1: {mean}%  -> results/fgvc/demo/summary.md", "```", "",
              f"The committed run took {summary['total_seconds']:.0f} s ({run['hardware']['device']}, "
              f"{run['precision']})."]
    return "\n".join(lines)


def scaling_block(root: Path = ROOT) -> str:
    """The `paper` recipe's projected GPU-hours and wall-clock on 8 and 64 H100s (results/estimate/paper-*.json)."""
    rows = ["| `paper`, projected from FLOPs | GPUs | A-SelecT: GPU-hours = wall-clock | exhaustive: GPU-hours "
            "| exhaustive: wall-clock |", "|---|---|---|---|---|"]
    for task, name in (("fgvc", "FGVC (CUB)"), ("ade20k", "ADE20K")):
        for kind in ("cpu", "flops"):
            g = json.loads((root / "results" / "estimate" / f"paper-{task}-{kind}.json").read_text())["gpu_projection"]
            rows.append(f"| {name} | {g['gpus']} x {g['gpu']} (MFU {g['mfu']}) | {g['aselect_gpu_hours']:.1f} h "
                        f"| {g['exhaustive_gpu_hours']:.0f} h | {g['exhaustive_wall_hours']:.1f} h |")
    return "\n".join(rows)


def ladder_block(root: Path = ROOT) -> str:
    """The committed known-answer ladder (results/ladder/fgvc-cub-ladder-gauss.json): per level the matched and the
    exhaustive best timestep and A-SelecT's pick, then each pick's tracking of the best over the levels."""
    from aselect_bench.analyses.compare_report import with_ci

    ladder = json.loads((root / "results" / "ladder" / "fgvc-cub-ladder-gauss.json").read_text())
    rows = ["| `gauss` sigma | matched t | exhaustive best t (tied with it) | A-SelecT (`hfr`): t, regret [95% CI] |",
            "|---|---|---|---|"]
    for lv in ladder["levels"]:
        ex, a = lv["exhaustive"], lv["aselect"]
        rows.append(f"| {lv['level']:g} | {lv['matched_timestep']} | {ex['best_timestep']} "
                    f"({', '.join(map(str, ex.get('tied_with_best', [])))}) "
                    f"| {a['timestep']}, {with_ci(a['regret'], a.get('regret_ci'), '{:.1f}')} |")
    track = ladder["tracking"]
    moving = {k: t["spearman"] for k, t in track.items() if t["spearman"] is not None}
    followers = sorted(moving, key=lambda k: (-moving[k], k))[:3]
    always = sorted(k for k, t in track.items() if t["tied_share"] == 1)
    rules = ", ".join(f"`{k}` {round(t['tied_share'] * len(t['picks']))} of {len(t['picks'])}"
                      for k, t in track.items() if len(set(t["picks"])) == 1 and t["picks"][0] is not None)  # t0, fixed-*
    rho, hfr = ladder["spearman_best_matched"], track["hfr"]["spearman"]
    n = len(ladder["levels"])
    rows += ["", f"Spearman of the exhaustive best with the matched timestep over the {n} levels: "
                 f"{'undefined' if rho is None else f'{rho:.2f}'}. Spearman of each pick with the best: "
                 + (", ".join(f"`{k}` {moving[k]:.2f}" for k in followers) if followers else "no pick moves")
                 + f" (highest); `hfr` {'undefined (it never moves)' if hfr is None else f'{hfr:.2f}'}. "
                 f"Tied with the best at every level: {', '.join(f'`{k}`' for k in always) or 'none'}. The rules that "
                 f"ignore the data, tied at: {rules}."]
    return "\n".join(rows)


BLOCKS = {"headline": headline_block, "first-run": first_run_block, "scaling": scaling_block,
          "ladder": ladder_block}


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- {name}: generated .*?-->\n)(.*?)(\n<!-- /{name} -->)", re.S)


def readme_block(text: str, name: str) -> str:
    found = block_pattern(name).search(text)
    assert found, f"README.md lacks the generated block <!-- {name}: generated ... --> ... <!-- /{name} -->"
    return found.group(2)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_readme_numbers_are_the_result_files(name):
    expected = BLOCKS[name]()
    assert readme_block(README.read_text(), name) == expected, \
        f"README.md's {name} block differs from the result files: run `python tests/test_docs.py --write`"


def write_blocks(path: Path = README) -> None:
    text = path.read_text()
    for name, make in BLOCKS.items():
        readme_block(text, name)
        block = make()
        text = block_pattern(name).sub(lambda m, block=block: m.group(1) + block + m.group(3), text)
    path.write_text(text)


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_blocks()
        print(f"rewrote the generated blocks of {README}")
    else:
        for name, make in BLOCKS.items():
            print(f"<!-- {name} -->\n{make()}\n")
