"""Deciding claims while seeds are added (`moebench run SUITE --until-decided`): a group-sequential design.

Looking at a claim after every round of seeds and stopping at the first PASS is optional stopping: at 2.5% per
look, five looks PASS a null claim about 7% of the time instead of 2.5%. The rule here keeps false PASS at the
one-sided `alpha` (2.5%, what a fixed-size 95% interval's low end has) over every look it makes:

- The looks are planned before any data: round 1 has the suite's seeds (at least 2 per variant), each later round
  adds `step` seeds, up to `max_seeds`. Look k's information fraction is t_k = n_k / max_seeds.
- Lan-DeMets alpha spending with the O'Brien-Fleming-type function alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt t):
  look k may spend alpha(t_k) - alpha(t_{k-1}). Its z boundary c_k solves P(no crossing before k, Z_k >= c_k) =
  that increment for the canonical joint normal (Z_k = B(t_k) / sqrt t_k, B a Brownian motion), computed by
  numerical integration (Armitage, McPherson and Rowe 1969). Look k PASSes a claim whose one-sided p-value is at
  most its nominal level 1 - Phi(c_k).
- Stopping early (budget, every claim decided) spends less than alpha: conservative. The levels are tiny early
  (5e-7 at 2 of 10 seeds) and near alpha at the end (0.021 at 10 of 10); with the default rounds (2, 4, ..., 10
  seeds) they sum to 3.6%, so by Bonferroni over the looks false PASS stays under 5% whatever the correlation
  between looks (t statistics with few seeds are not exactly the normal ones), and near 2.5% where it is the
  normal one (tests/analysis/test_sequential.py simulates the peeking itself).
- FAIL (the judge's interval wholly on the wrong side) may stop a claim at any look: stopping for futility can
  only lower the chance of a PASS. A claim a gate holds (failed runs, too few tokens, repeated data, identical
  seeds) is not undecided for lack of seeds: more seeds do not lift a gate, so it stops there. Mechanistic kinds
  (load balance, FLOP accounting, ratios) are decided by their own judge at any look; more seeds never decide them.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, special

from moebench.errors import UserError
from moebench.io import read_json

from .claims import ALPHA_ONE_SIDED, FAIL, FAMILY, INCONCLUSIVE, PASS, Verdict

RECORD = "sequential.json"  # in results/<suite>/: what `run --until-decided` did, read by `report`
CONTINUE, STOPPED = "continue", "stopped"  # a claim's state besides PASS / FAIL
# stop reasons of the whole run
DECIDED, BUDGET, MAX_SEEDS, GATE = "decided", "budget", "max_seeds", "gate"
# claims outside the family with an interval rule of their own (two one-sided tests): not sequentially controlled,
# so they never drive more rounds; their judge decides them once, on the final data
FIXED_LEVEL = ("loss_equivalent",)


def _phi(x):
    return 0.5 * special.erfc(-np.asarray(x) / math.sqrt(2))


def obf_spent(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type alpha spent by information fraction t (one-sided)."""
    if t <= 0:
        return 0.0
    z = float(special.ndtri(1 - alpha / 2))
    return float(2 - 2 * _phi(z / math.sqrt(min(t, 1.0))))


@functools.lru_cache(maxsize=64)
def boundaries(fractions: tuple[float, ...], alpha: float = ALPHA_ONE_SIDED, grid: float = 0.01) -> tuple[float, ...]:
    """z boundaries c_1..c_K of the spending design at these information fractions (increasing, last <= 1).

    The sub-density of the score S_k = sqrt(t_k) Z_k over the paths that crossed no boundary yet is carried on a
    grid from look to look (independent normal increments of variance t_k - t_{k-1}); each c_k is the root that
    makes the crossing probability at look k equal that look's share of alpha."""
    if not fractions or any(b <= a for a, b in zip(fractions, fractions[1:])) or fractions[0] <= 0:
        raise ValueError(f"information fractions must increase from above 0: {fractions}")
    out, prev_t, prev_spent = [], 0.0, 0.0
    s = dens = None
    for t in fractions:
        spend = obf_spent(t, alpha) - prev_spent
        if s is None:  # look 1: Z_1 is standard normal
            c = float(-special.ndtri(spend)) if spend > 0 else math.inf
            s = np.arange(-8 * math.sqrt(t), c * math.sqrt(t), grid)
            dens = np.exp(-s ** 2 / (2 * t)) / math.sqrt(2 * math.pi * t)
        else:
            sd = math.sqrt(t - prev_t)
            w = dens * grid  # probability mass per grid point (rectangle rule on a fine grid)

            def cross(c, w=w, s=s, sd=sd, t=t):
                return float(np.sum(w * _phi((s - c * math.sqrt(t)) / sd))) - spend

            c = float(optimize.brentq(cross, -10, 40, xtol=1e-10)) if spend > 1e-15 else math.inf
            hi = min(c, 40.0) * math.sqrt(t)
            new_s = np.arange(min(-8 * math.sqrt(t), hi - grid), hi, grid)
            kern = np.exp(-(new_s[:, None] - s[None, :]) ** 2 / (2 * sd ** 2)) / (sd * math.sqrt(2 * math.pi))
            s, dens = new_s, kern @ w
        out.append(c)
        prev_t, prev_spent = t, obf_spent(t, alpha)
    return tuple(out)


@dataclass(frozen=True)
class Design:
    """The planned looks: seeds per variant at each look, and the one-sided alpha spent over all of them."""
    looks: tuple[int, ...]
    alpha: float = ALPHA_ONE_SIDED

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]

    def fractions(self) -> tuple[float, ...]:
        return tuple(n / self.max_seeds for n in self.looks)

    def nominal(self, k: int) -> float:
        """One-sided p-value level of look k (0-based)."""
        return float(1 - _phi(boundaries(self.fractions(), self.alpha)[k]))

    def spent(self, k: int) -> float:
        return obf_spent(self.fractions()[k], self.alpha)


def design(first: int, step: int, max_seeds: int, alpha: float = ALPHA_ONE_SIDED) -> Design:
    """Looks at `first`, first + step, ... seeds per variant, the last at max_seeds."""
    if first < 1 or step < 1 or max_seeds < first:
        raise ValueError(f"no design with first={first}, step={step}, max_seeds={max_seeds}")
    looks = list(range(first, max_seeds, step)) + [max_seeds]
    return Design(tuple(looks), alpha)


@dataclass(frozen=True)
class ClaimState:
    name: str
    kind: str
    state: str  # PASS | FAIL | continue | stopped
    why: str
    p: float | None = None  # the p-value compared with the look's level (Holm-adjusted where the report adjusts)
    level: float | None = None
    round: int = 0  # the look (1-based) that set this state

    @property
    def open(self) -> bool:
        return self.state == CONTINUE


def _gated(v: Verdict) -> bool:
    return "ungated_verdict" in v.numbers  # claims/base.py verdict(): a gate overrode the numbers


def claim_state(v: Verdict, k: int, d: Design) -> ClaimState:
    """One verdict at look k (0-based) of design d."""
    level, rnd = d.nominal(k), k + 1
    if _gated(v):
        gate = v.reason.split(" (numbers")[0]  # claims/base.py: "<gates> (numbers alone: ...)"
        return ClaimState(v.name, v.kind, STOPPED, f"gate (more seeds do not lift it): {gate}", round=rnd)
    if v.kind in FIXED_LEVEL:
        return ClaimState(v.name, v.kind, STOPPED, "not sequentially controlled: judged on the final data at its "
                          "own fixed level", round=rnd)
    if v.kind not in FAMILY:
        if v.verdict in (PASS, FAIL):
            return ClaimState(v.name, v.kind, v.verdict, "decided by its judge (no seed statistic)", round=rnd)
        return ClaimState(v.name, v.kind, STOPPED, "a per-seed rule more seeds cannot decide", round=rnd)
    raw = v.numbers.get("verdict_before_holm", v.verdict)
    p = v.numbers.get("p_holm", v.numbers.get("p_one_sided"))
    p = float(p) if isinstance(p, (int, float)) and p == p else None
    if raw == FAIL:
        return ClaimState(v.name, v.kind, FAIL, "its interval lies on the wrong side (futility stop)", p, level, rnd)
    if raw == PASS and p is not None and p <= level:
        return ClaimState(v.name, v.kind, PASS, f"p={p:.3g} <= this look's boundary {level:.3g}", p, level, rnd)
    if p is None:
        return ClaimState(v.name, v.kind, CONTINUE, "no p-value yet", None, level, rnd)
    return ClaimState(v.name, v.kind, CONTINUE, f"p={p:.3g} > this look's boundary {level:.3g}", p, level, rnd)


def decide(verdicts: list[Verdict], k: int, d: Design, before: dict[str, ClaimState] | None = None
           ) -> dict[str, ClaimState]:
    """Every claim's state after look k; a claim decided or stopped at an earlier look keeps that state."""
    before = before or {}
    return {v.name: before[v.name] if v.name in before and not before[v.name].open else claim_state(v, k, d)
            for v in verdicts}


def stop_reason(states: dict[str, ClaimState], k: int, d: Design) -> str | None:
    """Why the rounds stop after look k, or None to go on (the budget is the caller's)."""
    if not any(s.open for s in states.values()):
        return GATE if any(s.why.startswith("gate") for s in states.values()) else DECIDED
    return MAX_SEEDS if k + 1 >= len(d.looks) else None


@dataclass(frozen=True)
class Look:
    round: int
    seeds: int  # per variant
    nominal_p: float
    alpha_spent: float
    states: tuple[ClaimState, ...]


@dataclass(frozen=True)
class Record:
    """results/<suite>/sequential.json: the design, every look made, the final states and why it stopped."""
    looks_planned: tuple[int, ...]
    alpha: float
    looks: tuple[Look, ...]
    final: tuple[ClaimState, ...]
    seeds: tuple[int, ...]  # the seeds of the last look, every variant
    stop: str
    stop_why: str
    budget_s: float | None = None
    elapsed_s: float = 0.0
    method: str = "group-sequential, Lan-DeMets O'Brien-Fleming-type alpha spending, information = seeds / max"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        states = lambda xs: tuple(ClaimState(**x) for x in xs)  # noqa: E731
        return cls(tuple(d["looks_planned"]), float(d["alpha"]),
                   tuple(Look(**{**x, "states": states(x["states"])}) for x in d["looks"]), states(d["final"]),
                   tuple(d["seeds"]), d["stop"], d["stop_why"], d.get("budget_s"), float(d.get("elapsed_s", 0)),
                   d.get("method", cls.method))

    def summary(self) -> str:
        last = self.looks[-1] if self.looks else None
        return (f"--until-decided: {len(self.looks)} round(s), {last.seeds if last else 0} seeds per variant "
                f"(seeds {', '.join(map(str, self.seeds))}); stopped: {self.stop_why}")


def read_record(results_dir: Path) -> Record | None:
    """The run's sequential record, or None when it was not run --until-decided."""
    path = Path(results_dir) / RECORD
    if not path.exists():
        return None
    try:
        return Record.from_dict(read_json(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: unreadable ({type(e).__name__}); rerun `moebench run --until-decided` to rewrite "
                        "it, or delete it to judge at the fixed level") from None


def stale(rec: Record, seeds_by_variant: dict[str, set[int]]) -> str:
    """Why the record no longer describes the runs ("" when it does): its last look used rec.seeds of every
    variant, and a later plain `run` (more seeds, or one variant retrained) left other seeds in the folder."""
    want = set(rec.seeds)
    for v, have in sorted(seeds_by_variant.items()):
        if have != want:
            return (f"{RECORD} not applied: its last look used seeds {', '.join(map(str, sorted(want)))} of every "
                    f"variant, the folder holds seeds {', '.join(map(str, sorted(have)))} of {v} (runs trained after "
                    "the rounds); the verdicts are judged at the fixed level")
    return ""


def apply(verdicts: list[Verdict], rec: Record) -> list[Verdict]:
    """The report's verdicts under the sequential rule: a statistical claim PASSes only where a look's boundary
    was crossed (the final PASS uses the alpha spent, not the fixed 2.5%); a claim decided at an earlier look keeps
    that decision. Mechanistic claims keep their judge's verdict."""
    final = {s.name: s for s in rec.final}
    for v in verdicts:
        s = final.get(v.name)
        if s is None or v.kind not in FAMILY:
            continue
        v.numbers["sequential"] = {"state": s.state, "round": s.round, "p": s.p, "level": s.level,
                                   "rounds": len(rec.looks)}
        if s.state in (PASS, FAIL):
            if v.verdict != s.state:
                v.numbers["verdict_on_all_seeds"] = v.verdict
            v.verdict = s.state
            v.reason += f"; sequential: {s.state} at round {s.round} of {len(rec.looks)} ({s.why})"
        elif v.verdict == PASS:
            v.numbers["verdict_before_sequential"] = PASS
            v.verdict = INCONCLUSIVE
            v.reason += f"; sequential: not PASS after {len(rec.looks)} round(s) ({s.why})"
        else:
            v.reason += f"; sequential: undecided after {len(rec.looks)} round(s) ({s.why})"
    return verdicts
