"""Shared by the PixArt, Flux and Sana tests: hooks on diffusers' own forward, tiny text encoders built offline."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager

import torch

from aselect_bench import load_backbone


@contextmanager
def captured(outputs: dict, inputs: dict | None = None):
    """Capture during a forward: ``{name: output}`` of each module in ``outputs`` and ``{name: first positional
    input}`` of each module in ``inputs``; hooks removed afterwards."""
    seen, handles = {}, []
    for name, module in outputs.items():
        handles.append(module.register_forward_hook(lambda m, a, o, name=name: seen.__setitem__(name, o)))
    for name, module in (inputs or {}).items():
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: seen.__setitem__(name, a[0])))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def cross_block_modules(transformer, blocks):
    """``(outputs, inputs)`` to capture in PixArt's and Sana's blocks ``blocks``: q/k/v, both attentions, the MLP
    and the block's output; the block's input, the self-attention's input (the modulated ``norm1``) and the
    cross-attention's input (the stream after the gated self-attention)."""
    chosen = {i: transformer.transformer_blocks[i] for i in blocks}
    outputs = {(i, n): m for i, blk in chosen.items() for n, m in [
        ("query", blk.attn1.to_q), ("key", blk.attn1.to_k), ("value", blk.attn1.to_v), ("attn", blk.attn1),
        ("cross", blk.attn2), ("mlp", blk.ff), ("out", blk)]}
    inputs = {(i, n): m for i, blk in chosen.items() for n, m in [
        ("in", blk), ("norm1", blk.attn1), ("after_attn", blk.attn2)]}
    return outputs, inputs


def cross_block_features(seen: dict, blocks, gh: int, gw: int, mlp=lambda x: x) -> dict:
    """Every component of PixArt's / Sana's ``blocks`` from :func:`cross_block_modules`' captures, as grids; the
    gated terms are differences of the residual stream (``mlp`` maps the MLP's output to tokens ``[B, N, D]``)."""
    from aselect_bench.backbones.taps import CROSS_COMPONENTS

    feats = {}
    for i in blocks:
        s = {n: seen[(i, n)] for n in ("in", "norm1", "query", "key", "value", "attn", "after_attn", "cross", "mlp",
                                      "out")}
        tokens = {"norm1": s["norm1"], "query": s["query"], "key": s["key"], "value": s["value"], "attn": s["attn"],
                  "attn_gated": s["after_attn"] - s["in"], "cross": s["cross"], "mlp": mlp(s["mlp"]),
                  "mlp_gated": s["out"] - s["after_attn"] - s["cross"], "out": s["out"]}
        feats.update({f"blocks.{i}.{c}": as_grid(tokens[c], gh, gw) for c in CROSS_COMPONENTS})
    return feats


def as_grid(tokens: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """Tokens ``[B, N, C]`` in row-major order (token ``r * gw + c`` at ``(r, c)``) -> ``[B, C, gh, gw]``."""
    return tokens.reshape(tokens.shape[0], gh, gw, -1).permute(0, 3, 1, 2)


def check_against(backbone, images, timestep, noise, reference: dict) -> None:
    """Every tap of ``reference`` (``{tap: [B, C, h, w]}``) equals ours."""
    taps = list(reference)
    ours = backbone.extract(images, timestep, taps, noise=noise)
    assert list(ours) == taps
    for tap in taps:
        assert ours[tap].shape == reference[tap].shape, tap
        torch.testing.assert_close(ours[tap], reference[tap], rtol=1e-4, atol=1e-5, msg=tap)


def load_quietly(source, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_backbone(str(source), **kwargs)


def tiny_t5(width: int):
    """A T5 tokenizer (a Unigram vocabulary written here) and a 2-layer ``T5EncoderModel`` of ``width``."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581a", -1.0), ("\u2581b", -2.0), ("a", -3.0),
             ("b", -3.0), ("\u2581", -4.0)]
    torch.manual_seed(width + 1)
    encoder = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=width, d_kv=8, d_ff=2 * width, num_layers=2,
                                      num_heads=2, decoder_start_token_id=0))
    return T5Tokenizer(vocab=vocab, extra_ids=0), encoder.eval()


def tiny_gemma(width: int):
    """A Gemma tokenizer (BPE, written here; BOS added) and a 2-layer ``Gemma2Model`` of ``width``."""
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6, "\u2581": 7}
    torch.manual_seed(width + 2)
    encoder = Gemma2Model(Gemma2Config(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
                                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                       pad_token_id=0, bos_token_id=2, eos_token_id=1))
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True), encoder.eval()


def tiny_clip_text(folder, width: int):
    """A CLIP tokenizer and a ``CLIPTextModel`` (pooled output of ``width``), as Flux's first text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a": 3, "a</w>": 4, "b</w>": 5}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>",
                              model_max_length=77)
    torch.manual_seed(width)
    encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    return tokenizer, encoder.eval()


def save_text(folder, tokenizer, encoder, suffix: str = "") -> None:
    """``folder/tokenizer{suffix}`` and ``folder/text_encoder{suffix}``, as a pipeline saves them."""
    tokenizer.save_pretrained(folder / f"tokenizer{suffix}")
    encoder.save_pretrained(folder / f"text_encoder{suffix}")


def drop_tensor(folder, name: str) -> None:
    """Remove tensor ``name`` from the safetensors checkpoint in ``folder``."""
    from safetensors.torch import load_file, save_file

    path = next(folder.glob("*.safetensors"))
    state = load_file(path)
    state.pop(name)
    save_file(state, path)


def select_end_to_end(folder, tap: str, tmp_path) -> dict:
    """``aselect-bench select`` with the model ``folder`` on a tiny synthetic CUB (3 candidates, 4 images); checks
    it succeeds and scanned what it was asked, returns the saved selection."""
    from aselect_bench.data.synth_fgvc import write_layout
    from tests.test_cli import cli

    cub_root = write_layout("cub", tmp_path / "cub", num_classes=2, train_per_class=3, test_per_class=1, image_size=32)
    out = tmp_path / "selection.json"
    result = cli("select", "--backbone", folder, "--dataset", "cub", "--data-root", cub_root, "--tap", tap,
                 "--candidates", "0,500,999", "--num-images", 4, "--out", out)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert set(saved["hfr"]) == {"0", "500", "999"} and saved["forwards"] == 12
    return saved
