"""Precision chosen by the hardware: bf16 only where it is native (faked CPUs and GPUs), cached on disk."""

from __future__ import annotations

import pytest
import torch

from aselect_bench import precision
from aselect_bench.backbones import load_backbone
from aselect_bench.errors import UserError


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "32")])
def test_auto_on_a_cpu_follows_the_probe_and_caches_it(tmp_path, monkeypatch, native, expected):
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(precision, "probe_cpu_bf16", lambda: calls.append(1) or {"native": native})
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("auto", "cpu") == expected and calls == [1]  # the disk answer is reused
    assert list((tmp_path / "precision").glob("cpu-bf16-*.json"))
    assert precision.lightning_precision(expected) == {"bf16": "bf16-mixed", "32": "32-true"}[expected]


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "32")])
def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert precision.resolve_precision("auto", "cuda") == expected


def test_explicit_choices_are_kept_and_bad_ones_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "probe_cpu_bf16", lambda: {"native": False})
    assert [precision.resolve_precision(p, "cpu") for p in ("32", "bf16", "16")] == ["32", "bf16", "16"]
    assert precision.lightning_precision("16") == "16-mixed"
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        precision.resolve_precision("fp8")


def test_an_avx2_cpu_is_not_native_without_timing(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(precision, "_matmul_seconds", lambda *a: pytest.fail("no timing needed"))
    assert precision.probe_cpu_bf16()["native"] is False


@pytest.mark.parametrize("bf16_seconds, native", [(0.5, True), (100.0, False)])
def test_a_bf16_cpu_is_native_only_when_bf16_is_fast(monkeypatch, bf16_seconds, native):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(precision, "_matmul_seconds", lambda dtype, *a: bf16_seconds if dtype == torch.bfloat16 else 1.0)
    assert precision.probe_cpu_bf16()["native"] is native


def test_the_choice_is_described_and_printed_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "probe_cpu_bf16", lambda: {"native": False})
    monkeypatch.setattr(precision, "_announced", set())
    first = precision.describe_precision("auto", "cpu")
    assert first == {"precision": "32", "requested": "auto", "cpu_bf16_native": False, "device": "cpu"}
    precision.describe_precision("auto", "cpu")
    assert capsys.readouterr().out.count("precision: 32") == 1


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, None)])
def test_backbone_auto_precision(tmp_path, monkeypatch, native, dtype):
    monkeypatch.setenv("ASELECT_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "probe_cpu_bf16", lambda: {"native": native})
    backbone = load_backbone("tiny-dit", pretrained=False).set_precision("auto")
    assert backbone.autocast_dtype == dtype
    with pytest.raises(UserError, match="unknown precision"):
        backbone.set_precision("double")
