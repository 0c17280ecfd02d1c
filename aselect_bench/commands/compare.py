"""``aselect-bench compare``: exhaustive search vs A-SelecT and every timestep selector, on one dataset or all
six FGVC datasets, resumable; the selectors' leaderboard is rewritten after each comparison."""

from __future__ import annotations

import argparse

from aselect_bench.argtypes import positive_int
from aselect_bench.commands.options import add_preset_arguments, fgvc_dataset_or_all, parse_candidates


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="exhaustive search vs A-SelecT and the other timestep selectors: cost, regret, correlation",
        description="Train a head at every candidate timestep (exhaustive) and once at the preset selector's "
                    "choice (A-SelecT: the HFR scan by default), on the same data, seeds, head and schedule; score "
                    "every registered timestep selector on the same exhaustive curve; write "
                    "results/compare/<task>-<dataset>-<preset>.json/.md/.png and the leaderboard across the "
                    "comparisons in the folder (selectors.json/.md/.png). Each finished candidate is saved at "
                    "once: rerun the same command after an interruption to resume. With no arguments: the FGVC "
                    "demo (cub layout) end to end; --dataset all: the preset's six FGVC datasets in turn.")
    p.add_argument("--task", choices=("fgvc", "ade20k"), default="fgvc")
    p.add_argument("--dataset", default="cub", type=fgvc_dataset_or_all,
                   help="FGVC dataset name (cub, nabirds, flowers, dogs, cars, aircraft), or 'all' for every dataset "
                        "of the preset (ignored for ade20k)")
    add_preset_arguments(p)
    p.add_argument("--only", type=parse_candidates,
                   help="train only these candidates of the exhaustive sweep and stop (one job of a split sweep; "
                        "a later run without --only merges)")
    p.add_argument("--fused", action="store_true", help="also run the fused exhaustive baseline (classification)")
    p.add_argument("--search", metavar="NAME",
                   help="run search NAME live (e.g. successive-halving): train only what it asks for, continuing "
                        "runs from their checkpoints in --state, and write <task>-<dataset>-<preset>-search-NAME.json "
                        "(its pick, epochs and cost per seed: the same as its replay on the full comparison)")
    p.add_argument("--no-selectors", action="store_true",
                   help="score only the preset's selector (hfr): no other selectors, no extra scans")
    add_sweep_arguments(p, "results/compare")
    p.set_defaults(run=run)


def add_sweep_arguments(p: argparse.ArgumentParser, out: str) -> None:
    """What every command that runs comparisons takes (compare, ladder): the selectors to score, the seeds, the
    results, state and TensorBoard folders, and the launcher with its settings."""
    p.add_argument("--selectors", type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
                   help="comma-separated selectors to score (default: every registered one that applies to the "
                        "task; see 'aselect-bench select --help')")
    p.add_argument("--seeds", type=positive_int,
                   help="repeat every training (exhaustive and A-SelecT) with this many seeds, each its own head "
                        "init, order and noise draws on the same data (default: the preset's, 1); the report gives "
                        "means and standard errors over them")
    p.add_argument("--out", default=out, help="results folder")
    p.add_argument("--state", default="runs/compare", help="where finished pieces are kept for resuming")
    p.add_argument("--runs", default="runs", help="TensorBoard log folder: the reports in RUNS/reports (what "
                   "'make tensorboard' opens), the trainings in RUNS/trainings")
    add_launcher_arguments(p)


def add_launcher_arguments(p: argparse.ArgumentParser) -> None:
    """``--launcher slurm|local`` and its settings (each overrides the preset's ``launcher:`` section)."""
    g = p.add_argument_group("jobs (submitit)", "Run every candidate of the sweep, and A-SelecT's side, as jobs "
                             "(job folders and logs under --state/jobs/); the command waits, prints a status line "
                             "every 30 s, retries failed jobs, then merges as a serial run does. A preempted or timed "
                             "out SLURM job is requeued and resumes. Rerunning the command merges and submits only "
                             "what is neither finished nor queued.")
    g.add_argument("--launcher", choices=("slurm", "local"),
                   help="slurm: one job array (one GPU per job); local: this machine, one job per visible GPU, or "
                        "--jobs processes on a CPU")
    g.add_argument("--jobs", type=positive_int, help="local: jobs at a time (default: one per visible GPU, else 1)")
    g.add_argument("--no-wait", action="store_true", help="slurm: submit, print the job ids and return")
    g.add_argument("--dry-run", action="store_true", help="list the jobs and the sbatch settings, submit nothing")
    g.add_argument("--retries", type=launcher_value("retries"),
                   help="submit a failed job again this many times (default 1)")
    for flag, kind, text in (("--partition", str, "SLURM partition"), ("--account", str, "SLURM account"),
                             ("--qos", str, "SLURM quality of service"),
                             ("--time", launcher_value("time_min"), "time limit per job in minutes (default 1440)"),
                             ("--gpus-per-job", launcher_value("gpus_per_job"), "GPUs per job (default 1)"),
                             ("--cpus-per-job", launcher_value("cpus_per_job"), "CPUs per job (default 8)"),
                             ("--mem-gb", launcher_value("mem_gb"), "memory per job in GB"),
                             ("--constraint", str, "SLURM constraint, e.g. h100"),
                             ("--array-parallelism", launcher_value("array_parallelism"),
                              "array tasks running at once (default 64)")):
        g.add_argument(flag, type=kind, help=text)
    g.add_argument("--slurm", action="append", type=slurm_option, metavar="KEY=VALUE",
                   help="an extra sbatch option (also --slurm.KEY VALUE), e.g. --slurm.mail-type END")


def launcher_value(key: str):
    """The argparse ``type`` of the flag that sets the preset's ``launcher.<key>``: that key's own type and declared
    bounds (:func:`aselect_bench.settings.setting_argtype`, one definition for both), imported only when given."""
    def parse(text: str):
        from aselect_bench.settings import LauncherSettings, setting_argtype

        return setting_argtype(LauncherSettings, key)(text)

    parse.__name__ = key
    return parse


def slurm_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: write an extra sbatch option as KEY=VALUE, e.g. mail-type=END")
    return key, value


#: ``--flag`` -> the preset's ``launcher.<setting>``.
LAUNCHER_FLAGS = {"partition": "partition", "account": "account", "qos": "qos", "time": "time_min",
                  "gpus_per_job": "gpus_per_job", "cpus_per_job": "cpus_per_job", "mem_gb": "mem_gb",
                  "constraint": "constraint", "array_parallelism": "array_parallelism", "retries": "retries"}
#: The launcher options only SLURM reads (``--launcher local`` runs one GPU or ``--jobs`` processes here).
SLURM_ONLY = ("partition", "account", "qos", "gpus_per_job", "cpus_per_job", "mem_gb", "constraint",
              "array_parallelism", "slurm")


def check_launcher_flags(args: argparse.Namespace) -> None:
    """Before any work: a launcher option the chosen launcher would ignore (any of them without ``--launcher``,
    a SLURM one with ``--launcher local``, ``--jobs`` with ``--launcher slurm``) stops in one line."""
    from aselect_bench.errors import UserError

    for dest in (*LAUNCHER_FLAGS, "slurm", "jobs"):
        if getattr(args, dest) is None:
            continue
        flag = "--" + dest.replace("_", "-")
        if args.launcher is None:
            fix = ("--launcher local" if dest == "jobs" else "--launcher slurm" if dest in SLURM_ONLY else
                   "--launcher slurm or --launcher local")
            raise UserError(f"{flag} is a launcher setting, ignored without --launcher: add {fix}, or leave {flag} "
                            f"out")
        if args.launcher == "local" and dest in SLURM_ONLY:
            raise UserError(f"{flag} is a SLURM setting, ignored by --launcher local: use --launcher slurm, or leave "
                            f"{flag} out")
        if args.launcher == "slurm" and dest == "jobs":
            raise UserError("--jobs is how many local jobs run at once, ignored by --launcher slurm: use "
                            "--array-parallelism for SLURM, or leave --jobs out")


def run(args: argparse.Namespace):
    from aselect_bench.analyses.compare import Comparison, check_candidates_to_compare, run_comparison
    from aselect_bench.analyses.compare_report import console_lines, write_comparison
    from aselect_bench.analyses.leaderboard import leaderboard_name, write_leaderboard
    from aselect_bench.commands.options import check_output_folders, preset_from_args
    from aselect_bench.errors import UserError
    from aselect_bench.experiments import build_experiment, preset_backbone
    from aselect_bench.launch import check_launcher_options, launch
    from aselect_bench.reports import comparison_name, report_logdir
    from aselect_bench.selectors import build_selector, check_candidates, check_enough_images

    check_launcher_flags(args)
    if args.selectors and args.no_selectors:
        raise UserError("--selectors and --no-selectors contradict each other: give one of them")
    preset = preset_from_args(args, args.task).override(
        seeds=args.seeds, **{f"launcher.{key}": getattr(args, flag) for flag, key in LAUNCHER_FLAGS.items()},
        **({"launcher.slurm": {**dict(args.slurm)}} if args.slurm else {}))
    check_candidates_to_compare(preset.hfr.candidates, args.only)
    check_launcher_options(args.launcher, not args.no_wait, args.fused, args.only, args.dry_run)
    check_output_folders(args, "out", "state", "runs")
    for name in args.selectors or []:  # an unknown, inapplicable or unscorable name stops here, before any training
        selector = build_selector(name, preset.hfr)
        if not selector.applies_to(args.task):
            raise UserError(f"selector {name!r} does not apply to the {args.task} task; leave it out of --selectors")
        check_enough_images(selector, preset.hfr.num_images, "the preset's hfr.num_images")
    check_search_flags(args)
    datasets = ["ade20k"] if args.task == "ade20k" else (
        list(preset.fgvc.datasets) if args.dataset == "all" else [args.dataset])
    selectors = False if args.no_selectors else (args.selectors or True)
    backbone = preset_backbone(preset, args.task)
    check_candidates(preset.hfr.candidates, backbone.num_train_timesteps)
    # every dataset's folder and index files are read (and a synthetic one written) before the first training
    experiments = [build_experiment(args.task, dataset, preset, backbone) for dataset in datasets]
    if args.search:
        return [run_search(Comparison(exp, args.state, args.runs, selectors), args) for exp in experiments][-1]
    launched = None
    if args.launcher:
        comparisons = [Comparison(exp, args.state, args.runs, selectors) for exp in experiments]
        launched = launch(comparisons, args.launcher, args.state, args.runs, selectors, jobs=args.jobs,
                          wait=not args.no_wait, dry_run=args.dry_run)
        if launched is None:
            return None
    results = []
    for index, (dataset, exp) in enumerate(zip(datasets, experiments)):
        if len(datasets) > 1:
            print(f"[{index + 1}/{len(datasets)}] {args.task} {dataset}")
        result = run_comparison(exp, state_root=args.state, runs_dir=args.runs, selectors=selectors,
                                fused=args.fused, only=args.only)
        if result is None:
            continue
        if launched is not None:
            result["launcher"] = {k: launched[k] for k in ("kind", "jobs", "settings")}
            result["wall_seconds"] = launched["wall_seconds"]
        stem = write_comparison(result, args.out, tensorboard_dir=report_logdir(args.runs, comparison_name(result)))
        print("\n".join(console_lines(result, stem)))
        board = write_leaderboard(args.out, preset.name,
                                  tensorboard_dir=report_logdir(args.runs, leaderboard_name(preset.name)))
        if board is not None:
            print(f"selectors' leaderboard over the comparisons in {args.out} -> {board}.md")
        results.append(result)
    return results[0] if len(results) == 1 else results or None


def check_search_flags(args: argparse.Namespace) -> None:
    """``--search NAME``: a registered search, run on its own (no launcher, no share of the sweep, no fused run)."""
    if not args.search:
        return
    from aselect_bench.errors import UserError
    from aselect_bench.searches import build_search

    build_search(args.search)  # an unknown name stops here, naming the registered ones
    for flag, given in (("--launcher", args.launcher), ("--only", args.only), ("--fused", args.fused)):
        if given:
            raise UserError(f"--search runs one search live on its own: leave out {flag} (run the comparison "
                            f"without --search for it)")


def run_search(comparison, args: argparse.Namespace) -> dict:
    """Search ``args.search`` live on ``comparison`` (:func:`aselect_bench.searches.live.run_live`), written to
    ``<out>/<label>-search-<name>.json``."""
    from pathlib import Path

    from aselect_bench.io import atomic_write_json
    from aselect_bench.reports import run_record
    from aselect_bench.searches.live import run_live

    exp = comparison.exp
    result = {"task": exp.task, "dataset": exp.dataset, "preset": exp.preset.name, "candidates": comparison.candidates,
              **run_live(comparison, args.search, args.out), "run": run_record(exp.preset, exp.backbone)}
    path = Path(args.out) / f"{comparison.label}-search-{args.search}.json"
    atomic_write_json(path, result)
    for run in result["runs"]:
        seed = f" seed {run['repeat']}" if run["repeat"] else ""
        print(f"{exp.dataset}{seed}: {args.search} (live) picks t={run['timestep']} after {run['epochs']} epochs "
              f"({run['cost_fraction']:.0%} of the exhaustive search's), test "
              f"{'-' if run['test'] is None else format(run['test'], '.2f')}  -> {path}"
              if run["timestep"] is not None else f"{exp.dataset}{seed}: {args.search} picks nothing: {run['reason']}")
    return result
