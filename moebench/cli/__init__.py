"""Command line: argument parsing and exit codes, nothing else.

Exit codes: 0 ok; 1 an internal error (a bug: traceback); 2 the user's error (one line naming the file or
field, nothing on disk changed); 3 `run` finished but at least one run failed (NaN loss, a crashed rank; the
report's "Failed runs" section says which, at which step, why); 130 interrupted; 141 the reader of stdout went
away (a broken pipe, e.g. `| head -1`), nothing said on stderr.
"""
from __future__ import annotations

import argparse
import errno
import sys
import warnings
from pathlib import Path

from moebench.errors import UserError
from moebench.io import RESULTS_ROOT

COMMANDS = ("run", "plan", "report", "eval", "compare", "bench", "check", "export", "publish")


# Library warnings the user can do nothing about (torch internals, matplotlib layout); they are not errors.
QUIET_WARNINGS = (("ignore", r"torch(\..*)?$"), ("ignore", r"matplotlib(\..*)?$"), ("ignore", r"lm_eval(\..*)?$"),
                  ("ignore", r"pandas(\..*)?$"))


def quiet_library_warnings() -> None:
    for action, module in QUIET_WARNINGS:
        warnings.filterwarnings(action, module=module)
    # warnings a library attributes to our calling line (stacklevel), so the module filter above misses them
    warnings.filterwarnings("ignore", message="No artists with labels found to put in legend")
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    warnings.filterwarnings("ignore", category=FutureWarning)


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("moebench")
    except PackageNotFoundError:  # imported from a checkout that was never pip-installed
        return "unknown (not installed; pip install -e .)"


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {n})")
    return n


class ArgParser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; keep its message short and ours
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def jobs_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of runs >= 1 or auto, got {text!r}")
    return n


def build_parser() -> ArgParser:
    p = ArgParser(prog="moebench", description="Dense vs Mixture-of-Experts benchmark suites.")
    p.add_argument("--version", action="store_true", help="print moebench's version and exit")
    sub = p.add_subparsers(dest="command", parser_class=ArgParser)

    r = sub.add_parser("run", help="plan, train every (variant, seed), evaluate, write the report")
    r.add_argument("suite", type=Path, help="the suite YAML file (e.g. suites/quickstart.yaml)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite field, e.g. --set train.steps=50 (repeatable)")
    r.add_argument("--preset", default=None, help="a preset of the suite (e.g. cpu, gpu); default: its first")
    r.add_argument("--results", type=Path, default=Path(RESULTS_ROOT), help="results root (default: results/)")
    r.add_argument("--reports", type=Path, default=None,
                   help="reports root (default: the suite's report.out, reports/); the project's committed reports "
                        "are regenerated only by naming it: --reports evidence")
    r.add_argument("--force", action="store_true", help="redo runs that already finished")
    r.add_argument("--skip-memory-check", action="store_true",
                   help="train even when the memory estimate (weights, gradients, optimizer state, activations, "
                        "times the runs trained at once) exceeds the machine's (docs/validation.md)")
    r.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.add_argument("--sidebyside", action="store_true",
                   help="after training, time the variants' steps interleaved (results/<suite>/sidebyside.json), "
                        "30 rounds; automatic when the suite has a throughput_ratio claim, then within 7%% of the "
                        "suite's wall")
    r.add_argument("--wait", action="store_true",
                   help="if another moebench run holds the results directory, wait for it instead of exiting")
    r.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="train on N local processes (torchrun --standalone --nproc_per_node=N)")
    r.add_argument("--track", action="append", default=[], metavar="NAME",
                   help="also stream every run to this experiment tracker (tensorboard, wandb; repeatable; adds to "
                        "the suite's track:)")
    r.add_argument("--jobs", type=jobs_arg, default=None, metavar="N|auto",
                   help="train up to N runs at once, each in its own process (default 1: one after another). "
                        "auto: on CUDA one run per visible GPU (each worker pinned with CUDA_VISIBLE_DEVICES); on "
                        "CPU max(1, free cores // train.threads), where free cores = the cores this process may "
                        "use (its affinity mask) minus the 1-minute load average rounded, at least 1, and "
                        "train.threads unset counts as every core. Losses equal a sequential run's bit for bit (same "
                        "train.threads); throughput is measured beside the other runs and recorded as such")
    r.add_argument("--shard", default=None, metavar="K/N",
                   help="run only the K-th of N disjoint round-robin slices of the suite's runs (1 <= K <= N), "
                        "e.g. one per Slurm array task into a shared --results; no report: run `moebench report` "
                        "when every shard has finished")
    r.add_argument("--launcher", choices=["local", "ray"], default="local",
                   help="local (default): this machine; ray: each run a Ray task (pip install -e '.[ray]') "
                        "on a results directory every node can read and write")
    r.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="with --launcher ray: the cluster to join (default: start a local one)")
    r.add_argument("--until-decided", action="store_true",
                   help="train seeds in rounds (the suite's seeds, then 2 more per variant each round) until every "
                        "claim is decided, the budget is spent or --max-seeds is reached; a group-sequential rule "
                        "(O'Brien-Fleming-type alpha spending) keeps false PASS at its one-sided 2.5%% over all the "
                        "looks; results/<suite>/sequential.json records the rounds (docs/claim-rules.md)")
    r.add_argument("--budget", default=None, metavar="DURATION",
                   help="with --until-decided: wall-clock budget, e.g. 30m, 2h, 5400s; a round whose estimated time "
                        "(the finished runs' mean wall time) does not fit in what is left is not started")
    r.add_argument("--max-seeds", type=positive_int, default=None, metavar="N",
                   help="with --until-decided: at most N seeds per variant (default 10, or the suite's seed count "
                        "when larger)")

    pl = sub.add_parser("plan", help="print params and FLOPs per variant, check FLOP matching; no training")
    pl.add_argument("suite", type=Path, help="the suite YAML file (e.g. suites/quickstart.yaml)")
    pl.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a suite field, e.g. --set train.steps=50 (repeatable)")
    pl.add_argument("--preset", default=None, help="a preset of the suite (e.g. cpu, gpu); default: its first")
    pl.add_argument("--json", action="store_true", help="print the plan rows as a JSON list")
    pl.add_argument("--skip-memory-check", action="store_true",
                    help="plan even when a run's memory estimate exceeds the machine's (docs/validation.md)")
    pl.add_argument("--power", action="store_true",
                    help="per claim: the seed noise its rule assumes, the effect it tests, the seeds that give it "
                         "0.8 power and the compute time that takes (docs/claim-rules.md). Noise from --pilot, else "
                         "the stored results/<suite>/, else a short pilot it trains under results/<suite>/pilot/ "
                         "(2 seeds of each compared variant, a quarter of the steps): the one plan mode that trains")
    pl.add_argument("--pilot", type=Path, default=None, metavar="RESULTS",
                    help="with --power: a finished results folder of the suite to take the noise from")
    pl.add_argument("--results", type=Path, default=Path(RESULTS_ROOT),
                    help="with --power: the results root holding <suite>/ (default: results)")
    pl.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                    help="with --power: runs trained at once, dividing the compute time (default 1)")

    rp = sub.add_parser("report", help="(re)write the report of stored results")
    rp.add_argument("results_dir", type=Path, help="results/<suite>/")
    rp.add_argument("--out", type=Path, default=None,
                    help="output directory (default: reports/<suite>/; evidence/<suite>/ regenerates the project's "
                         "committed report)")
    rp.add_argument("--seeds-to-decide", action="store_true", default=None,
                    help="add, per INCONCLUSIVE statistical claim, the seeds and training time that would decide it "
                         "(its rule simulated at the measured noise, as `plan --power`; seconds per claim); on by "
                         "default after `run --until-decided`")

    ev = sub.add_parser("eval", help="run lm-eval tasks on a finished run")
    ev.add_argument("run_dir", type=Path, help="results/<suite>/<variant>/seed-<n>/")
    ev.add_argument("--tasks", nargs="+", required=True, metavar="TASK",
                    help="lm-eval task names (e.g. ptb_ppl, lambada_olmo: shipped with moebench, offline)")
    ev.add_argument("--limit", type=positive_int, default=None, metavar="N",
                    help="evaluate only the first N documents of each task (a quick look; default: all)")
    ev.add_argument("--wait", action="store_true",
                    help="if another moebench command holds the run's results directory (a run, another eval), "
                         "wait for it instead of exiting")

    cp = sub.add_parser("compare", help="side-by-side table of two result sets, their config differences first")
    cp.add_argument("a", type=Path, help="results/<suite>/ of one suite run (A)")
    cp.add_argument("b", type=Path, help="results/<suite>/ of another (B); ratios are B/A")
    cp.add_argument("--force", action="store_true",
                    help="compare even when A and B differ in training length, corpus or tokenizer (refused, "
                         "exit 2, without it)")

    b = sub.add_parser("bench", help="micro-benchmarks")
    b.add_argument("what", choices=["kernels"], help="kernels: the MoE expert kernels against torch and a dense GEMM")
    b.add_argument("--json", action="store_true", help="print the table's rows as JSON instead of markdown")
    b.add_argument("--out", default="reports/kernels", help="where the table is saved as <device>.md")

    ex = sub.add_parser("export", help="a finished run as a transformers model directory (Llama / Mixtral)")
    ex.add_argument("run_dir", type=Path, help="results/<suite>/<variant>/seed-<n>/")
    ex.add_argument("--format", choices=["hf"], default="hf", help="hf: transformers (safetensors, config.json)")
    ex.add_argument("--out", type=Path, required=True, help="the model directory to write (new or empty)")

    pb = sub.add_parser("publish", help="one static site (GitHub Pages) from a directory of reports")
    pb.add_argument("reports_dir", type=Path,
                    help="the reports root, one sub-directory per suite (evidence/ for the project's site)")
    pb.add_argument("--out", type=Path, required=True, help="the site directory to write")
    pb.add_argument("--docs", type=Path, default=None, metavar="DIR",
                    help="also publish this markdown folder (the project's docs/) under SITE/docs/, each page "
                         "rendered as HTML beside its markdown and linked from the index")

    ck = sub.add_parser("check", help="compare results with a stored baseline (exit 1 on a regression)")
    ck.add_argument("results_dir", type=Path, help="results/<suite>/ (with --ab: the suite YAML file)")
    mode = ck.add_mutually_exclusive_group(required=True)
    mode.add_argument("--baseline", type=Path, help="baseline JSON to compare against")
    mode.add_argument("--update-baseline", type=Path, metavar="BASELINE", help="write a baseline from the results")
    mode.add_argument("--ab", metavar="BASE_REF",
                      help="time the suite's MoE/dense speed ratio at BASE_REF and at HEAD alternately on this "
                           "machine; exit 1 if HEAD's is lower by more than the tolerance")
    ck.add_argument("--probes", type=positive_int, default=3, help="--ab: probe processes per code version")
    ck.add_argument("--tolerance", action="append", default=[], metavar="KEY=VALUE",
                    help="override a tolerance: throughput_ratio, memory_ratio, quality (relative), quality_sigmas, "
                         "ab_throughput (--ab)")
    return p


EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE, as a shell reports `yes | head -1`'s writer


def broken_pipe() -> int:
    """The reader of stdout went away (`moebench plan ... | head -1`): stop quietly, as command-line tools do.
    stdout is pointed at /dev/null so the interpreter's final flush of what is still buffered cannot fail again
    (the Python docs' recipe, signal module, "Note on SIGPIPE")."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout replaced by something without a file descriptor (a test's capture)
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_library_warnings()
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")  # `moebench suite.yaml` = `moebench run suite.yaml`
    try:
        args = build_parser().parse_args(argv)
        if args.version:
            print(f"moebench {version()}")
            return 0
        if args.command is None:
            build_parser().print_help()
            return 2
        if args.command == "run":  # [distributed] --nproc, torchrun ranks; plain cmd_run in one process
            from moebench.cli.launch import check_launch_flags, run_command

            check_launch_flags(args)
            code = run_command(args, argv)
        else:
            from moebench.cli import commands, finished

            cmd = getattr(commands, f"cmd_{args.command}", None) or getattr(finished, f"cmd_{args.command}")
            code = cmd(args) or 0
        sys.stdout.flush()  # here, not at exit: a reader that went away is a broken pipe below, not a traceback
        return code
    except BrokenPipeError:
        return broken_pipe()
    except UserError as e:
        print(f"moebench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            print(f"moebench: error: permission denied writing {e.filename or 'a file'}; finished runs are intact, "
                  "fix the permissions (or pass another --results / --reports) and rerun", file=sys.stderr)
            return 2
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"moebench: error: no space left on the device{where}. Finished runs are intact (every file is "
              "written whole or not at all); free some space and rerun the same command to resume.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moebench: interrupted; finished runs are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
