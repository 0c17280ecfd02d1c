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

import lightning as L

from aselect_bench.analyses.components import cold_feature_cache
from aselect_bench.backbones import load_backbone
from aselect_bench.config import load_preset
from aselect_bench.experiments import build_experiment
from aselect_bench.io import atomic_write_json, atomic_write_text
from aselect_bench.reports import markdown_table


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and hasattr(self, "start"):
            self.seconds.append(time.perf_counter() - self.start)


def run(exp, cache: bool, precision: str, epochs: int, runs_dir) -> dict:
    exp.backbone.set_precision(precision)
    exp.preset["fgvc"]["train_augment"] = not cache  # the cache needs fixed views; the uncached run recomputes
    exp.datamodule.train_augment = False  # same images in both runs: only the cache differs
    timer = EpochTimer()
    L.seed_everything(0, verbose=False)
    task = exp.make_task(50)
    task.cache_features = cache
    trainer = L.Trainer(max_epochs=epochs, callbacks=[timer], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=str(runs_dir))
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
    with tempfile.TemporaryDirectory() as tmp, cold_feature_cache():  # features measured from cold
        preset = load_preset("demo")
        args.epochs = args.epochs or preset["fgvc"]["max_epochs"]
        preset.update(data_root=f"{tmp}/data", num_workers=0)
        backbone = load_backbone("demo")  # the pretrained demo DiT: the bf16-vs-float32 accuracy check needs real features
        exp = build_experiment("fgvc", "cub", preset, backbone)
        cases = {
            "float32, no cache": run(exp, False, "32", args.epochs, tmp),
            "float32, feature cache": run(exp, True, "32", args.epochs, tmp),
            "bf16, no cache": run(exp, False, "bf16", args.epochs, tmp),
        }
    uncached, cached = cases["float32, no cache"], cases["float32, feature cache"]
    result = {"dataset": "synthetic cub layout (demo preset sizes)", "epochs": args.epochs, "cases": cases,
              "cached_epoch_speedup": uncached["later_epoch_median"] / cached["later_epoch_median"],
              "bf16_val_top1_minus_fp32": cases["bf16, no cache"]["val_top1"] - uncached["val_top1"],
              "bf16_test_top1_minus_fp32": cases["bf16, no cache"]["test_top1"] - uncached["test_top1"]}
    atomic_write_json(f"{args.out}.json", result)
    rows = [[name, c["first_epoch"], c["later_epoch_median"], c["forwards"], c["val_top1"], c["test_top1"]]
            for name, c in cases.items()]
    md = ["# Probe training: feature cache and precision (demo preset)\n",
          markdown_table(["case", "epoch 1 (s)", "later epochs, median (s)", "backbone forwards", "val top-1 (%)",
                          "test top-1 (%)"],
                         rows),
          f"\n- a cached epoch is **{result['cached_epoch_speedup']:.1f}x** faster than an uncached one",
          f"- a cached epoch is {'at least' if result['cached_epoch_speedup'] >= 10 else 'below'} the 10x target",
          f"- bf16 autocast changes top-1 by {result['bf16_val_top1_minus_fp32']:+.2f} points on val "
          f"({len(exp.datamodule.sets['val'])} images) and "
          f"{result['bf16_test_top1_minus_fp32']:+.2f} on test ({len(exp.datamodule.sets['test'])} images)"]
    atomic_write_text(f"{args.out}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
