"""Every committed result comes from the current code and the current preset of its name (issue #38): each JSON
under results/ (outside results/archive/) has a run record from a clean tree whose preset fingerprint is that of
today's preset, and holds no machine's absolute path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"
MACHINE_PATH = re.compile(r'"(/root/|/home/|/work/|/tmp/|/Users/|[A-Za-z]:\\\\)')


def run_records(value):
    """Every run record in a result (``"run"`` entries, at any depth, also a leaderboard's per comparison)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "run" and isinstance(item, dict) and "code_version" in item:
                yield item
            else:
                yield from run_records(item)
    elif isinstance(value, list):
        for item in value:
            yield from run_records(item)


def problems(path: Path) -> list[str]:
    """What is wrong with one result file (an empty list: nothing)."""
    from aselect_bench.settings import load_bench_preset

    text = path.read_text()
    data = json.loads(text)
    found = []
    if not (isinstance(data, dict) and isinstance(data.get("run"), dict)):
        found.append("no run record")
    for run in run_records(data):
        if ".dirty" in str(run.get("code_version")):
            found.append(f"written by a tree with uncommitted code ({run['code_version']})")
        preset = run.get("preset")
        if preset is not None:
            try:
                today = load_bench_preset(preset).yaml_fingerprint
            except ValueError:
                found.append(f"names preset {preset!r}, which is no preset of today")
                continue
            if run.get("preset_fingerprint") != today:
                found.append(f"preset {preset!r} fingerprint {run.get('preset_fingerprint')} is not today's {today}")
    match = MACHINE_PATH.search(text)
    if match:
        found.append(f"holds a machine's absolute path ({text[match.start():match.start() + 40]}...)")
    return sorted(set(found))


def committed_results() -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*.json") if "archive" not in p.relative_to(RESULTS).parts)


def test_every_committed_result_is_from_the_current_code_and_preset():
    bad = {str(p.relative_to(RESULTS)): problems(p) for p in committed_results()}
    assert committed_results() and not {k: v for k, v in bad.items() if v}, {k: v for k, v in bad.items() if v}


def test_every_archived_result_says_why():
    for folder in {p.parent for p in (RESULTS / "archive").rglob("*") if p.is_file()}:
        readme = folder / "README.md"
        assert readme.exists() and readme.read_text().strip(), f"{folder} has no README.md saying why it is archived"


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["run"].update(preset_fingerprint="0123456789ab"), "fingerprint 0123456789ab is not today's"),
    (lambda d: d["run"].update(code_version="0.1.0+abcdef1.dirty"), "uncommitted code"),
    (lambda d: d.pop("run"), "no run record"),
    (lambda d: d["run"].update(weights_id="/root/.cache/model@1234"), "absolute path"),
    (lambda d: d["run"].update(preset="gone"), "no preset of today"),
])
def test_the_check_fails_on_an_edited_result(tmp_path, edit, fragment):
    from aselect_bench.settings import load_bench_preset

    clean = {"task": "fgvc", "run": {"preset": "demo", "preset_fingerprint": load_bench_preset("demo").yaml_fingerprint,
                                     "code_version": "0.1.0+abcdef1", "weights_id": "demo@sha256:d69e885a4ac8"}}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(clean))
    assert problems(path) == []
    edit(clean)
    path.write_text(json.dumps(clean))
    assert any(fragment in p for p in problems(path)), problems(path)


def test_a_temporary_folder_is_recorded_without_the_machines_path():
    import tempfile

    from aselect_bench.io import display_path

    assert display_path(Path(tempfile.gettempdir()) / "tmpabc" / "data") == "$TMPDIR/tmpabc/data"
