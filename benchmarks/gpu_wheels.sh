#!/usr/bin/env bash
# Wheels for the lent GPU machine (nvidia-h200): its image has torch, accelerate, safetensors, pytest and
# numpy but no diffusers, lion-pytorch, dadaptation, prodigyopt or platformdirs, an older transformers, and
# nothing can be fetched there. This puts what LoRA Studio needs into .whl/ (git-ignored) for the device
# tool's `carry`; see benchmarks/gpu_results.md for the one command that installs and runs them.
# Checked 2026-12-01: 21 MB in all (the device carries 64 MiB), all pure Python except regex (cp312 wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl diffusers==0.42.1 transformers==5.23.0 peft==0.21.2 lion-pytorch==0.2.5 prodigyopt==1.1.2 \
    platformdirs==4.14.9 regex==2026.5.9
python3 -m pip wheel -q --no-deps -w .whl dadaptation==3.2  # PyPI has only its sdist: build the pure-Python wheel
ls -1 .whl
