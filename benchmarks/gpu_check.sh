#!/usr/bin/env bash
# The GPU check, one short prepared script (about 4 minutes on one H200):
#   1. the CUDA tests (CUDA values against the CPU's: SOT loss, synth, front ends);
#   2. SOT-2048 steps/s through the real Trainer.fit, fp32 and bf16 (the encoder under autocast),
#      with validation passes on the 800 validation examples;
#   3. the projected time of the paper's 35-run table on this GPU: one run after another, and 4
#      runs sharing the GPU as separate processes.
#
#   bash benchmarks/gpu_check.sh           # where a CUDA GPU is
#   bash benchmarks/gpu_check.sh --smoke   # the same plumbing on the CPU, tiny (tests/ runs it)
#
# On a lent machine whose image lacks this project's packages, carry the wheels that
# benchmarks/gpu_wheels.sh downloads here (.whl/); they are installed to /tmp/site first
# (only when the packages are missing).
# Results: printed, and under ${OUT:-gpu-check}/ as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
RESULTS=${OUT:-gpu-check}
mkdir -p "$RESULTS"
if ! "$PYTHON" -c "import jsonargparse, nnAudio, mir_eval, ot, omegaconf" 2> /dev/null \
        && compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 WANDB_MODE=disabled TQDM_DISABLE=1

if [ "${1:-}" = "--smoke" ]; then
    device=cpu steps=4 copies=2 batch=(--batch-size 16)
    # 2 batches of 16 an epoch, 2 epochs: the plumbing only, not a measurement
    data="$RESULTS/smoke-data.pth"
    "$PYTHON" synthetic_data.py --n-examples 64 --split-sizes 32 16 16 --out "$data" > /dev/null
else
    device=cuda steps=300 copies=4 batch=()
    data=data/40_1950_4096_04_1_4000_8_1_harmonic.pth
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
torch.cuda.get_device_name(0))"
    echo "== CUDA tests"
    "$PYTHON" -m pytest -q -p no:cacheprovider -m '' -k cuda \
        tests/dsp/test_ot.py tests/dsp/test_synth.py tests/dsp/test_spectral.py tests/model/test_encoder.py
fi

echo "== SOT-2048 on $device: fp32, bf16, and $copies copies sharing the device"
for precision in fp32 bf16; do
    "$PYTHON" benchmarks/bench_run_time.py --device "$device" --precision "$precision" \
        --steps "$steps" "${batch[@]}" --data "$data" --json "$RESULTS/run-time-$precision.json" 2>/dev/null
done
"$PYTHON" benchmarks/bench_run_time.py --device "$device" --precision fp32 --steps "$steps" \
    "${batch[@]}" --processes "$copies" --data "$data" --json "$RESULTS/run-time-fp32-x$copies.json" 2>/dev/null
