#!/usr/bin/env bash
# One-call GPU check (docs/kernels.md, "One-call GPU check"): benchmarks/gpu/run.sh OUTDIR [--dry-run]
# Runs with the interpreter that holds torch: python3 on the device image, or $MOEBENCH_PYTHON (the dry run on a
# CPU uses the checkout's .venv when there is one).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${MOEBENCH_PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$here/../../.venv/bin/python" ]]; then py="$here/../../.venv/bin/python"; else py="python3"; fi
fi
exec "$py" "$here/driver.py" "$@"
