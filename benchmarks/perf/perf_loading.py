"""Peak resident memory while loading the DiT-XL/2 architecture from a diffusers folder, with and without
diffusers' ``low_cpu_mem_usage`` (``accelerate``: the model is built empty and the checkpoint's tensors are put
in place, instead of a random-initialised model plus a full copy of the checkpoint).

The DiT-XL/2 256 px architecture with its SD VAE, random weights (weights do not change the memory), is saved
in diffusers layout (``transformer/``, ``vae/``, ``scheduler/``; about 3.3 GB in float32), once as safetensors and
once as pickled ``.bin``, to a temporary folder deleted afterwards. Each case runs in a fresh process and reads its
high-water mark (``VmHWM``) after the imports, after loading and after reading every weight once (memory-mapped
weights become resident only when read). Writes results/perf/loading.json and loading.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
from pathlib import Path

import torch
from perf_extract import peak_rss

from aselect_bench.backbones import load_backbone
from aselect_bench.backbones.noise import DIT_SCHEDULER
from aselect_bench.reports import markdown_table, write_report

MODEL = "dit-xl-2-256"


def diffusers_load(low_cpu_mem_usage: bool) -> tuple[str, str]:
    """(imports, code) that load the folder ``F``'s transformer and VAE with diffusers' ``from_pretrained``."""
    return ("import torch\nfrom diffusers import AutoencoderKL, DiTTransformer2DModel\n",
            f"load = lambda cls, sub: cls.from_pretrained(F / sub, low_cpu_mem_usage={low_cpu_mem_usage})\n"
            "models = [load(DiTTransformer2DModel, 'transformer'), load(AutoencoderKL, 'vae')]\n")


#: ``{case: (imports, code that loads the folder F)}``
CASES = {
    "diffusers from_pretrained, low_cpu_mem_usage=False": diffusers_load(False),
    "diffusers from_pretrained, low_cpu_mem_usage=True": diffusers_load(True),
    "load_backbone(folder): strict checks + low_cpu_mem_usage=True": (
        "import torch\nfrom diffusers import AutoencoderKL, DiTTransformer2DModel\nfrom aselect_bench import load_backbone\n",
        "models = [load_backbone(str(F))]\n"),
}


#: How the weights are saved: safetensors (memory-mapped when read) or a pickled ``.bin`` (read into memory).
FORMATS = {"safetensors": True, "bin": False}


def save_random_folder(folder: Path, safe_serialization: bool = True) -> int:
    """Save the registered model's architecture with random weights in diffusers layout; returns its weight bytes."""
    from diffusers import DDPMScheduler

    backbone = load_backbone(MODEL, pretrained=False)
    backbone.transformer.save_pretrained(folder / "transformer", safe_serialization=safe_serialization)
    backbone.vae.save_pretrained(folder / "vae", safe_serialization=safe_serialization)
    DDPMScheduler(**DIT_SCHEDULER).save_pretrained(folder / "scheduler")
    return sum(f.stat().st_size for f in folder.rglob("diffusion_pytorch_model.*"))


def measure(folder: Path, imports: str, code: str) -> dict:
    """MiB after the imports, at the peak of loading, and at the peak once every weight has been read (as a first
    forward pass would: memory-mapped weights become resident then); anonymous (private) MiB at the end;
    seconds to load."""
    before, loaded, touched, anonymous, seconds = peak_rss(
        f"import time\nfrom pathlib import Path\n{imports}F = Path({str(folder)!r})\n"
        f"before = hwm()\nstart = time.perf_counter()\n{code}seconds = time.perf_counter() - start\n"
        "loaded = hwm()\n"
        "with torch.no_grad():\n"
        "    sum(float(p.float().sum()) for m in models for p in m.parameters())\n"
        "anon = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon')) / 1024\n"
        "print(before, loaded, hwm(), anon, seconds)\n"
    )
    return {"after_imports_mib": before, "peak_loading_mib": loaded, "loading_adds_mib": loaded - before,
            "peak_after_reading_weights_mib": touched, "reading_adds_mib": touched - before,
            "anonymous_mib": anonymous, "seconds": seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/perf/loading")
    parser.add_argument("--tmp", default=None, help="where to save the temporary folder (default: the system's)")
    args = parser.parse_args(argv)
    formats = {}
    for fmt, safe in FORMATS.items():
        folder = Path(tempfile.mkdtemp(prefix="perf-loading-", dir=args.tmp))
        try:
            weight_bytes = save_random_folder(folder, safe)
            formats[fmt] = {"cases": {name: measure(folder, *case) for name, case in CASES.items()}}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    import accelerate
    import diffusers

    result = {"preset": MODEL, "weights_mib": weight_bytes / 2**20, "formats": formats,
              "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "diffusers": diffusers.__version__, "accelerate": accelerate.__version__}}
    write_report(Path(args.out).parent, Path(args.out).name, result, render(result))
    print(render(result))
    return result


def render(r: dict) -> str:
    rows = [[fmt, name, c["after_imports_mib"], c["loading_adds_mib"], c["reading_adds_mib"],
             c["reading_adds_mib"] / r["weights_mib"], c["anonymous_mib"], c["seconds"]]
            for fmt, f in r["formats"].items() for name, c in f["cases"].items()]
    m = r["machine"]
    return "\n".join([
        "# Loading memory: DiT-XL/2 (256 px) with its VAE from a diffusers folder\n",
        f"Random weights, float32: {r['weights_mib']:.0f} MiB, saved as safetensors and as pickled .bin. Each case in a fresh process; "
        f"peak resident memory (VmHWM) above the imports, at the end of loading and once every weight has been read "
        f"(a first forward pass does that: memory-mapped weights become resident then); anonymous memory (RssAnon, "
        f"private copies) at the end. torch {m['torch']}, diffusers {m['diffusers']}, accelerate "
        f"{m['accelerate']}, {m['cpu']}.\n",
        markdown_table(["weights file", "case", "after imports (MiB)", "loading adds (MiB)", "reading every weight adds (MiB)",
                        "x weights size", "anonymous at the end (MiB)", "load seconds"], rows, "{:.1f}"),
        "",
        *[f"- {fmt}: low_cpu_mem_usage=True vs False changes the peak by "
          f"{with_low - without:+.0f} MiB ({100 * (with_low - without) / without:+.1f}%)"
          for fmt, f in r["formats"].items()
          for without, with_low in [[f["cases"][name]["peak_after_reading_weights_mib"] for name in list(CASES)[:2]]]],
        "",
    ]) + "\n"


if __name__ == "__main__":
    main()
