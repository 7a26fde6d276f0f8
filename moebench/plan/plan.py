"""Suite -> plan: model configs with solved `auto` widths, params and FLOPs per variant, matching ratios,
and the RunSpecs (one per variant and seed) that training consumes."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from moebench.errors import SuiteValidationError
from moebench.io import run_key
from moebench.plan.flops import Counts, count
from moebench.models.spec import ModelConfig, MoEConfig
from moebench.config.schema import VariantSpec
from moebench.config.suite import Suite

METRIC_OF = {  # what a variant can be matched on, as a function of its model config
    "train_flops": lambda cfg: count(cfg).train_flops_per_token,
    "params_active": lambda cfg: count(cfg).params_active,
    "params_total": lambda cfg: count(cfg).params_total,
}


@dataclass(frozen=True)
class PlanRow:
    name: str
    kind: str
    params_total: int
    params_active: int
    params_embedding: int
    train_flops_per_token: float
    forward_flops_per_token: float
    matched_to: str | None
    match_on: str | None
    flop_ratio: float | None  # train FLOPs per token / the baseline's
    match_ratio: float | None  # the matched quantity / the baseline's
    d_ff: int
    expert_d_ff: int | None
    solved: dict = field(default_factory=dict)  # widths solved from `auto`
    expert_flops_padded: float = 0.0  # forward expert FLOPs per token with capacity padding
    calibration: dict | None = None  # match by step_time: the measured step times behind the match
    size: str | None = None  # a sweep's size (plan/sweep.py); None in a suite without a sweep
    steps: int | None = None  # a sweep size's training steps; None: the suite's train.steps / tokens

    @property
    def key(self) -> str:
        return run_key(self.name, self.size)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    suite: Suite
    vocab_size: int
    rows: list[PlanRow]  # one per variant; in a sweep one per (size, variant), size by size
    configs: dict[str, ModelConfig]  # by PlanRow.key


def model_config(v: VariantSpec, vocab_size: int, seq_len: int, d_ff: int, expert_d_ff: int | None) -> ModelConfig:
    moe = None
    if v.kind == "moe":
        cf = None if v.capacity_factor == "dropless" else float(v.capacity_factor)
        moe = MoEConfig(
            num_experts=v.num_experts, top_k=v.top_k, expert_d_ff=expert_d_ff, router=v.router,
            renormalize=v.renormalize, noise_std=v.noise_std, shared_experts=v.shared_experts, capacity_factor=cf,
            lb_coef=v.lb_coef, z_coef=v.z_coef, router_fp32=v.router_fp32, router_init_scale=v.router_init_scale,
            moe_every=v.moe_every, n_dense_layers=v.n_dense_layers, dead_threshold=v.dead_threshold,
            expert_choice_group=v.expert_choice_group, score=v.score, bias_update_rate=v.bias_update_rate,
            lb_scope=v.lb_scope, null_experts=v.null_experts,
        )
    return ModelConfig(
        vocab_size=vocab_size, seq_len=seq_len, d_model=v.d_model, n_layers=v.n_layers, n_heads=v.n_heads,
        d_ff=d_ff, n_kv_heads=v.n_kv_heads, activation=v.activation, pos=v.pos, norm=v.norm,
        tie_embeddings=v.tie_embeddings, dropout=v.dropout, moe=moe,
    )


def solve_width(make, metric, target: float, multiple: int, what: str,
                probes: tuple[int, int] | None = None) -> tuple[int | None, str | None]:
    """The metric is affine in the width: probe two widths, solve, round to `multiple`, keep the closer."""
    p0, p1 = probes or (multiple, 2 * multiple)
    a, b = metric(make(p0)), metric(make(p1))
    slope = (b - a) / (p1 - p0)
    if slope <= 0:
        return None, f"{what}: the matched quantity does not grow with this width (measured {a:.4g} at {p0}, " \
                     f"{b:.4g} at {p1})"
    exact = p0 + (target - a) / slope
    if exact < multiple * 0.5:
        closest = metric(make(multiple))
        return None, (f"{what}: impossible to match: even the smallest width ({multiple}) gives "
                      f"{closest:.4g} > target {target:.4g} (ratio {closest / target:.3f})")
    lo = max(multiple, math.floor(exact / multiple) * multiple)
    return min((lo, lo + multiple), key=lambda w: abs(metric(make(w)) - target)), None


def make_plan(suite: Suite, vocab_size: int) -> Plan:
    seq_len, mult = suite.corpus.seq_len, suite.match.multiple_of
    metric_of = dict(METRIC_OF)
    timer = None
    if any(v.match_on == "step_time" for v in suite.variants.values()):
        timer = step_timer(suite)
        metric_of["step_time"] = timer
    problems: list[str] = []
    configs: dict[str, ModelConfig] = {}
    counts: dict[str, Counts] = {}
    solved: dict[str, dict] = {}
    order = match_order(suite.variants)
    for name in order:
        v = suite.variants[name]
        d_ff = v.d_ff if isinstance(v.d_ff, int) else 4 * v.d_model
        e_ff = v.expert_d_ff if isinstance(v.expert_d_ff, int) else None
        solved[name] = {}
        if v.d_ff == "auto" or v.expert_d_ff == "auto":
            field_name = "expert_d_ff" if v.expert_d_ff == "auto" else "d_ff"
            target = metric_of[v.match_on](configs[v.matched_to])

            def make(w, field_name=field_name, v=v, d_ff=d_ff, e_ff=e_ff):
                if field_name == "d_ff":
                    return model_config(v, vocab_size, seq_len, w, e_ff)
                return model_config(v, vocab_size, seq_len, d_ff, w)

            what = f"variants.{name}.{field_name}"
            probes = None
            if v.match_on == "step_time":
                # timing noise swamps tiny widths: probe around the FLOP-matched width instead
                w_flops, err = solve_width(make, METRIC_OF["train_flops"], METRIC_OF["train_flops"](
                    configs[v.matched_to]), mult, what)
                w_flops = w_flops or 4 * mult
                probes = (max(mult, w_flops // 2 // mult * mult), 2 * w_flops)
            w, err = solve_width(make, metric_of[v.match_on], target, mult, what, probes)
            if err:
                problems.append(err)
                continue
            solved[name][field_name] = w
            d_ff, e_ff = (w, e_ff) if field_name == "d_ff" else (d_ff, w)
        configs[name] = model_config(v, vocab_size, seq_len, d_ff, e_ff)
        counts[name] = count(configs[name])
    if problems:
        raise SuiteValidationError(problems)
    rows = []
    for name, v in suite.variants.items():
        c, cfg = counts[name], configs[name]
        base = counts.get(v.matched_to) if v.matched_to else None
        flop_ratio = c.train_flops_per_token / base.train_flops_per_token if base else None
        on = v.match_on if v.matched_to else None
        match_ratio = metric_of[on](cfg) / metric_of[on](configs[v.matched_to]) if base and on != "none" else None
        rows.append(PlanRow(
            name, v.kind, c.params_total, c.params_active, c.params_embedding, c.train_flops_per_token,
            c.forward_flops_per_token, v.matched_to, on, flop_ratio, match_ratio, cfg.d_ff,
            cfg.moe.expert_d_ff if cfg.moe else None, solved[name], c.terms["expert_padded"],
            calibration_of(timer, cfg, configs[v.matched_to]) if on == "step_time" else None,
        ))
        if match_ratio is not None and abs(match_ratio - 1) > suite.match.tolerance and suite.match.strict:
            problems.append(
                f"variants.{name}: {on} is {match_ratio:.3f}x its baseline {v.matched_to!r}, outside the "
                f"tolerance of +-{suite.match.tolerance:g} (use a width of auto, change the width, or set "
                f"match.strict: false)")
    if problems:
        raise SuiteValidationError(problems)
    return Plan(suite, vocab_size, rows, configs)


def match_order(variants: dict) -> list[str]:
    """Variants in an order where each comes after the variant it is matched to (a topological sort:
    validation has already rejected unknown targets and auto widths matched to auto widths)."""
    order: list[str] = []

    def visit(name: str, stack: tuple = ()) -> None:
        target = variants[name].matched_to
        if name in order or name in stack:
            return
        if target is not None and target in variants:
            visit(target, stack + (name,))
        order.append(name)

    for name in variants:
        visit(name)
    return order


def calibration_of(timer, cfg: ModelConfig, baseline: ModelConfig) -> dict:
    """The measured step times behind a step_time match (part of the run's record in plan.json)."""
    return {"step_time_s": timer(cfg), "baseline_step_time_s": timer(baseline), "device": str(timer.device),
            "batch_size": timer.batch_size, "probes": timer.record()}


def step_timer(suite: Suite):
    from moebench.models.backends import resolve_backend, resolve_device
    from moebench.plan.calibrate import StepTimer

    device = resolve_device(suite.train.device)
    return StepTimer(suite.train.batch_size, device, resolve_backend(suite.train.moe_backend, device))
