#!/usr/bin/env bash
# The GPU-only tests, then every GPU figure of docs/benchmarks.md, in one run of under 10 minutes, on the full-size
# Qwen2-Audio-7B architecture with random weights (nothing downloaded): bf16 and 4-bit latency, throughput and peak
# memory against the model card's recipe; an MMAU-sized run (1000 synthetic 10 s clips at batch 32); two steps of
# the one-GPU GRPO recipe; and, if a "before" package is given, the last change to the package before/after on the
# bf16 model.
# Each part has its own time limit (cut to what is left of BUDGET seconds) and writes its JSON as it finishes, so a
# failure or a slow part costs only that part.
#
#   bench/fetch_wheels.sh                                # here, once: the packages the GPU image lacks, into .whl/
#   mkdir -p .before && git archive COMMIT aqa | tar -x -C .before   # optional: the package before a change
#   bash bench/run_gpu.sh                                # there: the device tool's run, carry [".whl", ".before"]
#
# PARTS="gpu_tests 4bit" runs only those parts; AB_BEFORE (default .before), AB_ARGS, ROUNDS, BEFORE_FLAGS and
# AFTER_FLAGS set the before/after part (bench/before_after.sh).
# NO_WHEELS=1 SIZE=tiny MMAU_CLIPS=64 bash bench/run_gpu.sh runs the same parts on the tiny architecture (on the CPU
# here), to check the script itself before spending GPU time.
#
# Results: $OUT (or bench/results/gpu) holds decode.json, bf16.json, 4bit.json, mmau_bf16.json, one JSON per other
# family and precision (qwen2.5-omni_bf16.json ...), grpo.json, ab/before_1.json, ab/after_1.json and run.log.
set -uo pipefail
out=${OUT:-bench/results/gpu}
budget=${BUDGET:-570} size=${SIZE:-full} mmau_clips=${MMAU_CLIPS:-1000}
families="qwen2.5-omni_bf16 qwen2.5-omni_4bit audio-flamingo-3_bf16 audio-flamingo-3_4bit qwen3-omni_bf16"
parts=${PARTS:-gpu_tests decode bf16 4bit mmau_bf16 $families grpo before_after}
ab_before=${AB_BEFORE:-.before}
ab_args=${AB_ARGS:---precision bf16 --clips 64 --batch-sizes 32 --latency-runs 3 --baseline-runs 0}
mkdir -p "$out"
log="$out/run.log"
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then  # NO_WHEELS=1: use the packages installed here
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Temporary files (1000 clips, the GRPO part's 16 GiB random checkpoint) in memory where there is room: the parts
# measure the model, not the disk.
if [ "$(df --output=avail -B1G /dev/shm 2>/dev/null | tail -1)" -gt 24 ] 2>/dev/null; then export TMPDIR=/dev/shm; fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c \
    "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } >>"$log" 2>&1

part() {  # part NAME SECONDS COMMAND...: run COMMAND under the smaller of SECONDS and what is left of the budget
    local name=$1 limit=$2
    shift 2
    [[ " $parts " == *" $name "* ]] || return 0
    ((limit > budget - SECONDS)) && limit=$((budget - SECONDS))
    if ((limit < 30)); then
        echo "$name: skipped, ${limit}s left" | tee -a "$log"
        return
    fi
    echo "== $name (limit ${limit}s, at ${SECONDS}s)" | tee -a "$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "$name: exit $? at ${SECONDS}s" | tee -a "$log"
}

bench() {  # bench NAME SECONDS [aqa bench arguments]
    local name=$1 limit=$2
    shift 2
    part "$name" "$limit" python3 -m aqa bench --random-weights "$size" "$@" --json --output "$out/$name.json"
}

part gpu_tests 100 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py  # bf16, 4/8-bit, compiled decoding
# Decoding, eager against the fast path (static cache + CUDA graphs), in one process: ms per token at batch 1 and 32
# from a prefilled cache, and a 300-token thinking answer; the fast path's compile is paid before each timing.
bench decode 200 --precision bf16 --clips 32 --batch-sizes 1 32 --latency-runs 0 --baseline-runs 0 \
    --decode-tokens 64 --think-tokens 300
bench bf16 130 --precision bf16 --clips 64 --decode-tokens 0 --think-tokens 0
bench 4bit 110 --precision 4bit --clips 32 --baseline-runs 4 --decode-tokens 0 --think-tokens 0
bench mmau_bf16 120 --precision bf16 --clips "$mmau_clips" --batch-sizes 32 --latency-runs 0 --baseline-runs 0 \
    --decode-tokens 0 --think-tokens 0
# The other model families at their published shapes: peak memory and a 10 s answer's latency at batch 1 and 32, in
# bf16 and 4-bit (Qwen3-Omni: bf16 only, 59 GiB; 4-bit is refused, its experts cannot be quantized).
for family in qwen2.5-omni audio-flamingo-3; do
    for precision in bf16 4bit; do
        bench "${family}_$precision" 70 --family "$family" --precision "$precision" --clips 32 --batch-sizes 1 32 \
            --latency-runs 2 --baseline-runs 0 --decode-tokens 0 --think-tokens 0
    done
done
bench qwen3-omni_bf16 120 --family qwen3-omni --precision bf16 --clips 32 --batch-sizes 1 32 --latency-runs 2 \
    --baseline-runs 0 --decode-tokens 0 --think-tokens 0
# The one-GPU recipe as written (QLoRA, 8 generations of up to 256 tokens: random weights always write all 256).
part grpo 170 python3 -m bench.grpo_step --random-weights "$size" --steps 2 --output "$out/grpo.json"
if [ "$ab_before" = . ] || [ -d "$ab_before/aqa" ]; then
    # shellcheck disable=SC2086  # ab_args is a list of arguments
    part before_after 160 env ROUNDS="${ROUNDS:-1}" bash bench/before_after.sh "$ab_before" "$out/ab" \
        --random-weights "$size" $ab_args
fi
echo "TMPDIR ${TMPDIR:-/tmp}, ${SECONDS}s in all" | tee -a "$log"
python3 -m bench.summary "$out" | tee -a "$log"
[ -d "$out/ab" ] && python3 bench/compare.py "$out/ab" | tee -a "$log"
exit 0
