"""The GPU-less compile check really lowers a kernel to sm_90 cubin (in a subprocess: the test session runs
with TRITON_INTERPRET=1, and compile_check refuses to run under the interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os
from triton.backends.nvidia.compiler import get_ptxas
try:
    ptxas = get_ptxas(90).path
except Exception as exc:
    ptxas = None
if not ptxas or not os.path.exists(ptxas):
    print(json.dumps({"no_ptxas": str(ptxas)}))
    raise SystemExit(0)
from triton.backends.compiler import GPUTarget
from moebench.kernels import compile_check as cc, routing
v = next(v for v in cc.variants("bf16") if v.fn is routing._chunk_hist_kernel)
r = cc.lower(v, "bf16", GPUTarget("cuda", 90, 32))
fake_spill = cc.Result("k", "", 90, "bf16", default=True, ok=True, regs=255, spill_bytes=8, smem=0)
fake_optin = cc.Result("k", "", 90, "bf16", default=False, ok=True, regs=255, spill_bytes=8, smem=0)
print(json.dumps({"ok": r.ok, "regs": r.regs, "spill": r.spill_bytes, "smem": r.smem, "error": r.error,
                  "table": cc.format_table([r]), "n_fail": len(cc.failures([r, fake_spill, fake_optin]))}))
"""


def test_lowers_one_kernel_for_sm90_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=1800)  # bounds a hang only
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if "no_ptxas" in out:
        pytest.skip(f"triton cannot find ptxas (looked for {out['no_ptxas']}); the check needs triton's bundled "
                    "ptxas, not a GPU")
    assert out["ok"], out["error"]
    assert 0 < out["regs"] <= 255 and out["spill"] == 0
    assert "_chunk_hist_kernel" in out["table"] and " ok" in out["table"]
    assert out["n_fail"] == 1  # a spill fails the check only in a default-config variant
