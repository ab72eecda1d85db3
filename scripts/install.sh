#!/usr/bin/env bash
# Install World Model Playground (editable) into the current Python environment.
#   bash scripts/install.sh          the library, the app and every optional env (Atari, Box2D)
#   bash scripts/install.sh --test   the same plus pytest, ruff, playwright and Debian's chromium
# torch: an existing install is left alone (a GPU user's CUDA build stays); a machine with an NVIDIA
# driver gets pip's default build; any other machine gets torch==2.13.0, the CPU build, so no CUDA
# wheels are downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

if "$PY" -c "import torch" 2>/dev/null; then
  echo "install: torch $("$PY" -c 'import torch; print(torch.__version__)') is already installed; leaving it"
elif command -v nvidia-smi >/dev/null 2>&1; then
  "$PY" -m pip install -q torch
else
  "$PY" -m pip install -q "torch==2.13.0"
fi

extras="all"
if [ "${1:-}" = "--test" ]; then
  extras="all,test"
fi
"$PY" -m pip install -q -e ".[${extras}]"

if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  # The browser tests drive Debian's chromium through playwright (never a downloaded browser).
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "install: done in ${SECONDS} s"
