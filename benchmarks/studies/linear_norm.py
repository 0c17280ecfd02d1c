"""Which normalisation should the linear probe use? BatchNorm (per feature, MAE's probe) vs LayerNorm (per image).

On the demo DiT's features (the pretraining benchmark's probe images: 150 train / 50 test per class), the
bench's ``LinearHead`` is trained with each norm exactly as the FGVC benchmark trains it (AdamW, the preset's
learning rate and weight decay, warm-up + cosine, 40 epochs, batch 64), at a few block/timestep cells, next
to a full-batch L2 logistic regression on standardised features (the reference of
``benchmarks/studies/pretrain_demo.py``). Writes ``results/demo/linear_norm.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from pretrain_demo import NUM_CLASSES, pooled_features, probe, probe_images, standard_error

from aselect_bench.heads.probes import NORMS, LinearHead
from aselect_bench.pretrain import load_demo_backbone
from aselect_bench.reports import markdown_table, run_record, write_report
from aselect_bench.tasks.common import FrozenBackboneTask

CELLS = (("blocks.2.out", 0), ("blocks.2.out", 50), ("blocks.3.mlp", 50), ("blocks.4.mlp", 50))


def train_linear_head(norm: str, x, y, lr: float, weight_decay: float, epochs: int = 40, batch: int = 64,
                      warmup_fraction: float = 0.1, seed: int = 0) -> LinearHead:
    """The bench's linear probe on pooled features ``x`` ``[N, C]`` (as a ``[N, C, 1, 1]`` grid)."""
    torch.manual_seed(seed)
    head = LinearHead(x.shape[1], NUM_CLASSES, norm=norm)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * math.ceil(len(x) / batch)
    warmup = int(warmup_fraction * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: FrozenBackboneTask.lr_factor(s, warmup, total))
    head.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(batch):
            loss = F.cross_entropy(head(x[idx, :, None, None]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/demo/linear_norm", help="output path without extension")
    parser.add_argument("--lr", type=float, default=3e-2, help="the demo preset's linear-probe learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="the presets' weight decay")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    backbone = load_demo_backbone()
    (x, y), (xt, yt) = probe_images(150, seed=777), probe_images(50, seed=778)
    rows = []
    for tap, t in CELLS:
        train_f = pooled_features(backbone, x, t, [tap])[tap]
        test_f = pooled_features(backbone, xt, t, [tap], len(x))[tap]
        row = {"tap": tap, "timestep": t, "logistic_regression": probe(train_f, y, test_f, yt)["test_top1"]}
        for norm in NORMS:
            head = train_linear_head(norm, train_f, y, args.lr, args.weight_decay)
            with torch.no_grad():
                row[norm] = float((head(test_f[:, :, None, None]).argmax(1) == yt).float().mean() * 100)
        rows.append(row)
        print(row, flush=True)
    result = {"cells": rows, "num_train": len(x), "num_test": len(xt), "lr": args.lr,
              "weight_decay": args.weight_decay, "seconds": time.perf_counter() - start,
              "run": run_record(None, backbone)}
    gain = sum(r["batchnorm"] - r["layernorm"] for r in rows) / len(rows)
    text = "\n".join([
        "# Linear probe normalisation on the demo DiT\n",
        f"The bench's `LinearHead` (mean-pooled tokens -> norm -> linear), trained as the FGVC benchmark trains it "
        f"(AdamW lr {args.lr}, weight decay {args.weight_decay}, warm-up + cosine, 40 epochs, batch 64) on "
        f"{len(x)} train / {len(xt)} test synthetic images (12 classes, chance 8.3%); test top-1 in %, binomial "
        f"standard error about {standard_error(25, len(xt)):.1f} points. Reference: full-batch L2 logistic "
        f"regression on standardised features.\n",
        markdown_table(["tap", "timestep", "batchnorm", "layernorm", "logistic regression"],
                       [[r["tap"], r["timestep"], r["batchnorm"], r["layernorm"], r["logistic_regression"]]
                        for r in rows], floatfmt="{:.1f}"),
        f"\nMean gain of batchnorm over layernorm: **{gain:+.1f} points**.\n",
    ])
    write_report(Path(args.out).parent, Path(args.out).name, result, text)
    print(text)
    return result


if __name__ == "__main__":
    main()
