"""The plan of a sweep: each size planned as a suite of its own (so `auto` widths are re-solved and the FLOP match
checked at every size), its rows tagged with the size and the size's training steps.

Token budget of a size: `steps`, or `tokens_per_param` x the baseline's total parameters at that size, the same
for every variant there (FLOP-matched variants then spend equal training compute at each size, so loss against
compute compares like with like); with neither, the suite's train.steps / train.tokens.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from moebench.config.suite import Suite
from moebench.errors import SuiteValidationError

from .plan import Plan, make_plan


def size_steps(suite: Suite, size: str, plan: Plan) -> int:
    """Training steps of one size (see the module docstring); at least one."""
    spec, sub = suite.sweep.sizes[size], suite.sizes[size]
    tpp = spec.tokens_per_param if spec.steps is None else None
    tpp = tpp or (suite.sweep.tokens_per_param if spec.steps is None else None)
    per_step = sub.train.batch_size * sub.corpus.seq_len
    if tpp is not None:
        base = next(r for r in plan.rows if r.name == sub.baseline)
        return max(1, round(tpp * base.params_total / per_step))
    return sub.train.steps or max(1, sub.train.tokens // per_step)


def make_sweep_plan(suite: Suite, vocab_size: int) -> Plan:
    rows, configs, problems = [], {}, []
    for size, sub in suite.sizes.items():
        try:
            plan = make_plan(sub, vocab_size)
        except SuiteValidationError as err:
            problems += [f"sweep.sizes.{size}: {m}" for m in err.problems]
            continue
        steps = size_steps(suite, size, plan)
        if sub.train.warmup_for(steps) >= steps:
            problems.append(f"sweep.sizes.{size}: train.warmup_steps ({sub.train.warmup_steps}) must be < this "
                            f"size's {steps} steps")
        for r in plan.rows:
            row = replace(r, size=size, steps=steps)
            rows.append(row)
            configs[row.key] = plan.configs[r.name]
    if problems:
        raise SuiteValidationError(problems)
    return Plan(suite, vocab_size, rows, configs)


def plan_suite(suite: Suite, memory_check: Callable[[dict], None] | None = None) -> Plan:
    """The plan of a validated suite (every size of a sweep), with the corpus tokenizer's vocabulary size.
    `memory_check` (plan/memory.py MemoryCheck) sees the configs twice: with `auto` widths at their smallest
    before the widths are solved (so an absurd size is refused at once), and as planned."""
    from moebench.data import vocab_size
    from moebench.plan.memory import lower_bound_configs

    vocab = vocab_size(suite.corpus.name, suite.corpus.tokenizer)
    if memory_check is not None:
        memory_check(lower_bound_configs(suite, vocab))
    plan = make_sweep_plan(suite, vocab) if suite.sweep is not None else make_plan(suite, vocab)
    if memory_check is not None:
        memory_check(plan.configs)
    return plan
