"""Is the demo DiT's pretraining real? Its card (loss, seconds) and linear probes: pretrained vs random init.

Loads the demo DiT (the shipped weights, or ``--model FOLDER``), then fits linear probes on synthetic fine-grained images it never saw
(other seeds than its pretraining data), resized as the benchmarks resize them: mean-pooled tokens of
block outputs at a few timesteps, standardised, multinomial logistic regression (full-batch LBFGS, L2
strength picked on a held-out fifth of the training set). The same probes run on the same architecture
at random init, and on raw pixels for reference. Writes ``results/demo/pretrain.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from aselect_bench.backbones import MODELS, load_backbone
from aselect_bench.backbones.noise import batch_noise
from aselect_bench.backbones.registry import DEMO_FOLDER
from aselect_bench.data.synth_fgvc import render_samples
from aselect_bench.data.transforms import RESIZE_RATIO
from aselect_bench.io import display_path
from aselect_bench.pretrain import load_demo_backbone
from aselect_bench.reports import markdown_table, run_record, write_report

NUM_CLASSES = 12
L2_GRID = (1e-4, 1e-3, 1e-2)
DEFAULT_TAP = MODELS["demo"].default_tap  # probed at every timestep next to the block outputs


def probe_images(per_class: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [N, 3, size, size] in [-1, 1], labels [N])``: rendered at 64 px, short side resized to
    ``1.14 * size``, centre crop (the benchmarks' evaluation view)."""
    images, labels = render_samples(per_class, NUM_CLASSES, 64, seed=seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    x = F.interpolate(x, size=round(size * RESIZE_RATIO), mode="bilinear", antialias=True, align_corners=False)
    pad = (x.shape[-1] - size) // 2
    return x[..., pad:pad + size, pad:pad + size].clamp(-1, 1), torch.from_numpy(labels).long()


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression on ``x`` ``[N, D]``, labels ``y`` ``[N]`` (LBFGS, L2 on the weights)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], NUM_CLASSES)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model


def top1(model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean() * 100)


def standard_error(top1_percent: float, n: int) -> float:
    """The binomial standard error (percentage points) of a top-1 measured on ``n`` test images."""
    p = top1_percent / 100
    return 100 * (p * (1 - p) / n) ** 0.5


def probe(train_x, train_y, test_x, test_y) -> dict:
    """``{"test_top1", "test_se", "l2"}``: a standardised linear probe; L2 picked on a held-out fifth of the
    train set; ``test_se`` is the binomial standard error of ``test_top1``."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))
    fit, held = order[: len(order) * 4 // 5], order[len(order) * 4 // 5:]
    val = {l2: top1(fit_logistic(train_x[fit], train_y[fit], l2), train_x[held], train_y[held]) for l2 in L2_GRID}
    l2 = max(L2_GRID, key=lambda v: (val[v], v))  # ties: the stronger regulariser
    acc = top1(fit_logistic(train_x, train_y, l2), test_x, test_y)
    return {"test_top1": acc, "test_se": standard_error(acc, len(test_y)), "l2": l2}


@torch.no_grad()
def pooled_features(backbone, images, t: int, taps: list[str], first_index: int = 0) -> dict:
    """``{tap: [N, C]}``: mean-pooled tokens at timestep ``t``, one fixed noise draw per image index."""
    out = {tap: [] for tap in taps}
    for start in range(0, len(images), 128):
        x = images[start:start + 128]
        noise = batch_noise(x.shape[1:], 0, t, range(first_index + start, first_index + start + len(x)))
        for tap, f in backbone.extract(x, t, taps, noise=noise).items():
            out[tap].append(f.mean((2, 3)))
    return {tap: torch.cat(v) for tap, v in out.items()}


def block_outputs(blocks) -> list[str]:
    return [f"blocks.{b}.out" for b in blocks]


def probed_taps(blocks) -> list[str]:
    """The block outputs of ``blocks`` and the preset's tap (once, if it is one of them)."""
    return list(dict.fromkeys(block_outputs(blocks) + [DEFAULT_TAP]))


def probe_grid(backbone, data, timesteps, blocks) -> dict:
    """``{"{tap}|{t}": probe result}`` over (block outputs + the preset's tap) x timesteps (one forward per
    timestep and split)."""
    (x, y), (xt, yt) = data
    taps, grid = probed_taps(blocks), {}
    for t in timesteps:
        train_f, test_f = pooled_features(backbone, x, t, taps), pooled_features(backbone, xt, t, taps, len(x))
        for tap in taps:
            grid[f"{tap}|{t}"] = probe(train_f[tap], y, test_f[tap], yt)
    return grid


def summarise(grid: dict, blocks) -> dict:
    """Best block-output cell, mean over the block-output cells, and the preset tap's best timestep (test top-1)."""
    outputs = set(block_outputs(blocks))
    acc = {k: v["test_top1"] for k, v in grid.items() if k.split("|")[0] in outputs}
    best = max(acc, key=acc.get)
    preset = {k: v["test_top1"] for k, v in grid.items() if k.split("|")[0] == DEFAULT_TAP}
    best_preset = max(preset, key=preset.get)
    return {"best": acc[best], "best_se": grid[best]["test_se"], "best_at": best,
            "mean": sum(acc.values()) / len(acc), "preset": preset[best_preset], "preset_at": best_preset}


def markdown(result: dict, timesteps, blocks) -> str:
    card, grid, s = result["card"], result["grid"], result["summary"]
    recipe = result.get("recipe") or {}
    models = list(grid)
    rows = [[f"{tap}, t={t}"] + [grid[m][f"{tap}|{t}"]["test_top1"] for m in models]
            for tap in probed_taps(blocks) for t in timesteps]
    fixed = card.get("fixed_draw_loss")
    lines = [
        "# The demo DiT: pretraining and linear probes\n",
        f"DDPM pretraining ({recipe.get('precision', '?')}, lr {recipe.get('lr', '?')}): {card['steps']} steps at batch "
        f"{card['batch_size']}; {card['data']}. Training loss {card['initial_loss']:.3f} -> {card['final_loss']:.3f}"
        + (f" (fixed-draw loss {fixed['before']:.3f} -> {fixed['after']:.3f})" if fixed else "")
        + f"; {card['seconds']:.0f} s.\n",
        f"Linear probes: {result['probe']}. Test top-1 in %: chance {result['chance_top1']:.1f}, raw pixels "
        f"{result['raw_pixels']['test_top1']:.1f}. A top-1 near 30% on {result['num_test']} test images has a binomial "
        f"standard error of {standard_error(30, result['num_test']):.1f} points.\n",
        markdown_table(["", *models], [
            ["best cell (± s.e.)"] + [f"{s[m]['best']:.1f} ± {s[m]['best_se']:.1f} ({s[m]['best_at'].replace('|', ', t=')})"
                                   for m in models],
            ["mean over block-output cells"] + [s[m]["mean"] for m in models],
            [f"preset tap {DEFAULT_TAP}, best timestep"] + [f"{s[m]['preset']:.1f} (t={s[m]['preset_at'].split('|')[1]})"
                                                           for m in models],
        ], floatfmt="{:.1f}"),
        markdown_table(["tap, timestep", *models], rows, floatfmt="{:.1f}"),
    ]
    study = result.get("checkpoint_study")
    lines.append("## Along the pretraining: the cub comparison at each kept checkpoint\n")
    if study:
        from pretrain_checkpoints import markdown_rows

        lines += [f"From `benchmarks/studies/pretrain_checkpoints.py` (`{result['checkpoint_study_file']}`): exhaustive search "
                  "vs the HFR choice with each checkpoint's weights; the last row is this model.\n",
                  markdown_rows(study)]
    else:
        lines.append("Not run for these weights: `make bench-pretrain` (after `make compare-exhaustive`).\n")
    return "\n".join(lines)


def checkpoint_study(path: Path, card: dict) -> dict | None:
    """The checkpoint study in ``path`` if its last row is the model of ``card`` (else ``None``)."""
    if not path.exists():
        return None
    study = json.loads(path.read_text())
    return study if study["rows"][-1]["weights_sha256"] == card["weights_sha256"] else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/demo/pretrain", help="output path without extension")
    parser.add_argument("--model", default=None, help="a pretrained demo folder (default: the shipped demo DiT, "
                        f"{DEMO_FOLDER})")
    parser.add_argument("--timesteps", default="0,50,100,300", help="comma-separated timesteps")
    parser.add_argument("--blocks", default="1,2,3,5", help="comma-separated block indices (block outputs)")
    parser.add_argument("--train-per-class", type=int, default=150, help="default: the demo preset's 150")
    parser.add_argument("--test-per-class", type=int, default=50, help="default: the demo preset's 50")
    parser.add_argument("--skip-random", action="store_true", help="probe only the pretrained model")
    args = parser.parse_args(argv)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    blocks = [int(b) for b in args.blocks.split(",")]
    start = time.perf_counter()
    folder = Path(args.model) if args.model else DEMO_FOLDER
    card = json.loads((folder / "card.json").read_text())
    models = {"pretrained": load_backbone(str(folder))}
    if not args.skip_random:
        models["random init"] = load_demo_backbone(pretrained=False)
    data = probe_images(args.train_per_class, seed=777), probe_images(args.test_per_class, seed=778)
    (x, y), (xt, yt) = data
    result = {
        "card": {k: v for k, v in card.items() if k != "recipe"}, "recipe": card.get("recipe"),
        "model_folder": display_path(folder), "run": run_record(None, models["pretrained"]),
        "probe": f"{len(x)} train / {len(xt)} test synthetic fine-grained images, {NUM_CLASSES} classes (seeds "
                 f"777/778); mean-pooled block outputs and the preset's tap ({DEFAULT_TAP}), standardised, L2 logistic regression (LBFGS)",
        "num_test": len(xt), "chance_top1": 100 / NUM_CLASSES, "raw_pixels": probe(x.flatten(1), y, xt.flatten(1), yt),
        "grid": {name: probe_grid(m, data, timesteps, blocks) for name, m in models.items()},
    }
    result["summary"] = {name: summarise(g, blocks) for name, g in result["grid"].items()}
    study_file = Path(args.out).parent / "checkpoints.json"
    result["checkpoint_study"], result["checkpoint_study_file"] = checkpoint_study(study_file, card), display_path(study_file)
    result["seconds"] = time.perf_counter() - start
    text = markdown(result, timesteps, blocks)
    write_report(Path(args.out).parent, Path(args.out).name, result, text)
    print(text)
    return result


if __name__ == "__main__":
    main()
