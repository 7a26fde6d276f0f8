"""`moebench run SUITE --until-decided [--budget 2h] [--max-seeds N]`: train seeds in rounds until every claim is
decided (analysis/sequential.py), the budget cannot hold another round, or max seeds is reached.

Round 1 trains the suite's seeds (at least 2 per variant); each later round adds ROUND_SEEDS seeds to every variant
(the next integers after the suite's largest seed), and trains only those. A seed is not part of a run's config
hash (each run's spec holds only its own seed), so adding seeds never makes a finished run stale: rounds reuse every
finished run, and a second invocation walks the same looks over the same runs (same data, same decisions) and goes
on from where the first stopped. The seeds of the last look are written into results/<suite>/suite.yaml
(train.seeds), so `report` and `check` see the same runs; what the rounds did is results/<suite>/sequential.json.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path

from moebench import io as R
from moebench.analysis import sequential as S
from moebench.analysis.claims import MIN_SEEDS
from moebench.errors import UserError

ROUND_SEEDS = 2  # seeds each later round adds per variant
DEFAULT_MAX_SEEDS = 10
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str) -> float:
    """Seconds in '30m', '2h', '5400s', '1h30m' (a bare number is seconds)."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    if not t or _DURATION.sub("", t):
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 2h, 5400s, 1h30m)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in _DURATION.findall(t))


def check_flags(args, suite) -> S.Design | None:
    """The design --until-decided asks for, or None without it; flags that do not go with it fail here (one line,
    exit 2, before anything on disk changes)."""
    budget, max_seeds = getattr(args, "budget", None), getattr(args, "max_seeds", None)
    if not getattr(args, "until_decided", False):
        if budget is not None or max_seeds is not None:
            raise UserError(f"{'--budget' if budget is not None else '--max-seeds'}: only with --until-decided")
        return None
    if budget is not None:
        try:
            parse_duration(budget)
        except ValueError as e:
            raise UserError(f"--budget: {e}") from None
    for flag, bad in (("--shard", args.shard), ("--only", args.only)):
        if bad:
            raise UserError(f"--until-decided: not with {flag} (every round trains every variant and judges the "
                            "claims in this process)")
    if not suite.claims:
        raise UserError(f"--until-decided: suite {suite.name} has no claims to decide")
    first = max(MIN_SEEDS, len(suite.train.seeds))
    max_seeds = max_seeds or max(DEFAULT_MAX_SEEDS, first)
    if max_seeds < first:
        raise UserError(f"--max-seeds {max_seeds}: below the {first} seeds the first round trains (train.seeds "
                        f"has {len(suite.train.seeds)}, and every variant needs at least {MIN_SEEDS})")
    return S.design(first, ROUND_SEEDS, max_seeds)


def seeds_for(suite_seeds, n: int) -> list[int]:
    """The suite's seeds, then the next integers after its largest, n in all."""
    seeds = list(suite_seeds)[:n]
    nxt = max(suite_seeds) + 1
    while len(seeds) < n:
        seeds.append(nxt)
        nxt += 1
    return seeds


def with_seeds(plan, seeds: list[int]):
    """The plan with these seeds for every variant; its suite's raw dict (suite.yaml) says so too."""
    suite = plan.suite
    raw = {**suite.raw, "train": {**(suite.raw.get("train") or {}), "seeds": list(seeds)}}
    suite = dataclasses.replace(suite, train=suite.train.model_copy(update={"seeds": list(seeds)}), raw=raw)
    return dataclasses.replace(plan, suite=suite)


def all_specs(plan, d: S.Design) -> list:
    """Every run the rounds may train (to check for finished runs of another config before anything is written)."""
    from moebench.plan import run_specs

    return run_specs(with_seeds(plan, seeds_for(plan.suite.train.seeds, d.max_seeds)))


def round_estimate_s(outcomes, new_runs: int, jobs) -> float:
    """Wall seconds the next round's new runs should take: the finished runs' mean wall time, --jobs at once."""
    walls = [float(o.summary["wall_time_s"]) for o in outcomes
             if o.status in ("ok", "skipped") and isinstance(o.summary.get("wall_time_s"), (int, float))]
    if not walls or not new_runs:
        return 0.0
    at_once = min(new_runs, jobs if isinstance(jobs, int) else 1)
    return math.ceil(new_runs / at_once) * sum(walls) / len(walls)


def judge(results_dir: Path, seeds: list[int]):
    """The claims' verdicts on these seeds' runs only: a look judges the data it is planned for, also when the
    folder holds later seeds from an earlier invocation."""
    from moebench.analysis.claims import judge_all
    from moebench.analysis.resultset import load_results
    from moebench.config.claims import parse_claims
    from moebench.config.sweep import claim_names

    rs = load_results(results_dir, set(seeds))
    names, sizes = rs.suite.get("variants"), (rs.suite.get("sweep") or {}).get("sizes")
    return judge_all(parse_claims(rs.suite.get("claims") or [],
                                  claim_names(names, sizes) if isinstance(names, dict) else None), rs)


def train_until_decided(plan, args, log, data, d: S.Design, train) -> tuple[list, object, S.Record]:
    """Rounds of `train(plan, args, log, data)` (commands.train_runs) with a look after each; the outcomes of every
    run, the plan of the last round (its seeds) and the record written to results/<suite>/sequential.json."""
    from moebench.runs.runner import prepare_suite_dir

    suite_dir = Path(args.results) / plan.suite.name
    budget = parse_duration(args.budget) if args.budget is not None else None
    t0, outcomes, states, looks = time.time(), {}, None, []
    stop = why = None
    eta = ""
    for k, n in enumerate(d.looks):
        seeds = seeds_for(plan.suite.train.seeds, n)
        # this round trains only the seeds it adds (so --force redoes each run once, not once per round)
        added = with_seeds(plan, seeds[d.looks[k - 1]:] if k else seeds)
        if k:
            from moebench.plan import run_specs

            new = sum(1 for s in run_specs(added)
                      if R.read_summary(s.run_dir(args.results))[0] is None)
            need = round_estimate_s(list(outcomes.values()), new, args.jobs)
            left = budget - (time.time() - t0) if budget is not None else math.inf
            if need > left:
                stop, why = S.BUDGET, (f"budget: round {k + 1} ({new} new runs, about {need:.0f} s) would not finish "
                                       f"in the {max(left, 0):.0f} s left of {budget:.0f} s")
                break
            eta = f"; {new} new runs, about {need:.0f} s" + (f" of the {left:.0f} s left" if budget else "")
        log(f"--until-decided: round {k + 1} of at most {len(d.looks)}: {n} seeds per variant "
            f"({', '.join(map(str, seeds))}{eta})")
        for o in train(added, args, log, data):
            outcomes[(o.spec.key, o.spec.seed)] = o
        prepare_suite_dir(with_seeds(plan, seeds), args.results)  # suite.yaml: every seed this look judges
        states = S.decide(judge(suite_dir, seeds), k, d, states)
        looks.append(S.Look(k + 1, n, d.nominal(k), d.spent(k), tuple(states.values())))
        for s in states.values():
            log(f"  round {k + 1}: {s.name}: {s.state} ({s.why})")
        stop = S.stop_reason(states, k, d)
        if stop:
            why = {S.DECIDED: "every claim decided", S.GATE: "no claim left that more seeds could decide (a gate "
                   "holds at least one)", S.MAX_SEEDS: f"max seeds ({d.max_seeds} per variant) reached"}[stop]
            break
    last = looks[-1] if looks else None
    final_plan = with_seeds(plan, seeds_for(plan.suite.train.seeds, last.seeds if last else d.looks[0]))
    rec = S.Record(d.looks, d.alpha, tuple(looks), tuple(states.values()) if states else (),
                   tuple(final_plan.suite.train.seeds), stop or S.BUDGET, why or "budget", budget,
                   round(time.time() - t0, 1))
    prepare_suite_dir(final_plan, args.results)  # suite.yaml: the seeds the last look judged
    R.atomic_write_json(suite_dir / S.RECORD, rec.to_dict())
    log(rec.summary())
    return list(outcomes.values()), final_plan, rec
