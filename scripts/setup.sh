#!/usr/bin/env bash
# Set up LoRA Studio on a fresh machine: torch first (CPU build unless a torch is already installed,
# since an open torch requirement pulls several GB of CUDA wheels), then the project.
# --test also installs the test extras and Debian's chromium for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch" 2>/dev/null || pip install torch==2.13.0
if [ "${1:-}" = "--test" ]; then
    pip install -e ".[test]"
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq chromium
        else
            echo "note: chromium is not installed; the browser test will be skipped (apt-get install chromium)" >&2
        fi
    fi
else
    pip install -e .
fi
