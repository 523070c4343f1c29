#!/usr/bin/env bash
# Fetch here the wheels the GPU machine lacks, into .whl/ (ignored by git), for scripts/device_check.sh:
# its image has torch, transformers and accelerate but not `datasets` (which mtlstm_hf's data and
# evaluation import) nor two of its requirements; everything else datasets needs is there. The
# device tool then carries .whl (name it in `carry`), and the check installs them without network.
#
#   bash scripts/fetch_device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "datasets==5.2.0" "dill==0.4.1" "multiprocess==0.70.19"
ls -l .whl
