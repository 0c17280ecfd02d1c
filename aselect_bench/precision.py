"""Numeric precision chosen by the hardware: ``auto`` picks bf16 only where it is native and fast.

``resolve_precision("auto", device)`` is ``"bf16"`` on a CUDA device with bf16 and on a CPU whose torch
kernels run bf16 natively (AVX-512 BF16 / AMX, confirmed by timing a small bf16 vs float32 matrix
product once; the answer is cached on disk under ``cache_dir()/precision/``), else ``"32"``. Without
native kernels a CPU bf16 product can be ~100x slower than float32, so bf16 is never assumed on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from aselect_bench.cache import cache_dir
from aselect_bench.errors import UserError
from aselect_bench.io import atomic_write_json

PRECISIONS = ("auto", "32", "bf16", "16")
#: Our precision names -> Lightning ``Trainer(precision=...)`` strings (mixed: weights stay float32).
LIGHTNING_PRECISION = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
#: bf16 counts as fast on a CPU when its matrix product takes at most this multiple of float32's time.
BF16_SLOWDOWN_LIMIT = 1.25
_announced: set[str] = set()


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux), ``None`` where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _matmul_seconds(dtype: torch.dtype, size: int = 256, repeats: int = 5) -> float:
    """Best of ``repeats`` timings of one ``[size, size] @ [size, size]`` product in ``dtype`` (one thread)."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(dtype) for _ in range(2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a @ b  # warm-up: kernel selection, allocation
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return best


def probe_cpu_bf16() -> dict:
    """Measure once: ``{"native": bool, "flags": [...] | None, "bf16_s", "fp32_s"}``.

    Native means the flags do not rule it out (``avx512_bf16`` or ``amx_bf16`` on x86 Linux) and a bf16
    product is at most :data:`BF16_SLOWDOWN_LIMIT` x slower than float32.
    """
    flags = cpu_flags()
    bf16_flags = sorted(flags & {"avx512_bf16", "amx_bf16"}) if flags is not None else None
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    if x86 and flags is not None and not bf16_flags:
        return {"native": False, "flags": bf16_flags, "reason": "no avx512_bf16/amx_bf16 flag"}
    fp32, bf16 = _matmul_seconds(torch.float32), _matmul_seconds(torch.bfloat16)
    return {"native": bf16 <= BF16_SLOWDOWN_LIMIT * fp32, "flags": bf16_flags, "bf16_s": bf16, "fp32_s": fp32}


def _probe_file() -> Path:
    """The on-disk answer for this CPU model and torch build."""
    key = json.dumps([platform.processor(), platform.machine(), cpu_model(), torch.__version__,
                      torch.backends.cpu.get_cpu_capability()])
    return cache_dir() / "precision" / f"cpu-bf16-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_bf16_native() -> bool:
    """Whether this CPU runs torch's bf16 kernels natively and fast (probed once, cached on disk)."""
    path = _probe_file()
    try:
        return bool(json.loads(path.read_text())["native"])
    except (OSError, ValueError, KeyError):
        pass
    answer = probe_cpu_bf16()
    try:
        atomic_write_json(path, answer)
    except OSError:
        pass  # a read-only cache: probe again next time
    return bool(answer["native"])


def resolve_precision(requested: str, device="cpu") -> str:
    """``"auto" | "32" | "bf16" | "16"`` on ``device`` -> ``"32" | "bf16" | "16"`` (explicit choices kept)."""
    requested = str(requested)
    if requested not in PRECISIONS:
        raise UserError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)} (auto: bf16 only "
                        f"where the hardware runs it natively)")
    if requested != "auto":
        return requested
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "32"
    if device.type == "cpu":
        return "bf16" if cpu_bf16_native() else "32"
    return "32"


def lightning_precision(precision: str) -> str:
    """``"32" | "bf16" | "16"`` (or ``"auto"``, resolved for Lightning's own device) -> ``"32-true"`` etc."""
    if precision == "auto":
        precision = resolve_precision("auto", training_device())
    if precision not in LIGHTNING_PRECISION:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return LIGHTNING_PRECISION[precision]


def training_device() -> str:
    """The device a ``Trainer(accelerator="auto")`` trains on: ``"cuda"`` when there is one, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_precision(requested: str, device="cpu") -> dict:
    """What result files record: ``{"precision", "requested", "cpu_bf16_native", "device"}`` (printed once)."""
    device = torch.device(device)
    chosen = resolve_precision(requested, device)
    record = {"precision": chosen, "requested": str(requested), "cpu_bf16_native": cpu_bf16_native(),
              "device": device.type}
    line = f"precision: {chosen} (requested {requested}; device {device.type}; CPU bf16 native: " \
           f"{'yes' if record['cpu_bf16_native'] else 'no'})"
    if line not in _announced:
        _announced.add(line)
        print(line, flush=True)
    return record
