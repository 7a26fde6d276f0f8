"""`moebench plan` on a CPU suite imports no torch: the FLOP count, the activation, router and backend names and
the device check come from torch-free modules (models/names.py). Run in a fresh interpreter, where nothing else
has imported torch yet."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = ("import sys; from moebench.cli import main; rc = main({argv!r}); "
         "print('torch loaded' if 'torch' in sys.modules else 'no torch', rc)")


def plan_in_fresh_python(*argv: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=["plan", *argv])], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_plan_of_a_cpu_suite_does_not_import_torch():
    lines = plan_in_fresh_python("suites/quickstart.yaml", "--set", "train.device=cpu")
    assert any("solved expert_d_ff" in ln for ln in lines)  # the plan really ran: widths solved, FLOPs counted
    assert lines[-1] == "no torch 0"


def test_plan_of_a_suite_with_swiglu_and_expert_choice_does_not_import_torch():
    lines = plan_in_fresh_python("suites/quickstart.yaml", "--set", "train.device=cpu",
                                 "--set", "variants.moe8.router=expert_choice", "--set", "base.activation=swiglu",
                                 "--json")
    assert lines[-1] == "no torch 0"
