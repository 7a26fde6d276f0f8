"""`moebench run` under torchrun, and `moebench run --nproc N`, which starts torchrun itself.

`--nproc N` is `python -m torch.distributed.run --standalone --nproc_per_node=N -m moebench run ...` (the
same engine, one node). Under torchrun (WORLD_SIZE > 1) every rank starts the process group, trains every
run (rank 0 also logs, writes results and the report) and tears the group down at the end.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from moebench.distributed.groups import DistributedRunFailed, init, is_rank0, rank, teardown
from moebench.errors import UserError


def strip_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run `moebench <argv>` on `nproc` local processes through torchrun; its exit status."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if argv and argv[0] != "run":
        argv = ["run", *argv]
    try:
        torchrun(["--standalone", f"--nproc_per_node={nproc}", "-m", "moebench", *argv])
    except ChildFailedError as e:
        _, failure = e.get_first_failure()
        code = failure.exitcode
        return code if code in (2, 3, 130) else 1
    return 0


def check_launch_flags(args) -> None:
    """--jobs / --shard / --launcher / --address against each other and --nproc: one-line errors, before anything
    is written."""
    from moebench.plan import parse_shard

    if args.shard is not None:
        parse_shard(args.shard)
    distributed = (args.nproc or 1) > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.address is not None and args.launcher != "ray":
        raise UserError("--address: only with --launcher ray (the Ray cluster to join)")
    if args.launcher == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError("--launcher ray: Ray is not installed; pip install -e '.[ray]' (or pip install ray)")
    if args.launcher == "ray" and args.jobs is not None:
        raise UserError("--jobs: Ray places runs by the GPUs and CPUs each asks for; drop --jobs with --launcher ray")
    if distributed and getattr(args, "until_decided", False):  # its rounds judge claims between trainings
        raise UserError("--until-decided: not with --nproc or torchrun (it trains one-process runs in rounds)")
    if distributed and (args.jobs not in (None, 1) or args.launcher == "ray" or args.shard is not None):
        raise UserError("--nproc: a distributed job trains one run at a time on all its processes; "
                        "--jobs, --shard and --launcher ray are for one-process runs")


def run_command(args, argv: list[str]) -> int:
    nproc = getattr(args, "nproc", None) or 1
    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return launch(nproc, strip_nproc(argv))
    from moebench.cli import commands

    init()
    clean = False
    try:
        code = commands.cmd_run(args) if is_rank0() else run_worker(args)
        clean = True
        return code or 0
    except DistributedRunFailed as e:
        print(f"moebench: error: rank {rank()}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        teardown(clean)


def run_worker(args) -> int:
    """A rank > 0: the same runs as rank 0 (which sends its plan), silently, and no report."""
    from moebench.cli.checks import memory_check, runs_at_once
    from moebench.cli.commands import suite_from_args
    from moebench.plan import plan_suite
    from moebench.runs.runner import run_plan

    suite = suite_from_args(args)
    plan = plan_suite(suite, memory_check(args, suite, *runs_at_once(args, suite)))  # refused alike on every rank
    run_plan(plan, args.results, force=args.force, only=args.only, quiet=True, log=lambda *a, **k: None)
    return 0
