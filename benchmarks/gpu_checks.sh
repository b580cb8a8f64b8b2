#!/bin/bash
# Every GPU check of issue #17 in one script, for the `device` machine (one NVIDIA GPU, torch and Lightning
# installed, no internet). Prepare once, on the development machine, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 mnist1d
#   (antlr4-python3-runtime ships as a source archive: `pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3`)
# then run this with carry [".whl"] and a timeout of about 500 s. Results go to $OUT (or ./gpu-checks).
set -uo pipefail
out=${OUT:-gpu-checks}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD/src || exit 1
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 NETKILN_CACHE_DIR=/tmp/netkiln-cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)"

# 1. cuda_graphs=true captures and trains what the eager steps train (MLP, CNN, GRU).
timeout 120 python3 benchmarks/check_cuda_graphs.py 2>&1 | tee "$out/check_cuda_graphs.txt"
# 2. Epoch time vs the hand-written eager loop, eager netkiln then netkiln with CUDA graphs (targets 0.9x; 1.15x for
#    the 784-512-512 MLP).
timeout 100 python3 benchmarks/bench_training.py --repeats 3 --epochs 5 --big-repeats 2 2>&1 | tee "$out/bench_eager.txt"
timeout 100 python3 benchmarks/bench_training.py --repeats 3 --epochs 5 --big-repeats 2 --cuda-graphs 2>&1 \
    | tee "$out/bench_cuda_graphs.txt"
# 3. Streamed images on the GPU: GPU utilisation sampled every 100 ms while the benchmark trains.
nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader -lms 100 > "$out/gpu_utilisation.csv" &
smi=$!
timeout 150 python3 benchmarks/bench_images.py 2>&1 | tee "$out/bench_images.txt"
kill $smi
python3 - "$out/gpu_utilisation.csv" <<'PY'
import sys
values = [int(line.split(",")[1].split()[0]) for line in open(sys.argv[1]) if "%" in line]
busy = [v for v in values if v > 0]
print(f"GPU utilisation while bench_images ran: {len(values)} samples, mean {sum(values) / max(1, len(values)):.0f}%,"
      f" mean of non-idle samples {sum(busy) / max(1, len(busy)):.0f}%")
PY
