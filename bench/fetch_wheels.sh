#!/usr/bin/env bash
# Wheels that bench/run_gpu.sh installs on the GPU machine, which reaches no package registry: its image has torch
# and transformers 5.17 but not transformers 5.24, bitsandbytes, soundfile, soxr or TRL, and perhaps not our peft or
# a regex new enough for transformers 5.24. Run here, from the repository root, once; they land in .whl/
# (git-ignored, ~63 MB, just under the 64 MiB the device tool carries with the working tree).
set -euo pipefail
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    transformers==5.24.0 tokenizers==0.23.3 regex==2026.11.19 bitsandbytes==0.50.2 soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 \
    pycparser==3.12 trl==1.16.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
du -sh .whl
