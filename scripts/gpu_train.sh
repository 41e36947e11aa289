#!/usr/bin/env bash
# One call of `imgarc train` on a lent CUDA machine, made to be chained across calls.
#
#   scripts/gpu_train.sh RUN_DIR MINUTES [more `imgarc train` options]
#   IMGARC_COMMAND=optimize scripts/gpu_train.sh RUN_DIR MINUTES [`imgarc optimize` options]
#
# Before each call, here: `python scripts/gpu_prepare.py --part K --parts P [--resume RUN_DIR]`
# (the wheels the GPU image lacks in .whl/, part K of the training photos in .gpu-data/, the
# run's weights-only checkpoint in .gpu-seed/), then `run` this with `carry` as it prints, e.g.
#
#   scripts/gpu_train.sh runs/gpu 8 --data .gpu-data --init msh128-mixed-vr1 --lambdas ... \
#       --batch 32 --crop 256 --scale-jitter 2 --amp
#
# (optimize: a pruned child's fine-tune, e.g. `--widths ... --hyper-widths ... --storage int8`;
# its first call prunes the parent, later ones resume the carried checkpoint the same way.)
#
# Run from the repository root on the GPU machine. Resumes from RUN_DIR/checkpoint.pt when the
# machine is still warm from the previous call; otherwise from .gpu-seed/slim.pt.part*;
# otherwise starts as the options say. Leaves in $OUT the log, the GPU's utilisation every 10 s
# and this call's weights-only checkpoint (fp16 parameters), split into parts small enough to
# come back: here, `cat slim.pt.part* > RUN_DIR/checkpoint.pt` and `imgarc train --run-dir
# RUN_DIR` (or the next call's gpu_prepare.py --resume RUN_DIR) continues it.
# IMGARC_DEVICE=cpu IMGARC_WHEELS=skip runs the same steps here (a dry run of the chain).
set -euo pipefail
run_dir=$1 minutes=$2
shift 2
if [ "${IMGARC_WHEELS:-install}" != skip ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
mkdir -p "$run_dir"
if [ ! -f "$run_dir/checkpoint.pt" ] && compgen -G ".gpu-seed/slim.pt.part*" >/dev/null; then
  cat .gpu-seed/slim.pt.part* > "$run_dir/checkpoint.pt"
  echo "resuming from the carried weights in .gpu-seed"
fi
sampler=
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 10 > "$OUT/gpu_util.csv" &
  sampler=$!
fi
python3 -m imgarc.cli "${IMGARC_COMMAND:-train}" --run-dir "$run_dir" --minutes "$minutes" \
  --device "${IMGARC_DEVICE:-cuda}" "$@" 2>&1 | tee "$OUT/train.log"
if [ -n "$sampler" ]; then
  kill "$sampler" || true
  awk -F', ' '{sub(/ %/, "", $2); s += $2; n++} END {if (n) printf "GPU utilisation: mean %.0f %% over %d samples\n", s / n, n}' "$OUT/gpu_util.csv"
fi
python3 -c "import sys; from pathlib import Path; from imgarc.train.trainer import slim_checkpoint_parts; \
slim_checkpoint_parts(Path(sys.argv[1]), Path(sys.argv[2]))" "$run_dir/checkpoint.pt" "$OUT"
ls -l "$OUT"
