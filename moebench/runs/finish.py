"""What a trained model still owes its summary after training: forward speed and pruning (the suite's
`inference:` section) and lm-evaluation-harness scores (`eval.lm_eval.tasks`).

They run in one process on the saved model, after every run of the suite has trained: in a distributed job,
after the process group is gone, so no peer waits at a barrier while rank 0 evaluates (a real lm-eval task
outlasts any collective timeout), and the inference section is measured for distributed runs too. A summary
that lacks them (interrupted here, or trained before the suite asked for them) gets them on the next run.
"""
from __future__ import annotations

from pathlib import Path

from moebench import io as R
from moebench.plan import RunSpec


def owes(spec: RunSpec, summary: dict) -> bool:
    return summary.get("status") == "ok" and bool(
        (spec.inference and "inference" not in summary) or (spec.eval.lm_eval.tasks and not summary.get("lm_eval")))


def finish_run(spec: RunSpec, rd: Path, log=print) -> dict | None:
    """Add the missing post-training measurements to one finished run's summary; the new summary or None."""
    summary = R.read_json(rd / R.SUMMARY)
    if not owes(spec, summary):
        return None
    from moebench.evals.load import load_trained

    # the backend the run trained with, so the forward timed here is the one training used
    backend = summary.get("backend") if summary.get("backend") not in (None, "none") else "torch"
    model, _, _, device = load_trained(rd, spec.train.device, backend)
    if spec.inference and "inference" not in summary:
        from moebench.training.evaluate import eval_windows
        from moebench.training.inference import measure
        from moebench.training.trainer import load_data

        log(f"  {spec.key} seed {spec.seed}: measuring inference")
        valid = load_data(spec).valid
        windows = eval_windows(valid.tokens, spec.eval.tokens, spec.model.seq_len)
        inf = spec.inference
        summary["inference"] = measure(model, spec.model, windows, spec.eval.batch_size, device,
                                       valid.bytes_per_token, inf.batch_sizes, inf.repeats, inf.prune)
    lm = spec.eval.lm_eval
    if lm.tasks and not summary.get("lm_eval"):
        from moebench.evals.harness import run_lm_eval

        log(f"  {spec.key} seed {spec.seed}: lm-eval {', '.join(lm.tasks)}")
        summary["lm_eval"] = run_lm_eval((model, _tokenizer(spec), spec.model.seq_len, device), lm.tasks, lm.limit,
                                         lm.batch_size)
    R.write_summary(rd, summary)
    return summary


def _tokenizer(spec: RunSpec):
    from moebench.data import get_tokenizer

    return get_tokenizer(spec.corpus.name, spec.corpus.tokenizer)


def finish_runs(specs: list[RunSpec], results_root: Path, log=print) -> int:
    """finish_run for every spec that has a finished run; how many summaries changed."""
    n = 0
    for spec in specs:
        rd = spec.run_dir(results_root)
        if (rd / R.SUMMARY).exists():
            n += finish_run(spec, rd, log) is not None
    return n
