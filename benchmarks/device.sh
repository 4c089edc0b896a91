#!/usr/bin/env bash
# The GPU measurements in one command on the lent machine (device tool; it has torch, jax,
# h5py, pillow, matplotlib, typer, rich and nvidia-ml-py but not keras). Prepare here, once:
#   bash ../shared/tools/device-wheels.sh adjustText==1.4.0
#     (keras, namex, optree, and adjustText for the leaderboard figure -> .whl/, git-ignored)
#   mkdir -p .data && cp ../shared/data/sign-language-digits.zip ../shared/data/smiles.zip .data/
# then call the device tool's run with carry [".whl", ".data"], timeout_s 600 and the command
#   bash benchmarks/device.sh STAGE [options passed to its script]
# STAGE: speed (benchmarks/train_speed.py: throughput, GPU busy time, memory, time to accuracy),
#        workers (benchmarks/data_workers.py), leaderboard (experiments/study_leaderboard.py),
#        all (speed, the targets' cases first, then leaderboard with the options given:
#        `all --jobs 8` trains 8 leaderboard runs at once, cheapest first; one small network
#        leaves the GPU mostly idle).
# A session has 15 minutes of device time, the machine's start included, and one command at
# most 10: all stages together stop after BUDGET seconds (default 540; SIGINT, then the
# files are packed), and every script writes as it goes, so a stopped stage keeps what it
# finished. What comes back ($OUT: at most 8 files, none below $OUT/a/b/):
#   speed: benchmarks-train-gpu.md and .json (after each case; copy both into docs/, and
#     `speed --cases ... --update` in a later call adds the missing cases to that table);
#   leaderboard: leaderboard-docs.tar, the leaderboard's docs/ with a record (metrics only)
#     per finished run: `tar -xf FILES_AT/leaderboard-docs.tar` here, rebuild the table with
#     `python experiments/study_leaderboard.py --models` (it counts the GPU's bf16 runs) and
#     commit docs/runs/, docs/STUDIES.md and docs/figures/leaderboard.png;
#   always gpu.txt and each stage's log.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
BUDGET="${BUDGET:-540}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
export CNNZOO_DATA_MIRROR="$PWD/.data" CNNZOO_HOME=/tmp/cnnzoo-home
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" || true

within_budget() {  # run "$@" for what is left of BUDGET; a stopped or failed script ends only its stage
  local left=$((BUDGET - (SECONDS - start))) code=0
  if ((left < 30)); then
    echo "device.sh: ${left}s left of the ${BUDGET}s budget, not enough to start: $*" >&2
    return 0
  fi
  timeout --signal=INT --kill-after=30 "$left" "$@" || code=$?
  ((code == 0)) || echo "device.sh: stopped at the budget or failed (exit $code): $*" >&2
}

speed() {
  cp docs/benchmarks-train-gpu.json docs/benchmarks-train-gpu.md "$OUT/" 2>/dev/null || true  # for --update
  within_budget python3 benchmarks/train_speed.py --out "$OUT/benchmarks-train-gpu.md" "$@" 2>&1 | tee -a "$OUT/speed.log"
}

leaderboard() {
  mkdir -p "$OUT/docs" && cp -r docs/STUDIES.md docs/runs "$OUT/docs/"
  within_budget python3 experiments/study_leaderboard.py --docs "$OUT/docs" "$@" 2>&1 | tee -a "$OUT/leaderboard.log"
  tar -C "$OUT" -cf "$OUT/leaderboard-docs.tar" docs && rm -rf "$OUT/docs"  # one file, not one per run
}

stage="${1:?give a stage: speed, workers, leaderboard or all}"
shift
case "$stage" in
  speed) speed "$@" ;;
  workers)
    within_budget python3 benchmarks/data_workers.py --output "$OUT/benchmarks-data-workers.md" "$@" 2>&1 | tee "$OUT/workers.log" ;;
  leaderboard) leaderboard "$@" ;;
  all)  # issue 7's targets first (batch 256, 224x224), then the rest, then the leaderboard
    speed --cases resnet50-64-b256 resnet50-224 happy-64-b256 happy-64-b32 resnet50-64-b32 resnet50-signs-97
    leaderboard "$@" ;;
  *)
    echo "Unknown stage $stage: use speed, workers, leaderboard or all." >&2; exit 2 ;;
esac
