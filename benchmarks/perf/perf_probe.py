"""Probe training speed with and without the feature cache, and bf16 vs float32 accuracy (demo preset).

Each run trains the demo preset's probe (fixed views) on a synthetic dataset; a callback times every
epoch. The cached run pays the backbone once (epoch 1); afterwards it reads memory-mapped features and
its loader yields labels only (no image is decoded).
Writes results/perf/probe.json and probe.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L

from aselect_bench.backbones import load_backbone
from aselect_bench.cache import cold_feature_cache
from aselect_bench.experiments import build_experiment
from aselect_bench.reports import markdown_table, run_header, run_record, write_report
from aselect_bench.settings import load_bench_preset
from aselect_bench.tasks.fit import make_trainer


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and hasattr(self, "start"):
            self.seconds.append(time.perf_counter() - self.start)


def run(exp, cache: bool, precision: str, epochs: int, runs_dir, feature_cache_root) -> dict:
    """One probe training at t=50 on the preset's fixed views, with or without the feature cache."""
    exp.backbone.set_precision(precision)
    timer = EpochTimer()
    L.seed_everything(0, verbose=False)
    task = exp.make_task(50, feature_cache_root=feature_cache_root)
    task.cache_features = cache  # same fixed views in both runs: only the cache differs
    trainer, _ = make_trainer(runs_dir, "perf-probe", epochs, [timer], progress=False, checkpoint=False,
                              logger=False)
    before = exp.backbone.forwards
    trainer.fit(task, datamodule=exp.datamodule)
    val = trainer.validate(task, datamodule=exp.datamodule, verbose=False)[0]["val/top1"]
    test = trainer.test(task, datamodule=exp.datamodule, verbose=False)[0]["test/top1"]
    return {"epoch_seconds": timer.seconds, "first_epoch": timer.seconds[0],
            "later_epoch_median": statistics.median(timer.seconds[1:]), "forwards": exp.backbone.forwards - before,
            "val_top1": val, "test_top1": test}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo preset's probe schedule")
    parser.add_argument("--out", default="results/perf/probe")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, cold_feature_cache() as features:  # features measured from cold
        preset = load_bench_preset("demo").override(data_root=f"{tmp}/data", num_workers=0)
        epochs = args.epochs or preset.fgvc.max_epochs
        backbone = load_backbone("demo")  # the pretrained demo DiT: the bf16-vs-float32 accuracy check needs real features
        exp = build_experiment("fgvc", "cub", preset, backbone)
        cases = {
            "float32, no cache": run(exp, False, "32", epochs, tmp, features),
            "float32, feature cache": run(exp, True, "32", epochs, tmp, features),
            "bf16, no cache": run(exp, False, "bf16", epochs, tmp, features),
        }
    uncached, cached = cases["float32, no cache"], cases["float32, feature cache"]
    result = {"dataset": "synthetic cub layout (demo preset sizes)", "epochs": epochs, "cases": cases,
              "cached_epoch_speedup": uncached["later_epoch_median"] / cached["later_epoch_median"],
              "bf16_val_top1_minus_fp32": cases["bf16, no cache"]["val_top1"] - uncached["val_top1"],
              "bf16_test_top1_minus_fp32": cases["bf16, no cache"]["test_top1"] - uncached["test_top1"],
              "run": run_record(preset, backbone)}
    rows = [[name, c["first_epoch"], c["later_epoch_median"], c["forwards"], c["val_top1"], c["test_top1"]]
            for name, c in cases.items()]
    md = ["# Probe training: feature cache and precision (demo preset)\n", run_header(result["run"]),
          markdown_table(["case", "epoch 1 (s)", "later epochs, median (s)", "backbone forwards", "val top-1 (%)",
                          "test top-1 (%)"],
                         rows),
          f"\n- a cached epoch is **{result['cached_epoch_speedup']:.1f}x** faster than an uncached one",
          f"- a cached epoch is {'at least' if result['cached_epoch_speedup'] >= 10 else 'below'} the 10x target",
          f"- bf16 autocast changes top-1 by {result['bf16_val_top1_minus_fp32']:+.2f} points on val "
          f"({len(exp.datamodule.sets['val'])} images) and "
          f"{result['bf16_test_top1_minus_fp32']:+.2f} on test ({len(exp.datamodule.sets['test'])} images)"]
    write_report(Path(args.out).parent, Path(args.out).name, result, "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
