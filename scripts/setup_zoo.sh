#!/usr/bin/env bash
# Create .venv-zoo, the environment the real-model zoo (scripts/zoo.py, `make zoo`) runs in.
#
# Real torchvision needs torch 2.14.1 + torchvision 0.29.1 (pip takes both from this machine's
# local disk for Python 3.11: a CUDA build, about 5.5 GB, that runs on the CPU), so the zoo cannot
# share .venv (torch 2.13.0 CPU). On top: timm, transformers, TensorFlow CPU and Keras at the
# versions constraints.txt pins (all but its torch pin), and xlate itself, editable, without deps.
#
#   scripts/setup_zoo.sh [VENV_DIR]          (default: .venv-zoo at the repository root)
#
# Idempotent: a venv that already has everything is left alone (under a second). In that venv,
# import torch/torchvision before TensorFlow: `import tensorflow; import torchvision` segfaults.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-zoo}"
PYTHON311="${PYTHON311:-python3.11}"
command -v "$PYTHON311" >/dev/null 2>&1 || PYTHON311=python3
TORCH="torch==2.14.1 torchvision==0.29.1"
STAMP="$VENV/.xlate-zoo-ready"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(sha1sum "$ROOT/constraints.txt" "$0" | sha1sum)" ]; then
    echo "zoo venv ready in $VENV"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON311" -m venv "$VENV"
echo '*' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q $TORCH
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
grep -v -E '^torch==' "$ROOT/constraints.txt" > "$constraints"
"$VENV/bin/python" -m pip install -q -c "$constraints" $TORCH tensorflow-cpu keras transformers timm \
    click rich safetensors onnx onnxruntime onnxscript
"$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
"$VENV/bin/python" -c "import torch, torchvision, timm, transformers, tensorflow, keras, xlate" 2>/dev/null
sha1sum "$ROOT/constraints.txt" "$0" | sha1sum > "$STAMP"
echo "zoo venv ready in $VENV ($(du -sh "$VENV" | cut -f1))"
