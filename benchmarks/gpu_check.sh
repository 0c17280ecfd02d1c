#!/usr/bin/env bash
# One prepared run of the CUDA tests (tests/test_gpu.py, `-m gpu`: what `make test-gpu` runs) on a lent GPU
# machine, with an optional GPU performance run (benchmarks/perf/perf_gpu.py); sized to finish in under 6 minutes.
# Prints a short summary (device, torch, driver, test counts) and writes it to $OUT/gpu_check.{txt,json}
# when OUT is set. Run from the repository root.
#
#   benchmarks/gpu_check.sh [--dry-run] [--with-perf]
#
# --dry-run   on a machine without CUDA: check the wheel folder, run the gpu tests with the CPU in the GPU's
#             place (ASELECT_TEST_DEVICE=cpu: proves the tests and this script work, not CUDA), print the
#             summary. Installs nothing. PYTEST_ADDOPTS (e.g. "-k hfr_scan") narrows the tests, as pytest reads it.
# --with-perf also run `benchmarks/perf/perf_gpu.py` (results/perf/gpu.{json,md}, copied to $OUT/perf/).
#
# The GPU machine cannot reach a registry. Its python3 has torch, lightning, torchmetrics, timm, transformers,
# tensorboard, accelerate, safetensors, huggingface-hub, pyarrow, pandas, xxhash, fsspec, pyyaml, scipy,
# matplotlib; the rest travels as wheels in .whl/ (ignored by git; carried with the run), fetched on a machine
# with pip and network, from the repository root, with exactly:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     diffusers==0.42.1 datasets==5.2.0 jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 \
#     dill==0.4.1 multiprocess==0.70.19 importlib_metadata==10.2.0 lazy-importer==0.1.0
#
# (the versions of this project's tested environment; all are pure-Python wheels). Before the run, check the
# machine's own versions against what these need (`python3 -m pip show huggingface-hub pyarrow fsspec` there:
# diffusers 0.42 needs huggingface-hub>=1.32, datasets 5.2 pyarrow>=24 and fsspec<=2026.9).
# With the device tool: carry [".whl"], command `bash benchmarks/gpu_check.sh --with-perf`, timeout_s 420: the
# tests and perf_gpu.py have their own limits (150 s and 210 s), so the whole run stays under 6 minutes.
set -uo pipefail

DRY_RUN=0
WITH_PERF=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --with-perf) WITH_PERF=1 ;;
    *) echo "gpu_check.sh: unknown option $arg (use --dry-run, --with-perf)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
# distribution:module pairs the suite needs beyond the GPU image
REQUIRED=${REQUIRED:-"diffusers:diffusers datasets:datasets jsonargparse:jsonargparse docstring_parser:docstring_parser typeshed_client:typeshed_client dill:dill multiprocess:multiprocess importlib_metadata:importlib_metadata lazy-importer:lazy_importer"}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One line per problem with the wheel folder: two versions of one package, or a needed package neither
# importable nor among the wheels. Prints the wheels it would install.
check_wheels() {
  "$PYTHON" - "$WHEELS" "$REQUIRED" <<'EOF'
import importlib.util
import re
import sys
from collections import defaultdict
from pathlib import Path

folder, required = Path(sys.argv[1]), sys.argv[2].split()
norm = lambda name: re.sub(r"[-_.]+", "_", name).lower()  # noqa: E731
versions = defaultdict(set)
for wheel in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
    name, version = wheel.name.split("-")[:2]
    versions[norm(name)].add(version)
problems = [f"{name}: {len(v)} versions ({', '.join(sorted(v))}); keep one" for name, v in versions.items() if len(v) > 1]
for pair in required:
    dist, module = pair.split(":")
    if norm(dist) not in versions and importlib.util.find_spec(module) is None:
        problems.append(f"{dist}: not installed and no wheel in {folder}/ (see the pip download line in this script)")
print(f"wheels in {folder}/: {', '.join(f'{n}=={min(v)}' for n, v in sorted(versions.items())) or 'none'}")
for p in problems:
    print(f"gpu_check.sh: {p}", file=sys.stderr)
sys.exit(2 if problems else 0)
EOF
}

check_wheels || exit 2
if [ "$DRY_RUN" = 0 ]; then
  if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl || exit 2
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check.sh: no CUDA device here; use --dry-run on a CPU machine" >&2; exit 2; }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export ASELECT_CACHE="$WORK/cache"
[ "$DRY_RUN" = 1 ] && export ASELECT_TEST_DEVICE=cpu
# The caps size the GPU run (under 6 minutes); a dry run on a shared CPU may take longer without being wrong.
TEST_CAP=150 PERF_CAP=210
[ "$DRY_RUN" = 1 ] && TEST_CAP=900 PERF_CAP=900

start=$(date +%s)
timeout "$TEST_CAP" "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$WORK/gpu.xml" tests/test_gpu.py
status=$?
seconds=$(( $(date +%s) - start ))
perf_status=""
if [ "$WITH_PERF" = 1 ]; then
  perf_out=results/perf/gpu
  perf_args=()
  [ "$DRY_RUN" = 1 ] && perf_out="$WORK/perf/gpu" && perf_args=(--dry-run)
  timeout "$PERF_CAP" "$PYTHON" benchmarks/perf/perf_gpu.py "${perf_args[@]}" --out "$perf_out"
  perf_status=$?
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/perf" && cp "$perf_out".json "$perf_out".md "$OUT/perf/" 2>/dev/null
  fi
fi

"$PYTHON" - "$WORK/gpu.xml" "$DRY_RUN" "$status" "$seconds" "$perf_status" "${OUT:-}" <<'EOF'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, "benchmarks/perf")
from perf_gpu import device_info  # noqa: E402

xml, dry_run, status, seconds, perf_status, out = sys.argv[1:7]
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
if Path(xml).exists():
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in counts}
summary = {
    "dry_run": dry_run == "1", **device_info(),
    "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
    "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"],
    "pytest_status": int(status), "seconds": int(seconds),
    "perf_status": int(perf_status) if perf_status else None,
}
text = (f"gpu_check{' (dry run: the gpu tests ran on the CPU)' if summary['dry_run'] else ''}: device "
        f"{summary['device']}, torch {summary['torch']} (CUDA {summary['cuda']}, driver {summary['driver']}); gpu tests: "
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['errors']} errors, {summary['skipped']} "
        f"skipped in {seconds}s" + (f"; perf_gpu.py exit status {perf_status}" if perf_status else ""))
print(text)
if out:
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "gpu_check.txt").write_text(text + "\n")
    Path(out, "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
EOF
# exit status: pytest's, or perf_gpu.py's when that failed
if [ -n "$perf_status" ] && [ "$perf_status" != 0 ]; then exit "$perf_status"; fi
exit "$status"
