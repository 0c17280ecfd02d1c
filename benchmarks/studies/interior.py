"""Issue #29: does the demo's accuracy-vs-timestep curve have an interior best? Exhaustive curves only.

Every *attempt* (a backbone + preset overrides, e.g. a data mechanism, a probe protocol, a tap) trains the
preset's probe at every candidate timestep (FGVC: the fused sweep, one head per candidate in one data loop;
ADE20K: one UperNet per candidate) and records validation and test per candidate. Nothing here computes or
prints any timestep selector (HFR or other): the recipe is chosen from these curves alone. ``--seeds`` repeats
the best candidate and t = 0 with other preset seeds (data, noise draws, head init, order: each seed its own
synthetic data under ``data/demo-seed<N>``); ``--random`` adds the randomly initialised demo DiT at the best
candidate. Every attempt is kept, failures included, in ``runs/studies/interior.{json,md}`` (the committed
record of the screens that chose the demo default is ``results/archive/interior/``); finished (attempt,
dataset, seed) cells are not recomputed, so an interrupted run resumes.

    python benchmarks/studies/interior.py --attempt baseline --note "shipped DiT, preset as is" --datasets cub
    python benchmarks/studies/interior.py --attempt tap5 --set fgvc.tap=blocks.5.out --datasets cub
    python benchmarks/studies/interior.py --attempt final --datasets all --ade20k --seeds 1,2 --random
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from aselect_bench.backbones.registry import DEMO_FOLDER
from aselect_bench.commands.options import parse_candidates
from aselect_bench.data.fgvc import DATASETS
from aselect_bench.errors import UserError
from aselect_bench.experiments import build_experiment, preset_backbone
from aselect_bench.io import read_json
from aselect_bench.reports import markdown_table, run_record, write_report
from aselect_bench.settings import load_bench_preset

SCREEN_GRID = [0, 50, 100, 150, 200, 300, 400, 600, 800]


def parse_value(text: str):
    """A ``--set`` value: JSON where it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def attempt_preset(overrides: dict, seed: int = 0):
    """The demo preset with ``overrides``; seed ``N > 0`` also gets its own data folder (its own synthetic data)."""
    preset = load_bench_preset("demo").override(**overrides)
    if seed:
        preset = preset.override(seed=seed, data_root=f"{preset.data_root}-seed{seed}")
    return preset


def load_attempt_backbone(preset, model: str | None):
    """The preset's backbone, a folder (``model``), or ``random`` (the demo architecture, random init)."""
    from aselect_bench.backbones import load_backbone
    from aselect_bench.precision import describe_precision

    if model is None:
        return preset_backbone(preset, "fgvc")
    backbone = load_backbone("demo", pretrained=False) if model == "random" else load_backbone(model)
    backbone.name = "demo"
    return backbone.set_precision(describe_precision(preset.precision, backbone.device)["precision"])


def generator_versions() -> dict:
    from aselect_bench.data import synth_ade20k, synth_fgvc

    return {"fgvc": synth_fgvc.GENERATOR_VERSION, "ade20k": synth_ade20k.GENERATOR_VERSION}


def weights_sha256(model: str | None) -> str | None:
    """The demo DiT's card digest (the shipped one for ``None``), ``None`` for random init."""
    if model == "random":
        return None
    card = Path(model or DEMO_FOLDER) / "card.json"
    return json.loads(card.read_text()).get("weights_sha256") if card.exists() else None


def fgvc_cells(preset, backbone, dataset: str, timesteps, runs: Path) -> dict:
    """``{t: {"val", "test"}}`` of the preset's probe on ``dataset`` at ``timesteps`` (one fused run)."""
    exp = build_experiment("fgvc", dataset, preset, backbone)
    rows, _ = exp.fit_pairs([(preset.fgvc.tap, t) for t in timesteps], runs, f"interior-{dataset}", progress=False)
    return {t: rows[(preset.fgvc.tap, t)] for t in timesteps}


def split_tensors(exp) -> dict:
    """``{stage: (images [N, 3, S, S], labels [N])}``: each split's fixed (evaluation) view, in memory."""
    import torch

    out = {}
    for stage in ("train", "val", "test"):
        samples = [exp.datamodule.sets[stage][i] for i in range(exp.datamodule.split_size(stage))]
        out[stage] = torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples])
    return out


def pooled(backbone, images, t: int, taps: list[str], seed: int, draw: int = 0) -> dict:
    """``{tap: [N, C]}``: mean-pooled tokens at ``t`` with the tasks' noise (fixed per (seed, t, index, draw))."""
    import torch

    from aselect_bench.backbones.noise import batch_noise

    out = {tap: [] for tap in taps}
    for start in range(0, len(images), 256):
        x0 = backbone.encode(images[start:start + 256])
        noise = batch_noise(x0.shape[1:], seed, t, range(start, start + len(x0)), draw)
        for tap, f in backbone.extract_x0(x0, t, taps, noise=noise).items():
            out[tap].append(f.float().mean((2, 3)))
    return {tap: torch.cat(v) for tap, v in out.items()}


def proxy_probe(preset, feats: dict, labels: dict, num_classes: int) -> dict:
    """The preset's linear probe (BatchNorm + Linear, AdamW, warm-up + cosine, best epoch on val) trained in a
    plain loop on pooled features ``{stage: [N, C]}`` (train may be ``[draws, N, C]``: one draw per epoch, in
    turn): ``{"val", "test"}`` in percent."""
    import lightning as L
    import torch
    import torch.nn.functional as F

    from aselect_bench.heads.probes import build_head
    from aselect_bench.tasks.common import FrozenBackboneTask

    cfg = preset.fgvc
    L.seed_everything(preset.seed, workers=False, verbose=False)
    train = feats["train"] if feats["train"].dim() == 3 else feats["train"][None]
    head = build_head("linear", train.shape[-1], num_classes, norm=cfg.linear_norm)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, bs = train.shape[1], cfg.batch_size
    steps = cfg.max_epochs * math.ceil(n / bs)
    warmup = int(cfg.warmup_fraction * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: FrozenBackboneTask.lr_factor(k, warmup, steps))
    gen, best = torch.Generator().manual_seed(preset.seed), (-1.0, None)

    def top1(stage):
        head.eval()
        with torch.no_grad():
            return float((head(feats[stage][..., None, None]).argmax(1) == labels[stage]).float().mean() * 100)

    for epoch in range(cfg.max_epochs):
        head.train()
        order = torch.randperm(n, generator=gen)
        x = train[epoch % len(train)]
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            loss = F.cross_entropy(head(x[idx][..., None, None]), labels["train"][idx],
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val = top1("val")
        if val > best[0]:
            best = (val, top1("test"))
    return {"val": best[0], "test": best[1]}


def proxy_cells(preset, backbone, dataset: str, timesteps, taps: list[str], draws: int = 1) -> dict:
    """Screening: ``{tap: {t: {"val", "test"}}}`` from :func:`proxy_probe` (every tap from one forward per
    timestep and split; ``draws > 1``: that many noise draws of the training images, one per epoch in turn)."""
    import torch

    exp = build_experiment("fgvc", dataset, preset, backbone)
    data = split_tensors(exp)
    labels = {stage: y for stage, (_, y) in data.items()}
    out = {tap: {} for tap in taps}
    for t in timesteps:
        feats = {stage: pooled(backbone, x, t, taps, preset.seed) for stage, (x, _) in data.items() if stage != "train"}
        train = [pooled(backbone, data["train"][0], t, taps, preset.seed, draw) for draw in range(draws)]
        for tap in taps:
            split = {"train": torch.stack([d[tap] for d in train]), **{s: f[tap] for s, f in feats.items()}}
            out[tap][t] = proxy_probe(preset, split, labels, exp.datamodule.num_classes)
        print(f"  t={t}: " + " ".join(f"{tap} {out[tap][t]['val']:.1f}/{out[tap][t]['test']:.1f}" for tap in taps),
              flush=True)
    return out


def ade20k_cells(preset, backbone, timesteps, runs: Path, done: dict, save) -> dict:
    """``{t: {"val", "test"}}`` (selection and validation mIoU) of one UperNet per timestep; ``done`` cells are
    kept, ``save(cells)`` is called after each new one."""
    exp = build_experiment("ade20k", "ade20k", preset, backbone)
    cells = dict(done)
    for t in timesteps:
        if str(t) in cells:
            continue
        run = exp.fit(t, runs, f"interior-ade20k-{t}", progress=False)
        cells[str(t)] = {"val": run.val, "test": run.test, "seconds": run.seconds}
        save(cells)
    return cells


def compared_cells(folder: Path, name: str, preset, overrides: dict, candidates) -> dict | None:
    """``{"per_timestep": {t: {"val", "test"}}, "source"}`` from the committed comparison of ``name`` in ``folder``
    (``aselect-bench compare``'s exhaustive curve, so the sweep is not run twice), or ``None`` when there is none.
    A comparison run another way (preset, overrides of this task, tap, candidates) is one clear error."""
    task = "ade20k" if name == "ade20k" else "fgvc"
    path = folder / f"{task}-{name}-{preset.name}.json"
    if not path.exists():
        return None
    report = read_json(path)
    other = "fgvc." if task == "ade20k" else "ade20k."
    wanted = {k: v for k, v in overrides.items() if not k.startswith(other)}
    tap = preset.fgvc.tap if task == "fgvc" else report["tap"]
    if (report["preset"], report["run"]["overrides"], report["tap"], report["candidates"]) != (
            preset.name, wanted, tap, list(candidates)):
        raise UserError(f"{path} was run with preset {report['preset']}, overrides {report['run']['overrides']}, tap "
                        f"{report['tap']}, {len(report['candidates'])} candidates, not this attempt's ({wanted}, {tap}, "
                        f"{len(candidates)} candidates); re-run the comparison or drop --from-compare")
    per_t = {t: {k: v[k] for k in ("val", "test")} for t, v in report["exhaustive"]["per_timestep"].items()}
    return {"per_timestep": per_t, "source": f"{path}@{report['run']['code_version']}"}


def best_timestep(per_timestep: dict) -> int:
    """The candidate with the best validation metric (the first in grid order on ties)."""
    return int(max(per_timestep, key=lambda t: per_timestep[t]["val"]))


def seed_stats(values: list[float]) -> dict:
    """Mean, sample standard deviation and standard error of the mean."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {"mean": mean, "sd": sd, "se": sd / math.sqrt(len(values))}


def verdict(curve: dict, seeds: dict | None, candidates) -> dict:
    """Does this curve meet the issue's goal? interior best on validation; with seeds, the best candidate's mean
    validation minus t = 0's beats twice the standard error of that difference (unpaired: both means' s.e.)."""
    best = best_timestep(curve)
    out = {"best": best, "interior": best not in (0, max(candidates)),
           "val_gain": curve[str(best)]["val"] - curve["0"]["val"]}
    if seeds and str(best) in seeds and "0" in seeds and len(seeds["0"]) >= 3 and len(seeds[str(best)]) >= 3:
        a, b = (seed_stats([v["val"] for v in seeds[k].values()]) for k in (str(best), "0"))
        diffs = [seeds[str(best)][s]["val"] - seeds["0"][s]["val"] for s in seeds["0"] if s in seeds[str(best)]]
        se = math.hypot(a["se"], b["se"])
        out.update(seed_gain=a["mean"] - b["mean"], seed_se=se, paired_se=seed_stats(diffs)["se"],
                   n_seeds=min(len(seeds["0"]), len(seeds[str(best)])),
                   significant=a["mean"] - b["mean"] > 2 * se)
    return out


def run_attempt(args, store: dict, save) -> None:
    attempt = store["attempts"].setdefault(args.attempt, {"note": args.note, "overrides": {}, "model": args.model,
                                                          "datasets": {}})
    overrides = dict(attempt.get("overrides") or {})
    overrides.update({k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)})
    attempt.update(overrides=overrides, model=args.model if args.model is not None else attempt.get("model"))
    if args.note:
        attempt["note"] = args.note
    preset = attempt_preset(overrides)
    candidates = args.candidates or list(preset.hfr.candidates)
    backbone = load_attempt_backbone(preset, attempt["model"])
    attempt["run"] = run_record(preset, backbone)
    attempt["synth"] = {**preset.to_json()["synth"], "generator_versions": generator_versions()}  # the data
    attempt["weights_sha256"] = weights_sha256(attempt["model"])
    runs = Path(args.runs) / "interior" / args.attempt
    names = list(DATASETS) if args.datasets == ["all"] else args.datasets
    if args.proxy:
        attempt["proxy_draws"] = args.draws
        for name in names:
            start = time.perf_counter()
            cells = proxy_cells(preset, backbone, name, candidates, args.proxy, args.draws)
            for tap, per_t in cells.items():
                attempt.setdefault("proxy", {})[f"{name}|{tap}"] = {
                    "candidates": candidates, "per_timestep": {str(t): v for t, v in per_t.items()},
                    "seconds": time.perf_counter() - start}
            save()
        return
    for name in names + (["ade20k"] if args.ade20k else []):
        cell = attempt["datasets"].setdefault(name, {})
        if cell.get("candidates") != candidates:
            cell.update(candidates=candidates, per_timestep={}, seeds={})
        start = time.perf_counter()
        compared = compared_cells(Path(args.from_compare), name, preset, overrides, candidates) \
            if args.from_compare else None
        if compared:
            cell.update(per_timestep=compared["per_timestep"], source=compared["source"])
        elif name == "ade20k":
            def keep(cells, cell=cell):
                cell["per_timestep"] = cells
                save()
            ade20k_cells(preset, backbone, candidates, runs, cell["per_timestep"], keep)
        elif len(cell["per_timestep"]) < len(candidates):
            rows = fgvc_cells(preset, backbone, name, candidates, runs)
            cell["per_timestep"] = {str(t): v for t, v in rows.items()}
            cell["seconds"] = time.perf_counter() - start
        save()
        best = best_timestep(cell["per_timestep"])
        curve = " ".join(f"{t}:{v['val']:.1f}/{v['test']:.1f}" for t, v in cell["per_timestep"].items())
        print(f"{args.attempt} {name}: best t={best} (val/test) {curve}", flush=True)
        for seed in args.seeds:
            timesteps = [t for t in dict.fromkeys([0, best]) if str(seed) not in cell["seeds"].get(str(t), {})]
            if not timesteps:
                continue
            seeded = attempt_preset(overrides, seed)
            if name == "ade20k":
                rows = {t: ade20k_cells(seeded, backbone, [t], runs / f"seed{seed}", {}, lambda c: None)[str(t)]
                        for t in timesteps}
            else:
                rows = fgvc_cells(seeded, backbone, name, timesteps, runs / f"seed{seed}")
            for t, v in rows.items():
                cell["seeds"].setdefault(str(t), {})[str(seed)] = {"val": v["val"], "test": v["test"]}
            save()
        if args.seeds and cell["seeds"]:  # seed 0 is the curve itself
            for t in (0, best):
                cell["seeds"].setdefault(str(t), {})["0"] = {k: cell["per_timestep"][str(t)][k] for k in ("val", "test")}
            save()
        if args.random and "random" not in cell:
            random_backbone = load_attempt_backbone(preset, "random")
            if name == "ade20k":
                row = ade20k_cells(preset, random_backbone, [best], runs / "random", {}, lambda c: None)[str(best)]
            else:
                row = fgvc_cells(preset, random_backbone, name, [best], runs / "random")[best]
            cell["random"] = {"timestep": best, "val": row["val"], "test": row["test"]}
            save()


def markdown(store: dict) -> str:
    lines = ["# Issue #29: where is the best timestep? (exhaustive curves only)\n",
             "Every attempt to give the demo an interior best timestep, failures included, written by "
             "`benchmarks/studies/interior.py` (no timestep selector is computed here). Metrics in percent: FGVC top-1 "
             "(val = the validation split the best epoch is chosen on, test only reported), ADE20K mIoU (val = "
             "the selection split, test = the official validation split). *best t* is the validation argmax over "
             "the attempt's candidates; *gain* = val at best t minus val at t = 0.\n"]
    rows = []
    for name, a in store["attempts"].items():
        for ds, cell in a["datasets"].items():
            if not cell.get("per_timestep"):
                continue
            curve, v = cell["per_timestep"], verdict(cell["per_timestep"], cell.get("seeds"), cell["candidates"])
            best = str(v["best"])
            seeds = (f"{v['seed_gain']:+.1f} ± {v['seed_se']:.1f} (n={v['n_seeds']})" if "seed_gain" in v else "-")
            rand = cell.get("random")
            met = "-" if "significant" not in v or not rand else \
                "yes" if v["interior"] and v["significant"] and rand["val"] < curve[best]["val"] else "no"
            rows.append([name, ds, v["best"], curve[best]["val"], curve["0"]["val"], v["val_gain"], curve[best]["test"],
                         curve["0"]["test"], seeds, f"{rand['val']:.1f}" if rand else "-", met])
    lines.append(markdown_table(["attempt", "dataset", "best t", "val@best", "val@0", "gain", "test@best", "test@0",
                                 "seed gain ± s.e.", "random init val@best", "goal met"], rows, floatfmt="{:.1f}"))
    for name in store["attempts"]:
        judged = {r[1]: r[-1] for r in rows if r[0] == name and r[-1] != "-"}
        if judged:
            fgvc = sum(v == "yes" for ds, v in judged.items() if ds != "ade20k")
            lines.append(f"**{name}**: goal met on {fgvc} of {sum(ds != 'ade20k' for ds in judged)} FGVC stand-ins "
                         f"(issue: at least 4 of 6) and on ADE20K: {judged.get('ade20k', 'not run')}.\n")
    lines.append("*seed gain ± s.e.*: over the seeds (preset seed 0 and the extra ones: each its own synthetic data, "
                 "noise draws, head init and order), mean val at best t minus mean val at t = 0, ± the standard error "
                 "of that difference (both means' s.e. combined). *goal met* (issue #29): best t inside the grid, the "
                 "seed gain above twice its s.e., and the random-init DiT below the pretrained one at best t (val).\n")
    proxy = [[name, *key.split("|"), a.get("proxy_draws", 1), best_timestep(c["per_timestep"]),
              c["per_timestep"][str(best_timestep(c["per_timestep"]))]["val"], c["per_timestep"]["0"]["val"],
              " ".join(f"{t}:{v['val']:.1f}/{v['test']:.1f}" for t, v in c["per_timestep"].items())]
             for name, a in store["attempts"].items() for key, c in a.get("proxy", {}).items()]
    if proxy:
        lines.append("\n## Screening (proxy probe)\n")
        lines.append("The preset's linear probe (BatchNorm + Linear, AdamW, warm-up + cosine, best epoch on val) "
                     "trained in a plain loop on mean-pooled features (`--proxy`), for cheap screening; "
                     "*draws*: noise draws of the training images, one per epoch in turn. Curve: val/test per "
                     "candidate.\n")
        lines.append(markdown_table(["attempt", "dataset", "tap", "draws", "best t", "val@best", "val@0", "curve"],
                                    proxy, floatfmt="{:.1f}"))
    lines.append("\n## What each attempt changed\n")
    for name, a in store["attempts"].items():
        over = ", ".join(f"`{k}={v}`" for k, v in a["overrides"].items()) or "no preset override"
        lines.append(f"- **{name}**: {a['note']} (model: {a.get('model') or 'the preset backbone'}; {over})")
    lines.append("\n## Curves (val / test per candidate)\n")
    for name, a in store["attempts"].items():
        for ds, cell in a["datasets"].items():
            if cell.get("per_timestep"):
                source = f" (from `{cell['source']}`)" if cell.get("source") else ""
                lines.append(f"- **{name}, {ds}**{source}: " + " ".join(
                    f"{t}: {v['val']:.1f}/{v['test']:.1f}" for t, v in cell["per_timestep"].items()))
    return "\n".join(lines) + "\n"


def read_store(out: Path) -> dict:
    """The attempts recorded so far in ``out.json`` (``{"attempts": {name: ...}}``)."""
    return read_json(out.with_suffix(".json")) if out.with_suffix(".json").exists() else {"attempts": {}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempt", required=True, help="the attempt's name (its results are kept under it)")
    parser.add_argument("--note", default="", help="what the attempt changes and why")
    parser.add_argument("--model", default=None, help="a diffusers folder or 'random' (default: the preset's backbone)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a preset override, e.g. fgvc.tap=blocks.5.out (repeatable)")
    parser.add_argument("--datasets", nargs="*", default=["cub"], help="FGVC stand-ins, or 'all' (default: cub)")
    parser.add_argument("--ade20k", action="store_true", help="also the ADE20K stand-in")
    parser.add_argument("--candidates", type=parse_candidates, default=None,
                        help=f"default: the preset's 21; screening: {','.join(map(str, SCREEN_GRID))}")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[],
                        help="extra preset seeds at t = 0 and the best candidate, e.g. 1,2")
    parser.add_argument("--random", action="store_true", help="the random-init DiT at the best candidate")
    parser.add_argument("--proxy", nargs="+", metavar="TAP", default=None,
                        help="screening: the linear probe in a plain loop on pooled features of these taps (one "
                             "forward per timestep serves them all), instead of the preset's pipeline")
    parser.add_argument("--draws", type=int, default=1, help="with --proxy: noise draws of the training images, "
                        "one per epoch in turn (1: the preset's one fixed draw)")
    parser.add_argument("--from-compare", default=None, metavar="DIR",
                        help="take each curve from the comparison in DIR (e.g. results/compare) when it is there")
    parser.add_argument("--out", default="runs/studies/interior", help="output path without extension")
    parser.add_argument("--runs", default="runs", help="TensorBoard log folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    store = read_store(out)

    def save():  # this attempt into the file as it is now: other attempts may run in other processes
        current = read_store(out)
        current["attempts"][args.attempt] = store["attempts"][args.attempt]
        write_report(out.parent, out.name, current, markdown(current))

    run_attempt(args, store, save)
    save()
    return store


if __name__ == "__main__":
    from aselect_bench.cli import run_guarded

    run_guarded(main)
