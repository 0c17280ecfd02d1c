"""Is the demo DiT's pretraining real? Loss curve numbers and linear probes: pretrained vs random init.

Pretrains (or loads) the demo DiT, then trains linear probes (mean-pooled tokens, standardised,
full-batch AdamW) on synthetic fine-grained images it never saw: on the pretrained model's features, on
the same architecture at random init, and on raw pixels. Writes results/demo/pretrain.json and .md.
"""

from __future__ import annotations

import argparse
import json

import torch

from aselect_bench.backbones import load_backbone
from aselect_bench.data.synth_fgvc import render_samples
from aselect_bench.io import atomic_write_json, atomic_write_text
from aselect_bench.pretrain import demo_folder, ensure_demo
from aselect_bench.reports import markdown_table


def probe(train_x, train_y, test_x, test_y, steps: int = 300, seed: int = 0) -> float:
    """Test accuracy (%) of a linear classifier on standardised features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(seed)
    model = torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(train_x), train_y).backward()
        opt.step()
    return float((model(test_x).argmax(1) == test_y).float().mean() * 100)


def pooled(backbone, images, t: int, tap: str) -> torch.Tensor:
    """Mean-pooled features ``[N, C]`` with a fixed noise draw per image."""
    from aselect_bench.backbones.noise import batch_noise

    out = []
    for start in range(0, len(images), 64):
        x = images[start:start + 64]
        noise = batch_noise(x.shape[1:], 0, t, range(start, start + len(x)))
        out.append(backbone.extract(x, t, [tap], noise=noise)[tap].mean((2, 3)))
    return torch.cat(out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/demo/pretrain")
    parser.add_argument("--timesteps", default="0,50,100,200,400")
    parser.add_argument("--blocks", default="1,2,3,5")
    args = parser.parse_args(argv)
    ensure_demo()
    card = json.loads((demo_folder() / "card.json").read_text())
    models = {"pretrained": load_backbone("demo"), "random init": load_backbone("demo", pretrained=False)}
    x, y = render_samples(40, 12, 64, seed=777)
    xt, yt = render_samples(20, 12, 64, seed=778)

    def to_input(a):
        t = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1
        return torch.nn.functional.interpolate(t, size=32, mode="bilinear", antialias=True, align_corners=False)

    x, xt, y, yt = to_input(x), to_input(xt), torch.from_numpy(y), torch.from_numpy(yt)
    result = {"card": card, "probe": "linear, mean-pooled tokens, 480 train / 240 test images, 12 classes",
              "raw_pixels_top1": probe(x.flatten(1), y, xt.flatten(1), yt), "chance_top1": 100 / 12, "grid": {}}
    timesteps = [int(t) for t in args.timesteps.split(",")]
    blocks = [int(b) for b in args.blocks.split(",")]
    for name, backbone in models.items():
        for b in blocks:
            for t in timesteps:
                tap = f"blocks.{b}.out"
                acc = probe(pooled(backbone, x, t, tap), y, pooled(backbone, xt, t, tap), yt)
                result["grid"][f"{name}|{tap}|{t}"] = acc
                print(f"{name:12s} {tap} t={t:4d}: {acc:.1f}%")
    best = {name: max(v for k, v in result["grid"].items() if k.startswith(name)) for name in models}
    result["best_top1"] = best
    atomic_write_json(f"{args.out}.json", result)
    rows = [[f"block {b}, t={t}"] + [result["grid"][f"{n}|blocks.{b}.out|{t}"] for n in models]
            for b in blocks for t in timesteps]
    md = ["# The demo DiT: pretraining and probes\n",
          f"DDPM pretraining: {card['steps']} steps at batch {card['batch_size']}, loss "
          f"{card['initial_loss']:.3f} -> {card['final_loss']:.3f} in {card['seconds']:.0f}s ({card['data']}).\n",
          f"Linear probes ({result['probe']}): raw pixels {result['raw_pixels_top1']:.1f}%, chance "
          f"{result['chance_top1']:.1f}%; best pretrained {best['pretrained']:.1f}%, best random init "
          f"{best['random init']:.1f}%.\n",
          markdown_table(["tap, timestep", *models], rows, floatfmt="{:.1f}")]
    atomic_write_text(f"{args.out}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
