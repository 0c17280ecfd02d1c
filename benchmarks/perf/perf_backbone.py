"""Early exit and tap overhead of Backbone.extract, measured side by side in one run.

- extract stopping after block 2 of a 12-block DiT-S/2 vs reading block 11 (ideal speed-up 12/3 = 4x);
- reading taps vs a plain diffusers forward of the same model (the overhead should be ~0).
Writes results/perf/backbone.json and backbone.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from diffusers import DiTTransformer2DModel

from aselect_bench.backbones import Backbone, DDPMNoise
from aselect_bench.backbones.dit import DiTFamily
from aselect_bench.backbones.registry import dit_config
from aselect_bench.reports import markdown_table, write_report


def timeit(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="results/perf/backbone")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = dit_config(depth=12, heads=6, head_dim=64, sample_size=32, patch_size=2)  # DiT-S/2 on 32x32 latents
    transformer = DiTTransformer2DModel(**config).eval()
    backbone = Backbone(DiTFamily(transformer), DDPMNoise.from_config(), name="dit-s-2-random")
    x0 = torch.randn(args.batch_size, 4, 32, 32)
    noise = torch.randn_like(x0)
    t = 500
    x_t = backbone.noise.add_noise(x0, t, noise)
    labels = torch.full((args.batch_size,), 1000)
    timesteps = torch.full((args.batch_size,), t)

    cases = {
        "extract blocks.2.out": lambda: backbone.extract_x0(x0, t, ["blocks.2.out"], noise=noise),
        "extract blocks.11.out": lambda: backbone.extract_x0(x0, t, ["blocks.11.out"], noise=noise),
        "extract all 9 components of blocks.11": lambda: backbone.extract_x0(
            x0, t, [f"blocks.11.{c}" for c in backbone.family.components], noise=noise),
        "plain diffusers forward (all 12 blocks + final layer)": lambda: transformer(
            x_t, timestep=timesteps, class_labels=labels),
    }
    with torch.inference_mode():
        for fn in cases.values():
            fn()  # warm-up
        samples = {name: [] for name in cases}
        for _ in range(args.repeats):  # interleaved, so drift affects every case alike
            for name, fn in cases.items():
                samples[name] += timeit(fn, 1)
    median = {name: statistics.median(v) for name, v in samples.items()}
    early = median["extract blocks.11.out"] / median["extract blocks.2.out"]
    overhead = median["extract blocks.11.out"] / median["plain diffusers forward (all 12 blocks + final layer)"]
    overhead_all = median["extract all 9 components of blocks.11"] / median[
        "plain diffusers forward (all 12 blocks + final layer)"]
    result = {
        "model": "DiT-S/2 architecture (12 blocks, width 384, 256 tokens), random weights, float32, CPU",
        "batch_size": args.batch_size, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "median_seconds": median,
        "early_exit_speedup_block2_vs_block11": early, "early_exit_ideal": 12 / 3,
        "early_exit_share_of_ideal": early / (12 / 3),
        "tap_cost_vs_plain_forward": overhead, "all_components_cost_vs_plain_forward": overhead_all,
    }
    rows = [[name, median[name] * 1000, args.batch_size / median[name]] for name in cases]
    md = ["# Backbone.extract: early exit and tap overhead\n", result["model"] + f", batch {args.batch_size}, "
          f"median of {args.repeats} interleaved runs.\n",
          markdown_table(["case", "ms / batch", "images / s"], rows, floatfmt="{:.1f}"),
          f"\n- early exit, block 2 vs block 11: **{early:.2f}x** (ideal 12/3 = 4.00x, "
          f"{100 * early / 4:.0f}% of ideal)",
          f"- reading `blocks.11.out` costs **{overhead:.3f}x** a plain diffusers forward "
          f"(that forward also runs the final layer); all nine components: {overhead_all:.3f}x"]
    write_report(Path(args.out).parent, Path(args.out).name, result, "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
