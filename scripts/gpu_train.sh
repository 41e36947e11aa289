#!/usr/bin/env bash
# One call of `imgarc train` on a lent CUDA machine, made to be chained across calls.
#
#   scripts/gpu_train.sh RUN_DIR SEED_DIR MINUTES [more `imgarc train` options]
#   IMGARC_COMMAND=optimize scripts/gpu_train.sh RUN_DIR SEED_DIR MINUTES [`imgarc optimize` options]
#
# (optimize: a pruned child's fine-tune, e.g. `--widths ... --hyper-widths ... --storage int8`;
# its first call prunes the parent, later ones resume the carried checkpoint the same way.)
#
# Run from the repository root on the GPU machine. That machine has torch but not CompressAI:
# .whl/ must hold its wheels for that machine's Python (cp312), installed here without network.
# Resumes from RUN_DIR/checkpoint.pt when the machine is still warm from the previous call;
# otherwise from SEED_DIR/slim.pt.part* (the weights-only checkpoint an earlier call brought
# back, carried in); otherwise starts as the options say. Leaves in $OUT the log and this
# call's weights-only checkpoint (fp16 parameters), split into parts small enough to come back
# (join with `cat slim.pt.part* > checkpoint.pt`; `imgarc train --run-dir` resumes from it).
set -euo pipefail
run_dir=$1 seed_dir=$2 minutes=$3
shift 3
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
mkdir -p "$run_dir"
if [ ! -f "$run_dir/checkpoint.pt" ] && compgen -G "$seed_dir/slim.pt.part*" >/dev/null; then
  cat "$seed_dir"/slim.pt.part* > "$run_dir/checkpoint.pt"
  echo "resuming from the carried weights in $seed_dir"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m imgarc.cli "${IMGARC_COMMAND:-train}" --run-dir "$run_dir" --minutes "$minutes" --device cuda "$@" 2>&1 | tee "$OUT/train.log"
python3 -c "import sys; from pathlib import Path; from imgarc.train.trainer import slim_checkpoint; \
slim_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]))" "$run_dir/checkpoint.pt" "$OUT/slim.pt"
(cd "$OUT" && split -b 15M -d slim.pt slim.pt.part && rm slim.pt && ls -l)
