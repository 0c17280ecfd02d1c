"""How long replaying every search on one comparison takes (target: under 2 s on a 2-core CPU, Optuna's 10
sampler seeds included). Writes results/perf/searches.json and .md.

The replay reads recorded learning curves; this benchmark times it on a comparison of the preset's shape (its
candidate grid, its FGVC ``max_epochs``, ``--seeds`` seeds, ``--val-images``/``--test-images`` per-image
outcomes) whose curves are drawn at random (``--seed``): the time depends on the shape, not on the numbers. It
times :func:`aselect_bench.searches.score.search_rows` (every strategy's replay on every seed and the one paired
bootstrap that scores their picks), the median of ``--repeats`` runs, and each strategy's replay alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from aselect_bench.experiments.base import exhaustive_summary
from aselect_bench.reports import markdown_table, run_header, run_record, write_report
from aselect_bench.searches import ReplaySource, build_search, search_names
from aselect_bench.searches.score import search_rows
from aselect_bench.settings import load_bench_preset

TARGET_SECONDS = 2.0


def random_sweep(candidates, epochs: int, val_images: int, test_images: int, rng) -> dict:
    """One seed's sweep ``{t: row}``: noisy saturating curves, their history, per-image top-1 outcomes."""
    rows = {}
    for t in candidates:
        ceiling, speed = rng.uniform(30, 70), rng.uniform(0.05, 0.3)
        vals = ceiling * (1 - np.exp(-speed * np.arange(1, epochs + 1))) + rng.normal(0, 1, epochs)
        history = [{"epoch": e + 1, "val": float(v), "seconds": 0.5 * (e + 1), "forwards": 100 * (e + 1)}
                   for e, v in enumerate(vals)]
        outcomes = {split: {"kind": "top1", "correct": (rng.random(n) < ceiling / 100).astype(int).tolist()}
                    for split, n in (("val", val_images), ("test", test_images))}
        rows[t] = {"val": 100 * float(np.mean(outcomes["val"]["correct"])),
                   "test": 100 * float(np.mean(outcomes["test"]["correct"])), "seconds": 0.5 * epochs,
                   "forwards": 100 * epochs, "history": history, "outcomes": outcomes}
    return rows


def timed(fn, repeats: int, clock=time.perf_counter) -> float:
    """The median seconds of ``repeats`` calls on ``clock`` (wall by default; ``time.process_time``: this
    process's CPU time, which other processes on a busy machine do not inflate)."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seeds", type=int, default=1, help="seeds of the comparison (one replay each)")
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--test-images", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/perf/searches")
    args = parser.parse_args(argv)
    preset = load_bench_preset(args.preset)
    candidates, epochs = list(preset.hfr.candidates), preset.fgvc.max_epochs
    rng = np.random.default_rng(args.seed)
    sweeps = {r: random_sweep(candidates, epochs, args.val_images, args.test_images, rng) for r in range(args.seeds)}
    per_t = {t: {k: sweeps[0][t][k] for k in ("val", "test", "seconds", "forwards")} for t in candidates}
    result = {"candidates": candidates, "exhaustive": exhaustive_summary(per_t),
              "bootstrap": {"resamples": 1000, "seed": 0, "level": 0.95}}
    total = timed(lambda: search_rows(result, sweeps), args.repeats)
    cpu = timed(lambda: search_rows(result, sweeps), args.repeats, time.process_time)
    sources = [ReplaySource.from_sweep(s) for s in sweeps.values()]
    each = {name: timed(lambda n=name: [build_search(n).run(s) for s in sources], args.repeats) for name in search_names()}
    out = {"preset": preset.name, "candidates": len(candidates), "max_epochs": epochs, "seeds": args.seeds,
           "val_images": args.val_images, "test_images": args.test_images, "repeats": args.repeats,
           "seconds": total, "cpu_seconds": cpu, "load_average": os.getloadavg()[0],
           "target_seconds": TARGET_SECONDS, "under_target": total < TARGET_SECONDS,
           "per_search_seconds": each, "run": run_record(preset)}
    md = ["# Replaying every search on one comparison\n", run_header(out["run"]),
          f"A comparison of the `{preset.name}` preset's shape: {len(candidates)} candidates x {epochs} epochs, "
          f"{args.seeds} seed(s), {args.val_images} val / {args.test_images} test images. Every search replayed on "
          f"every seed (Optuna's 10 sampler seeds included) and scored with one paired bootstrap (1,000 "
          f"resamples): **{total:.2f} s** wall, {cpu:.2f} s of this process's CPU time (medians of "
          f"{args.repeats}; target under {TARGET_SECONDS:.0f} s wall: {'met' if out['under_target'] else 'NOT met'}; "
          f"the machine's load average was {out['load_average']:.1f}).\n",
          markdown_table(["search", "replay seconds (all seeds)"], [[n, s] for n, s in each.items()])]
    stem = write_report(args.out.rsplit("/", 1)[0], args.out.rsplit("/", 1)[1], out, "\n".join(md) + "\n")
    print(f"every search replayed on one comparison: {total:.2f} s -> {stem}.md")
    return out


if __name__ == "__main__":
    main()
