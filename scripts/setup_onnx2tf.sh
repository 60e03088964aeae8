#!/usr/bin/env bash
# Create the separate virtual environment that xlate's ONNX fallback (torch -> ONNX -> TensorFlow)
# runs onnx2tf from. onnx2tf pins exact versions of numpy, onnx, onnxruntime, protobuf and
# TensorFlow (1.29.x: numpy 1.26.4, onnx 1.19.1, protobuf 4.25.5, tensorflow 2.19.0, tf-keras),
# which would downgrade the main environment, so it never goes into .venv: xlate calls the
# `onnx2tf` executable of this venv as a subprocess (see xlate/onnx_tools.py).
#
#   scripts/setup_onnx2tf.sh [VENV_DIR]        (default: .venv-onnx2tf at the repository root)
#
# Environment: PYTHON311 (the interpreter to build it with; onnx2tf 1.x wants Python 3.10-3.11
# here), ONNX2TF_VERSION (default below). Idempotent: a venv that already has the wanted version
# is left alone. Cost on the reference machine (2 cores): 2.6 GB of disk (1.8 GB of it TensorFlow)
# and 1 min 47 s from the local package mirror; a second run is a no-op (under a second).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-onnx2tf}"
PYTHON311="${PYTHON311:-python3.11}"
ONNX2TF_VERSION="${ONNX2TF_VERSION:-1.29.24}"

if [ -x "$VENV/bin/onnx2tf" ] && "$VENV/bin/python" - "$ONNX2TF_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("onnx2tf") == sys.argv[1] else 1)
EOF
then
    echo "onnx2tf $ONNX2TF_VERSION already in $VENV"
    exit 0
fi

if ! command -v "$PYTHON311" >/dev/null 2>&1; then
    echo "error: $PYTHON311 not found; set PYTHON311 to a Python 3.10/3.11 interpreter" >&2
    exit 2
fi

"$PYTHON311" -m venv "$VENV"
# A venv inside the work tree must never be committed.
echo '*' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install -q --upgrade pip
# onnx2tf's own metadata pins its whole stack (numpy, onnx, onnxruntime, protobuf, tensorflow,
# tf-keras, onnx-graphsurgeon, ...); installing it by its exact version installs exactly that.
"$VENV/bin/python" -m pip install -q "onnx2tf==$ONNX2TF_VERSION"
"$VENV/bin/onnx2tf" -h >/dev/null 2>&1
echo "onnx2tf $ONNX2TF_VERSION installed in $VENV ($(du -sh "$VENV" | cut -f1))"
