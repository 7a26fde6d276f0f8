"""Per claim, what deciding it would take: the noise its rule assumes, the effect it tests (the measured one), the
seeds per variant that give the rule 80% power there, and the training time that implies on the machine the
results were measured on. `plan --power` prints it before a suite is run; `report --seeds-to-decide` states it for
each undecided claim of a finished one."""
from __future__ import annotations

from dataclasses import dataclass

from . import power


@dataclass(frozen=True)
class ClaimPlan:
    claim: str
    kind: str
    noise: str  # "" where the kind has no power model or the results no noise
    effect: str  # the effect tested, in words
    seeds: int | None  # per compared variant for 80% power; None: more than max_seeds (or not computable)
    max_seeds: int
    runs: int | None  # seeds x compared variants (at max_seeds where seeds is None: a lower bound)
    compute_s: float | None  # runs x their wall per full-length run / jobs (a lower bound where seeds is None)
    note: str

    @property
    def more(self) -> str:
        """'> ' where the figures are lower bounds (no seed count up to max_seeds reaches the power)."""
        return "" if self.seeds else "> "

    def seeds_text(self, unit: str = "") -> str:
        """'12 per variant (24 runs)', or '> 64 ... (> 128 runs)' past max_seeds; `unit` follows the count."""
        return f"{self.more}{self.seeds or self.max_seeds}{unit} ({self.more}{self.runs} runs)"

    def compute_text(self) -> str:
        return "-" if self.compute_s is None else f"{self.more}{duration(self.compute_s)}"


def run_keys(rs, variant: str) -> list[str]:
    """The runs one seed of `variant` trains: itself, or in a sweep one variant@size per size."""
    return [variant] if variant in rs.variants else [k for k in rs.variants if k.startswith(f"{variant}@")] or [variant]


def wall_per_run(rs, variants: list[str], steps: int | None = None) -> float | None:
    """Sum over the variants (a sweep's at every size) of the mean wall of one run: as measured, or (a truncated
    pilot) measured wall per step x `steps`."""
    total = 0.0
    for key in (k for v in variants for k in run_keys(rs, v)):
        walls, done = rs.seed_values(key, "wall_time_s"), rs.seed_values(key, "steps")
        per_run = [w * (steps / s if steps else 1.0) for w, s in zip(walls, done) if s and w == w]
        if not per_run:
            return None
        total += sum(per_run) / len(per_run)
    return total


def effect_words(model, c) -> tuple[str, str]:
    """The effect tested in words, and a note when the measured effect is no better than the claim's null."""
    t = model.tested
    if c.kind == "speedup_to_loss":
        note = "" if t > c.min else f"the measured speedup does not exceed the bar {c.min:g}x"
        return f"speedup {t:.3g}x on {c.axis} (measured; the bar is {c.min:g}x)", note
    if c.kind == "loss_better":
        note = "" if t > c.margin else f"the measured improvement does not exceed the margin {c.margin:g}"
        return f"improvement {t:.3g} in {c.metric} (measured; margin {c.margin:g})", note
    if c.kind == "monotonic":
        per = "log2(x)" if c.x else "variant index"
        note = "" if t > 0 else f"the measured slope is not {c.direction}"
        return f"slope {t:.3g} per {per}, {c.direction} (measured)", note
    if c.kind == "compute_multiplier":
        note = "" if t > c.min else f"the measured multiplier does not exceed the bar {c.min:g}x"
        return f"multiplier {t:.3g}x (measured; the bar is {c.min:g}x)", note
    return f"margin +-{t:.3g} (the claim's), true difference 0", ""


def claim_plans(claims, rs, jobs: int = 1, max_seeds: int = power.MAX_SEEDS,
                steps: int | None = None) -> list[ClaimPlan]:
    """One ClaimPlan per claim; `steps` scales a truncated pilot's walls to the suite's run length."""
    out = []
    for c in claims:
        model = power.claim_power(c, rs) if c.kind in power.POWER_MODELS else None
        if model is None:
            why = ("no power model for this kind" if c.kind not in power.POWER_MODELS
                   else "the results give no seed noise for it")
            out.append(ClaimPlan(c.label(), c.kind, "", "", None, max_seeds, None, None, why))
            continue
        effect, note = effect_words(model, c)
        seeds = model.seeds_for_power(model.tested, max_seeds=max_seeds) if not note else None
        variants = c.compared()
        wall = wall_per_run(rs, variants, steps)
        runs = (seeds or max_seeds) * sum(len(run_keys(rs, v)) for v in variants)
        compute = (seeds or max_seeds) * wall / jobs if wall is not None else None
        noise = f"{model.noise()}; from {'+'.join(map(str, model.n_now))} seeds"
        tau = float(getattr(getattr(model, "design", None), "tau", 0.0) or 0.0)
        if note:
            note = f"{note}: no number of seeds gives its rule 80% power to PASS"
        elif seeds is None and tau > 0:  # seeds shrink the seed errors, not the cells' misfit
            note = (f"the cells deviate from the law by sd {tau:.3g} beyond seed error, a floor under the interval "
                    "that more seeds do not lower: more or other sizes, not seeds, would decide it")
        out.append(ClaimPlan(c.label(), c.kind, noise, effect, seeds, max_seeds, runs, compute, note))
    return out


def duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"
