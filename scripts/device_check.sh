#!/usr/bin/env bash
# The GPU check of mtlstm_hf: one command on one NVIDIA H100/H200, at most 8 minutes of wall time.
#
#   OUT=results bash scripts/device_check.sh                      # on the GPU machine
#   DEVICE_CHECK_DRY_RUN=1 OUT=/tmp/dc bash scripts/device_check.sh  # on a CPU: every stage in seconds,
#                                                                   # the CUDA-only parts skip (the test suite does this)
#
# Stages, in order of value, each with its own time limit; a failing stage does not stop the next:
#   0_env        versions, cuDNN, TF32 flags, the GPU; the library imports         benchmarks/gpu/env.py
#   1_probes     one probe per hazard of the CUDA path                              benchmarks/gpu/probes.py
#   2_tests      tests/test_cuda.py and the device-parametrised tests              benchmarks/gpu/cuda_tests.txt
#   3_throughput paper-sized model vs a cuDNN nn.LSTM stack, batch 20 and 80,      benchmarks/bench_model.py
#                training step with the optimizer and evaluation, peak memory
#   4_ptb_epoch  the real training loop: minutes per paper-scale PTB epoch         benchmarks/bench_training.py
#                (training + validation + checkpoint), projected lm-ptb --scale paper
#   5_dyck       one Dyck-2 epoch per arm                                           benchmarks/bench_dyck.py
#   6_compile    torch.compile under the compile policy                            benchmarks/gpu/compile_check.py
# Writes exactly three files into $OUT (default ./device-check-out): summary.txt (a line per stage),
# logs.txt (everything the stages printed) and results.json (benchmarks/gpu/merge.py).
# Exit code: 0 when every stage passed, 1 otherwise.
#
# The GPU machine has no network and no `datasets`: fetch its wheels here first with
# scripts/fetch_device_wheels.sh (into .whl/, which git ignores), name .whl in the device tool's
# `carry`; this script installs them from there, without the network. Run it with timeout_s 540.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-check-out}
mkdir -p "$OUT"
: >"$OUT/logs.txt"
: >"$OUT/summary.txt"
W=$(mktemp -d "${TMPDIR:-/tmp}/device-check.XXXXXX")   # the stages' files; only 3 files go to $OUT
DRY=${DEVICE_CHECK_DRY_RUN:-0}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>"$OUT/logs.txt" 2>&1; then
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
  else
    echo "wheels in .whl/ did not install (see logs.txt)" | tee -a "$OUT/summary.txt"
  fi
fi

T0=$(date +%s)
FAILED=0
stage() {  # stage NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local start rc took status
  start=$(date +%s)
  echo "=== $name (limit ${limit} s, at $((start - T0)) s): $*" >>"$OUT/logs.txt"
  timeout -k 5 "$limit" "$@" >>"$OUT/logs.txt" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  [ "$rc" -eq 0 ] || FAILED=1
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$took" "$status" >>"$W/stages.tsv"
  echo "$name: $status (exit $rc, ${took} s)" | tee -a "$OUT/summary.txt"
}

if [ "$DRY" = 1 ]; then
  echo "dry run: on the CPU, tiny sizes, the CUDA-only parts skip" | tee -a "$OUT/summary.txt"
  stage 0_env 60 "$PY" benchmarks/gpu/env.py --json "$W/env.json"
  stage 1_probes 60 "$PY" benchmarks/gpu/probes.py --json "$W/probes.json" --dry-run
  stage 2_tests 120 env MTLSTM_CUDA_TEST_DEVICE=cpu "$PY" -m pytest -v -p no:cacheprovider --junitxml "$W/tests.xml" \
    tests/test_cuda.py -k "fused_kernels and lstm and no_grad"
  stage 3_throughput 60 "$PY" benchmarks/bench_model.py --device cpu --small --vocab-size 100 --threads 1 --steps 2 \
    --warmup 1 --batch-sizes 4 --variants nn.LSTM,plain,dropconnect,awd,awd-bf16 --eval --json "$W/throughput.json"
  stage 4_ptb_epoch 60 "$PY" benchmarks/bench_training.py --device cpu --models paper --tiny --steps 2 --time-checkpoint \
    --json "$W/epoch.json"
  stage 5_dyck 60 "$PY" benchmarks/bench_dyck.py --device cpu --num-train 100 --hidden-size 16 --max-seconds 1 \
    --eval-max-seconds 1 --json "$W/dyck.json"
  stage 6_compile 60 "$PY" benchmarks/gpu/compile_check.py --json "$W/compile.json" --dry-run
else
  stage 0_env 20 "$PY" benchmarks/gpu/env.py --json "$W/env.json"
  stage 1_probes 60 "$PY" benchmarks/gpu/probes.py --json "$W/probes.json"
  # -v: every result reaches logs.txt as it happens (a stage stopped at its limit writes no JUnit file);
  # pytest-timeout (in the image) stops a hung test instead of the whole stage.
  TIMEOUT_OPTION=$("$PY" -c "import pytest_timeout" 2>/dev/null && echo "--timeout=90")
  # shellcheck disable=SC2046,SC2086 (one test id per line)
  stage 2_tests 150 env MTLSTM_TEST_DEVICE=cuda "$PY" -m pytest -v -p no:cacheprovider $TIMEOUT_OPTION \
    --junitxml "$W/tests.xml" $(cat benchmarks/gpu/cuda_tests.txt)
  stage 3_throughput 90 "$PY" benchmarks/bench_model.py --device cuda --batch-sizes 20,80 \
    --variants nn.LSTM,plain,dropconnect,awd,awd-bf16 --eval --warmup 10 --steps 30 --json "$W/throughput.json"
  stage 4_ptb_epoch 60 "$PY" benchmarks/bench_training.py --device cuda --models paper --warmup 10 --steps 60 \
    --time-checkpoint --json "$W/epoch.json"
  # 2 arms x (10 s of training + 2 x 3 s of evaluation) + start-up < 50 s; both scripts write their JSON
  # after each part, so a stage stopped at its limit keeps what it measured.
  stage 5_dyck 50 "$PY" benchmarks/bench_dyck.py --device cuda --threads 4 --max-seconds 10 --eval-max-seconds 3 \
    --json "$W/dyck.json"
  stage 6_compile 50 "$PY" benchmarks/gpu/compile_check.py --json "$W/compile.json"
fi

if ! "$PY" benchmarks/gpu/merge.py "$W" >"$OUT/results.json" 2>>"$OUT/logs.txt"; then
  echo "merge: failed (see logs.txt)" | tee -a "$OUT/summary.txt"
  FAILED=1
fi
echo "total: $(($(date +%s) - T0)) s; $([ "$FAILED" = 0 ] && echo 'every stage passed' || echo 'some stages failed')" |
  tee -a "$OUT/summary.txt"
exit "$FAILED"
