# Sourced by scripts/start, scripts/test and scripts/lorawb: make .venv/ with lorawb and what it needs,
# at the exact versions of requirements.lock (LORAWB_LOCK=none: the newest releases pyproject.toml allows,
# as scripts/test-latest does). An existing torch is kept; otherwise the CUDA build where an NVIDIA GPU is
# present and the CPU build where not (a CPU box never downloads CUDA wheels). pip prints a line per
# package and its download bars, so a first start that takes minutes shows that it is working.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LORAWB_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
LOCK="${LORAWB_LOCK:-$ROOT/requirements.lock}"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "lorawb: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
STAMP="$VENV/.lorawb-installed"
want="$(cat "$ROOT/pyproject.toml" "$([[ -f $LOCK ]] && echo "$LOCK" || echo /dev/null)" | cksum)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
  pip_args=(--disable-pip-version-check --progress-bar on)
  if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo "lorawb: installing torch (CUDA build, about 3 GB: the bars below show the downloads)" >&2
      "$VPY" -m pip install "${pip_args[@]}" "torch>=2.4" >&2
    else
      echo "lorawb: installing torch (CPU build)" >&2
      # The CPU index first; a machine that cannot reach it falls back to its own index/wheels.
      "$VPY" -m pip install "${pip_args[@]}" --retries 0 --timeout 15 \
          --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" >&2 2>/dev/null \
        || "$VPY" -m pip install "${pip_args[@]}" "torch==2.13.0" >&2
    fi
  fi
  if [[ -f "$LOCK" ]]; then
    echo "lorawb: installing lorawb and its dependencies at the versions of $(basename "$LOCK")" >&2
    "$VPY" -m pip install "${pip_args[@]}" -c "$LOCK" -e "$ROOT[test]" >&2
  else
    echo "lorawb: installing lorawb and the newest releases of its dependencies" >&2
    "$VPY" -m pip install "${pip_args[@]}" --upgrade --upgrade-strategy eager -e "$ROOT[test]" >&2
  fi
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
