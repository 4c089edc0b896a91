#!/usr/bin/env bash
# The GPU measurements in one command on the lent machine (device tool; it has torch, jax,
# h5py, pillow, matplotlib, typer, rich but not keras). Prepare here, once per session:
#   bash ../shared/tools/device-wheels.sh adjustText==1.4.0
#     (keras, namex, optree, and adjustText for the leaderboard figure -> .whl/, git-ignored)
#   mkdir -p .data && cp ../shared/data/sign-language-digits.zip ../shared/data/smiles.zip .data/
# then call the device tool's run with carry [".whl", ".data"] and the command
#   bash benchmarks/device.sh STAGE [options passed to its script]
# STAGE: speed (benchmarks/train_speed.py: throughput, memory, time to accuracy),
#        workers (benchmarks/data_workers.py), leaderboard (experiments/study_leaderboard.py).
# Tables and logs land in $OUT. The leaderboard writes its docs into $OUT/docs, so each run's
# record (docs/runs/, metrics only) comes back as soon as it finishes, even if the command is
# stopped at its time limit: copy $OUT/docs/runs/ into docs/ here, rebuild the table with
# `python experiments/study_leaderboard.py --models` (it counts the GPU's bf16 runs) and commit
# docs/runs/, docs/STUDIES.md and docs/figures/leaderboard.png.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
export CNNZOO_DATA_MIRROR="$PWD/.data" CNNZOO_HOME=/tmp/cnnzoo-home
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" || true
stage="${1:?give a stage: speed, workers or leaderboard}"
shift
case "$stage" in
  speed)
    python3 benchmarks/train_speed.py --out "$OUT/benchmarks-train.md" "$@" 2>&1 | tee "$OUT/speed.log" ;;
  workers)
    python3 benchmarks/data_workers.py --output "$OUT/benchmarks-data-workers.md" "$@" 2>&1 | tee "$OUT/workers.log" ;;
  leaderboard)
    mkdir -p "$OUT/docs" && cp -r docs/STUDIES.md docs/runs "$OUT/docs/"
    python3 experiments/study_leaderboard.py --docs "$OUT/docs" "$@" 2>&1 | tee "$OUT/leaderboard.log" ;;
  *)
    echo "Unknown stage $stage: use speed, workers or leaderboard." >&2; exit 2 ;;
esac
