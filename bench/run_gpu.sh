#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md in one run of a few minutes, on the full-size Qwen2-Audio-7B architecture
# with random weights (nothing downloaded): bf16 and 4-bit latency, throughput and peak memory against the model
# card's recipe; an MMAU-sized run (1000 synthetic 10 s clips at batch 32); one-GPU GRPO steps if train/grpo.py is
# there. Each part has its own time limit and writes its JSON as it finishes, so a failure costs only that part.
#
#   bench/fetch_wheels.sh                     # here, once: the packages the GPU image lacks, into .whl/
#   bash bench/run_gpu.sh                     # there: the device tool's run with carry [".whl"], timeout_s 600
#
# Results: $OUT (or bench/results) holds bf16.json, 4bit.json, mmau_bf16.json, grpo.json and run.log.
set -uo pipefail
out=${OUT:-bench/results}
mkdir -p "$out"
log="$out/run.log"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c \
    "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } >>"$log" 2>&1

bench() {  # bench NAME SECONDS [aqa bench arguments]
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)" | tee -a "$log"
    timeout "$limit" python3 -m aqa bench --random-weights full "$@" --json --output "$out/$name.json" >/dev/null 2>>"$log"
    echo "$name: exit $?" | tee -a "$log"
}

bench bf16 140 --precision bf16 --clips 64
bench 4bit 110 --precision 4bit --clips 64 --baseline-runs 4
bench mmau_bf16 100 --precision bf16 --clips 1000 --batch-sizes 32 --latency-runs 0 --baseline-runs 0
# The one-GPU recipe as written (QLoRA, 8 generations of up to 256 tokens: random weights always write all 256).
echo "== grpo (limit 180s)" | tee -a "$log"
timeout 180 python3 -m bench.grpo_step --random-weights full --steps 2 --output "$out/grpo.json" >>"$log" 2>&1
echo "grpo: exit $?" | tee -a "$log"
python3 -m bench.summary "$out" | tee -a "$log"
