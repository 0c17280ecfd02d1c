"""Feature-extraction performance against the limits of this machine, measured side by side in one run.

On the DiT-XL/2 architecture at 256 px (random weights: weights do not change the speed) and on the
demo model: images/s for a full forward and for stopping after blocks 3, 9 and 20 (against the ideal
28/(b+1)); float32 vs bf16 autocast; with and without the latent cache; achieved FLOP/s against the
matrix-multiply peak measured in the same run; peak memory at batch 8 and 32 (each in a fresh process);
and the HFR argmax under float32 vs bf16. Writes results/perf/extract.json and extract.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

import torch

from aselect_bench.backbones import load_backbone
from aselect_bench.cache import LatentCache
from aselect_bench.io import atomic_write_json, atomic_write_text
from aselect_bench.reports import markdown_table


def matmul_peak(dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured matrix-multiply throughput (FLOP/s) for ``dtype`` on this machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def transformer_flops(backbone, blocks_run: int, tokens: int) -> float:
    """FLOPs per image of the blocks actually run: linear layers (24 N D^2), attention (4 N^2 D), adaLN."""
    d = backbone.hidden_size
    per_block = 24 * tokens * d * d + 4 * tokens * tokens * d + 2 * 6 * d * d
    return per_block * blocks_run


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(source: str, batch: int, precision: str) -> float:
    """Peak resident memory (MiB) of a fresh process that loads ``source`` and extracts one batch."""
    code = (
        "import resource, torch\n"
        "from aselect_bench.backbones import load_backbone\n"
        f"b = load_backbone({source!r}, pretrained=False).set_precision({precision!r})\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"x = torch.rand({batch}, 3, b.image_size, b.image_size) * 2 - 1\n"
        f"b.extract(x, 500, ['blocks.{{}}.out'.format(b.num_blocks - 1)])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, base / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0])


def measure_model(source: str, batch: int, exits: list[int], repeats: int, peaks: dict) -> dict:
    backbone = load_backbone(source, pretrained=False)
    images = torch.rand(batch, 3, backbone.image_size, backbone.image_size) * 2 - 1
    tokens = (backbone.image_size // backbone.patch_size) ** 2
    x0 = backbone.encode(images)
    noise = torch.randn_like(x0)
    rows = {}
    for precision in ("32", "bf16"):
        backbone.set_precision(precision)
        full = median_time(lambda: backbone.extract_x0(x0, 500, [f"blocks.{backbone.num_blocks - 1}.out"],
                                                       noise=noise), repeats)
        rows[precision] = {"full_seconds": full, "full_images_per_s": batch / full, "exits": {}}
        for b in exits:
            sec = median_time(lambda b=b: backbone.extract_x0(x0, 500, [f"blocks.{b}.out"], noise=noise), repeats)
            ideal = backbone.num_blocks / (b + 1)
            rows[precision]["exits"][str(b)] = {"seconds": sec, "images_per_s": batch / sec, "speedup": full / sec,
                                                "ideal": ideal, "share_of_ideal": full / sec / ideal}
        flops = transformer_flops(backbone, backbone.num_blocks, tokens) * batch
        peak = peaks["bf16" if precision == "bf16" else "32"]
        rows[precision]["achieved_flops"] = flops / full
        rows[precision]["matmul_peak_flops"] = peak
        rows[precision]["share_of_peak"] = flops / full / peak
    rows["bf16_speedup"] = rows["32"]["full_seconds"] / rows["bf16"]["full_seconds"]
    if backbone.vae is not None:  # the latent cache: encode + extract, vs extract from cached latents
        backbone.set_precision("bf16")
        cache = LatentCache()
        backbone.latent_cache = cache
        backbone.encode(images)  # fills the cache
        with_cache = median_time(lambda: backbone.extract(images, 500, ["blocks.9.query"], noise=noise), repeats)
        backbone.latent_cache = None
        without = median_time(lambda: backbone.extract(images, 500, ["blocks.9.query"], noise=noise), repeats)
        rows["latent_cache"] = {"tap": "blocks.9.query", "seconds_without": without, "seconds_with": with_cache,
                                "speedup": without / with_cache}
    return {"source": source, "batch": batch, "tokens": tokens, "num_blocks": backbone.num_blocks,
            "hidden_size": backbone.hidden_size, **rows}


def hfr_argmax_agreement(source: str, num_images: int) -> dict:
    """The HFR curve's argmax under float32 and bf16 autocast on the same images and noise."""
    from aselect_bench.backbones import PRESETS
    from aselect_bench.hfr import select_timestep

    backbone = load_backbone(source)
    tap = PRESETS[source].default_tap if source in PRESETS else "blocks.0.out"
    g = torch.Generator().manual_seed(0)
    images = torch.rand(num_images, 3, backbone.image_size, backbone.image_size, generator=g) * 2 - 1
    out = {}
    for precision in ("32", "bf16"):
        backbone.set_precision(precision)
        r = select_timestep(backbone, images, tap=tap)
        out[precision] = {"timestep": r.timestep, "seconds": r.seconds, "curve": {str(k): v for k, v in r.curve.items()}}
    out["same_argmax"] = out["32"]["timestep"] == out["bf16"]["timestep"]
    out["max_abs_curve_difference"] = max(abs(out["32"]["curve"][t] - out["bf16"]["curve"][t]) for t in out["32"]["curve"])
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--xl-batch", type=int, default=8, help="batch for the DiT-XL/2 timings")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default="results/perf/extract")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    peaks = {"32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__}, "matmul_peak_flops": peaks}
    with torch.inference_mode():
        result["dit-xl-2-256"] = measure_model("dit-xl-2-256", args.xl_batch, [3, 9, 20], args.repeats, peaks)
        result["dit-xl-2-256-batch32"] = measure_model("dit-xl-2-256", 32, [], 1, peaks)
        result["demo"] = measure_model("demo", 64, [1, 2, 4], args.repeats, peaks)
    if not args.skip_memory:
        result["peak_memory_mib"] = {f"{src} batch {b} float32": peak_memory(src, b, "32")
                                     for src in ("dit-xl-2-256", "demo") for b in (8, 32)}
    result["hfr_argmax_fp32_vs_bf16"] = hfr_argmax_agreement("demo", 32)
    atomic_write_json(f"{args.out}.json", result)
    atomic_write_text(f"{args.out}.md", render(result))
    print(render(result))
    return result


def render(r: dict) -> str:
    lines = ["# Feature extraction performance\n",
             f"Machine: {r['machine']['cpu']}, {r['machine']['threads']} threads, torch {r['machine']['torch']}. "
             f"Measured matmul peak: {r['matmul_peak_flops']['32'] / 1e9:.0f} GFLOP/s float32, "
             f"{r['matmul_peak_flops']['bf16'] / 1e9:.0f} GFLOP/s bf16.\n"]
    for key in ("dit-xl-2-256", "dit-xl-2-256-batch32", "demo"):
        m = r[key]
        lines.append(f"## {m['source']}: batch {m['batch']}, {m['num_blocks']} blocks, width {m['hidden_size']}, "
                     f"{m['tokens']} tokens\n")
        rows = []
        for p in ("32", "bf16"):
            rows.append([p, "full", m[p]["full_images_per_s"], None, None, 100 * m[p]["share_of_peak"]])
            for b, e in m[p]["exits"].items():
                rows.append([p, f"stop after block {b}", e["images_per_s"], e["speedup"], e["ideal"],
                             None])
        lines.append(markdown_table(["precision", "forward", "images/s", "speed-up", "ideal", "% of matmul peak"],
                                    rows))
        shares = [e["share_of_ideal"] for p in ("32", "bf16") for e in m[p]["exits"].values()]
        if shares:
            lines.append(f"- early exit reaches {100 * min(shares):.0f}-{100 * max(shares):.0f}% of its ideal speed-up")
        lines.append(f"- bf16 autocast vs float32 (full forward): **{m['bf16_speedup']:.2f}x**")
        if "latent_cache" in m:
            lc = m["latent_cache"]
            lines.append(f"- latent cache (bf16, {lc['tap']}): {lc['seconds_without']:.2f}s -> {lc['seconds_with']:.2f}s "
                         f"per batch (**{lc['speedup']:.2f}x**)")
        lines.append("")
    if "peak_memory_mib" in r:
        lines += ["## Peak resident memory (fresh process: weights + one batch)\n",
                  markdown_table(["case", "MiB"], [[k, v] for k, v in r["peak_memory_mib"].items()], "{:.0f}")]
    h = r["hfr_argmax_fp32_vs_bf16"]
    lines.append(f"\n## bf16 and the HFR choice (demo, 32 images, 21 candidates)\n\nargmax float32 t={h['32']['timestep']}, "
                 f"bf16 t={h['bf16']['timestep']} (same: {h['same_argmax']}); largest curve difference "
                 f"{h['max_abs_curve_difference']:.2e}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
