# Sourced by scripts/start and scripts/test: make .venv/ with lorawb and what it needs.
# An existing torch is kept; otherwise the CUDA build where an NVIDIA GPU is
# present and the CPU build where not (a CPU box never downloads CUDA wheels).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LORAWB_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "lorawb: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
STAMP="$VENV/.lorawb-installed"
want="$(cat "$ROOT/pyproject.toml" | cksum)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
  pip_q=(-q --disable-pip-version-check)
  if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo "lorawb: installing torch (CUDA build)" >&2
      "$VPY" -m pip install "${pip_q[@]}" "torch>=2.4"
    else
      echo "lorawb: installing torch (CPU build)" >&2
      # The CPU index first; a machine that cannot reach it falls back to its own index/wheels.
      "$VPY" -m pip install "${pip_q[@]}" --retries 0 --timeout 15 \
          --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" 2>/dev/null \
        || "$VPY" -m pip install "${pip_q[@]}" "torch==2.13.0"
    fi
  fi
  echo "lorawb: installing lorawb and its dependencies" >&2
  "$VPY" -m pip install "${pip_q[@]}" -e "$ROOT[test]"
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
