"""Feature-extraction performance against the limits of this machine, measured side by side in one run.

On the DiT-XL/2 architecture at 256 px (random weights: weights do not change the speed), on a CPU-sized
SD3 (MMDiT joint blocks with the 333-token empty-prompt context) and on the demo model: images/s for a full forward and for stopping after blocks 3, 9 and 20 (against the ideal
28/(b+1)); float32 vs bf16 autocast; with and without the latent cache; achieved FLOP/s against the
matrix-multiply peak measured in the same run; peak memory at batch 8 and 32 (each in a fresh process);
the HFR argmax under float32 vs bf16; and the FLOPs per image at paper scale (DiT-XL/2 at 256 px,
SD3-medium at 512 px, to block 9 and to full depth), counted from the real architectures.
Writes results/perf/extract.json and extract.md.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from aselect_bench.backbones import load_backbone
from aselect_bench.backbones.flops import flops_per_image
from aselect_bench.backbones.registry import ModelSpec, sd3_config
from aselect_bench.backbones.sd3 import random_backbone
from aselect_bench.cache import LatentCache
from aselect_bench.reports import markdown_table, write_report


def matmul_peak(dtype, n: int = 4096, repeats: int = 3, device="cpu") -> float:
    """Measured matrix-multiply throughput (FLOP/s) for ``dtype`` on ``device``: the best of ``repeats``
    ``n x n`` products after a warm-up (a peak, so the best time, not the typical one)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    sync()
    return 2 * n**3 / best_time(lambda: (a @ b, sync()), repeats, warm_up=False)


#: A CPU-sized SD3: SD3-medium's depth (24 joint blocks), text dims and 333-token context, width 384 (6 heads),
#: pixel space at 32 px with patch 2 (256 image tokens).
SD3_CPU = ModelSpec("sd3-cpu", sd3_config(heads=6, sample_size=32, in_channels=3, pos_embed_max_size=32), family="sd3")


def paper_scale_flops() -> dict:
    """FLOPs per image (transformer only, VAE left out) of DiT-XL/2 at 256 px and SD3-medium at 512 px, to
    block 9 (query, the authors' tap, and out) and to full depth: built on the meta device, no weights."""
    out = {}
    for name in ("dit-xl-2-256", "sd3-medium"):
        with torch.device("meta"):
            backbone = load_backbone(name, pretrained=False, device="meta")
        for tap in ("blocks.9.query", "blocks.9.out", f"blocks.{backbone.num_blocks - 1}.out"):
            out[f"{name} ({backbone.image_size} px) to {tap}"] = flops_per_image(backbone, tap)
    return out


def best_times(fns: dict, repeats: int, warm_up: bool = True) -> dict:
    """``{name: shortest seconds}`` over ``repeats`` rounds that call every function once (after one warm-up
    call each). Other load on the machine only ever adds time, so the minimum is the most repeatable
    estimate; interleaving makes a slow phase hit every case alike, so their ratios stay fair."""
    if warm_up:
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def best_time(fn, repeats: int, warm_up: bool = True) -> float:
    """The shortest of ``repeats`` timed calls of one function (see :func:`best_times`)."""
    return best_times({"fn": fn}, repeats, warm_up)["fn"]


def peak_rss(code: str) -> list[float]:
    """Run ``code`` in a fresh Python process where ``hwm()`` returns its resident-memory high-water mark in MiB
    (``VmHWM``; ``ru_maxrss`` would carry the parent's peak across ``exec``); the numbers it prints."""
    hwm = ("def hwm():\n"
           "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024\n")
    out = subprocess.run([sys.executable, "-c", hwm + code], capture_output=True, text=True, check=True).stdout
    return [float(v) for v in out.split()]


def peak_memory(source: str, batch: int, precision: str) -> dict:
    """Peak resident memory (MiB) of a fresh process that loads ``source`` and extracts one batch: the
    high-water mark after loading and after the batch."""
    peak, base = peak_rss(
        "import torch\n"
        "from aselect_bench.backbones import load_backbone\n"
        f"b = load_backbone({source!r}, pretrained=False).set_precision({precision!r})\n"
        "base = hwm()\n"
        f"x = torch.rand({batch}, 3, b.image_size, b.image_size) * 2 - 1\n"
        "with torch.inference_mode():\n"
        "    b.extract(x, 500, ['blocks.{}.out'.format(b.num_blocks - 1)])\n"
        "print(hwm(), base)\n"
    )
    return {"peak": peak, "after_loading": base, "extraction": peak - base}


def measure_model(source, batch: int, exits: list[int], repeats: int, peaks: dict,
                  latent_cache: bool = True) -> dict:
    """``source``: a registered model's name (random weights) or a ready :class:`Backbone`."""
    backbone = load_backbone(source, pretrained=False) if isinstance(source, str) else source
    images = torch.rand(batch, 3, backbone.image_size, backbone.image_size) * 2 - 1
    tokens = (backbone.image_size // backbone.patch_size) ** 2
    x0 = backbone.encode(images)
    noise = torch.randn_like(x0)
    rows = {}
    for precision in ("32", "bf16"):
        backbone.set_precision(precision)
        last = backbone.num_blocks - 1
        seconds = best_times({b: (lambda b=b: backbone.extract_x0(x0, 500, [f"blocks.{b}.out"], noise=noise))
                                          for b in [last, *exits]}, repeats)
        full = seconds[last]
        rows[precision] = {"full_seconds": full, "full_images_per_s": batch / full, "exits": {}}
        for b in exits:
            sec = seconds[b]
            ideal = backbone.num_blocks / (b + 1)
            rows[precision]["exits"][str(b)] = {"seconds": sec, "images_per_s": batch / sec, "speedup": full / sec,
                                                "ideal": ideal, "share_of_ideal": full / sec / ideal}
        flops = flops_per_image(backbone, f"blocks.{last}.out") * batch
        peak = peaks["bf16" if precision == "bf16" else "32"]
        rows[precision]["achieved_flops"] = flops / full
        rows[precision]["matmul_peak_flops"] = peak
        rows[precision]["share_of_peak"] = flops / full / peak
    rows["bf16_speedup"] = rows["32"]["full_seconds"] / rows["bf16"]["full_seconds"]
    if latent_cache and backbone.vae is not None:  # the latent cache: encode + extract, vs extract from cached latents
        backbone.set_precision("bf16")
        cache = LatentCache()
        backbone.latent_cache = cache
        backbone.encode(images)  # fills the cache
        with_cache = best_time(lambda: backbone.extract(images, 500, ["blocks.9.query"], noise=noise), repeats)
        backbone.latent_cache = None
        without = best_time(lambda: backbone.extract(images, 500, ["blocks.9.query"], noise=noise), repeats)
        rows["latent_cache"] = {"tap": "blocks.9.query", "seconds_without": without, "seconds_with": with_cache,
                                "speedup": without / with_cache}
    return {"source": backbone.name, "batch": batch, "tokens": tokens, "num_blocks": backbone.num_blocks,
            "hidden_size": backbone.hidden_size, **rows}


def hfr_argmax_agreement(preset_name: str = "demo", dataset: str = "cub") -> dict:
    """The HFR curve's argmax under float32 and bf16 autocast: the preset's scan (tap, candidates,
    calibration images of ``dataset``, noise) run twice, once per precision."""
    from aselect_bench.experiments import build_experiment
    from aselect_bench.selectors import select_timestep
    from aselect_bench.settings import load_bench_preset

    preset = load_bench_preset(preset_name)
    exp = build_experiment("fgvc", dataset, preset, load_backbone(preset.backbone))
    images, hfr = exp.calibration_images(), preset.hfr
    out = {"preset": preset_name, "dataset": dataset, "tap": exp.hfr_tap, "num_images": len(images)}
    for precision in ("32", "bf16"):
        exp.backbone.set_precision(precision)
        r = select_timestep(exp.backbone, images, hfr.candidates, exp.hfr_tap, noise_draws=hfr.noise_draws,
                            seed=preset.seed, progress=False, **hfr.band())
        out[precision] = {"timestep": r.timestep, "seconds": r.seconds, "curve": {str(k): v for k, v in r.curve.items()}}
    out["same_argmax"] = out["32"]["timestep"] == out["bf16"]["timestep"]
    out["max_abs_curve_difference"] = max(abs(out["32"]["curve"][t] - out["bf16"]["curve"][t]) for t in out["32"]["curve"])
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (the best is kept)")
    parser.add_argument("--xl-batch", type=int, default=8, help="batch for the DiT-XL/2 timings")
    parser.add_argument("--sd3-batch", type=int, default=8, help="batch for the CPU-sized SD3 timings")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default="results/perf/extract")
    parser.add_argument("--flops-only", action="store_true",
                        help="only the paper-scale FLOPs table (seconds, no timing): results/perf/flops.{json,md}")
    args = parser.parse_args(argv)
    if args.flops_only:
        return write_flops(Path(args.out).parent / "flops")
    torch.manual_seed(0)
    peaks = {"32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__}, "matmul_peak_flops": peaks}
    with torch.inference_mode():
        result["dit-xl-2-256"] = measure_model("dit-xl-2-256", args.xl_batch, [3, 9, 20], args.repeats, peaks)
        result["dit-xl-2-256-batch32"] = measure_model("dit-xl-2-256", 32, [], 1, peaks, latent_cache=False)
        result["sd3-cpu"] = measure_model(random_backbone(SD3_CPU, seed=0), args.sd3_batch, [9], args.repeats, peaks)
        result["demo"] = measure_model("demo", 64, [1, 2, 4], args.repeats, peaks)
    result["flops_per_image"] = paper_scale_flops()
    if not args.skip_memory:
        result["peak_memory_mib"] = {f"{src} batch {b} float32": peak_memory(src, b, "32")
                                     for src in ("dit-xl-2-256", "demo") for b in (8, 32)}
    result["hfr_argmax_fp32_vs_bf16"] = hfr_argmax_agreement()
    write_report(Path(args.out).parent, Path(args.out).name, result, render(result))
    print(render(result))
    return result


def flops_markdown(flops: dict) -> list[str]:
    """The paper-scale FLOPs table and how it counts."""
    return ["## FLOPs per image at paper scale (transformer only, from the real architectures)\n",
            markdown_table(["model and depth", "GFLOPs"], [[k, v / 1e9] for k, v in flops.items()], "{:.1f}"),
            "\n2 FLOPs per multiply-add of the matrix products (DiT-XL/2's full forward: 237.3 GFLOPs = "
            "2 x the 118.6 G the DiT paper reports); SD3 includes the 333 context tokens of the joint "
            "attention.\n"]


def write_flops(stem: Path) -> dict:
    """``flops.{json,md}``: FLOPs per image of DiT-XL/2 and the SD3 family to the paper's tap and full depth."""
    from aselect_bench.reports import code_version

    result = {"flops_per_image": paper_scale_flops(), "torch": torch.__version__, "code_version": code_version()}
    text = "\n".join(["# FLOPs per image (`python benchmarks/perf/perf_extract.py --flops-only`)\n",
                       f"_Code {result['code_version']}, torch {result['torch']}._\n",
                       *flops_markdown(result["flops_per_image"])])
    write_report(stem.parent, stem.name, result, text + "\n")
    print(text)
    return result


def targets(r: dict) -> list[list]:
    """``[target, measured, met]`` rows for the issue's targets that this benchmark measures."""
    xl, xl32 = r["dit-xl-2-256"], r["dit-xl-2-256-batch32"]
    shares = [e["share_of_ideal"] for m in (xl, r["demo"]) for p in ("32", "bf16") for e in m[p]["exits"].values()]
    peak32 = max(xl32[p]["share_of_peak"] for p in ("32", "bf16"))
    h = r["hfr_argmax_fp32_vs_bf16"]
    return [
        ["early exit >= 85% of its ideal speed-up", f"{100 * min(shares):.1f}% (worst case)", min(shares) >= 0.85],
        ["bf16 >= 2x float32 (DiT-XL/2, batch 32)", f"{xl32['bf16_speedup']:.2f}x", xl32["bf16_speedup"] >= 2],
        ["bf16 keeps the HFR choice", f"t={h['32']['timestep']} vs t={h['bf16']['timestep']}", h["same_argmax"]],
        [">= 40% of the matmul peak at batch 32 (DiT-XL/2)", f"{100 * peak32:.0f}%", peak32 >= 0.4],
    ]


def render(r: dict) -> str:
    lines = ["# Feature extraction performance\n",
             f"Machine: {r['machine']['cpu']}, {r['machine']['threads']} threads, torch {r['machine']['torch']}. "
             f"Measured matmul peak: {r['matmul_peak_flops']['32'] / 1e9:.0f} GFLOP/s float32, "
             f"{r['matmul_peak_flops']['bf16'] / 1e9:.0f} GFLOP/s bf16.\n"]
    for key in ("dit-xl-2-256", "dit-xl-2-256-batch32", "sd3-cpu", "demo"):
        if key not in r:  # results written before the SD3 case existed
            continue
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
            lines.append(f"- early exit reaches {100 * min(shares):.0f}-{100 * max(shares):.0f}% of its ideal speed-up "
                         f"(the ideal D/(b+1) counts blocks only: noising, patch and timestep embedding are paid by "
                         f"every call, a larger share of a small model's forward)")
        lines.append(f"- bf16 autocast vs float32 (full forward): **{m['bf16_speedup']:.2f}x**")
        if "latent_cache" in m:
            lc = m["latent_cache"]
            lines.append(f"- latent cache (bf16, {lc['tap']}): {lc['seconds_without']:.2f}s -> {lc['seconds_with']:.2f}s "
                         f"per batch (**{lc['speedup']:.2f}x**)")
        lines.append("")
    if "peak_memory_mib" in r:
        lines += ["## Peak resident memory (a fresh process per case, float32: weights, then one batch)\n",
                  markdown_table(["case", "after loading (MiB)", "peak (MiB)", "the batch adds (MiB)"],
                                 [[k, v["after_loading"], v["peak"], v["extraction"]]
                                  for k, v in r["peak_memory_mib"].items()], "{:.0f}")]
    h = r["hfr_argmax_fp32_vs_bf16"]
    lines.append(f"\n## bf16 and the HFR choice ({h['preset']} preset, {h['dataset']} calibration set: "
                 f"{h['num_images']} images, tap {h['tap']}, {len(h['32']['curve'])} candidates)\n\n"
                 f"argmax float32 t={h['32']['timestep']}, bf16 t={h['bf16']['timestep']} (same: {h['same_argmax']}); "
                 f"largest curve difference {h['max_abs_curve_difference']:.2e}.\n")
    if "flops_per_image" in r:
        lines += flops_markdown(r["flops_per_image"])
    lines += ["## Targets (issue #8)\n", markdown_table(["target", "measured", "met"], targets(r))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
