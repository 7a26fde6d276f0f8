"""Facts a reader needs to weigh a verdict, taken from the plan, the resolved suite and the runs rather than from
hand-written descriptions: what each variant is (MoE blocks, experts, parameters, data seen) and the noise floor
(seed-to-seed spread) that every quality claim's effect is measured against."""
from __future__ import annotations

from moebench.analysis import stats
from moebench.models.spec import ModelConfig, MoEConfig

from .tables import Table, fmt, si

QUALITY_KINDS = ("loss_better", "speedup_to_loss", "monotonic")


def moe_blocks(v: dict) -> str:
    """Which blocks (0-based) hold experts, by the model's own rule (ModelConfig.is_moe_layer)."""
    n = v.get("n_layers")
    if not v.get("num_experts") or not isinstance(n, int):
        return "none (dense)" if isinstance(n, int) else "n/a"
    moe = MoEConfig(num_experts=v["num_experts"], top_k=v.get("top_k", 1), expert_d_ff=0,
                    moe_every=v.get("moe_every", 1), n_dense_layers=v.get("n_dense_layers", 0))
    cfg = ModelConfig(vocab_size=1, seq_len=1, d_model=1, n_layers=n, n_heads=1, d_ff=1, moe=moe)
    blocks = [i for i in range(n) if cfg.is_moe_layer(i)]
    every = "all" if len(blocks) == n else ", ".join(map(str, blocks))
    return f"{every} of {n}; {v['num_experts']} experts, top-{v.get('top_k', 1)}" + (
        f" + {v['shared_experts']} shared" if v.get("shared_experts") else "")


def ffn_width(p: dict) -> str:
    """The FFN width the variant trained with (the plan's, so an `auto` in the suite shows its solved value)."""
    solved = p.get("solved") or {}
    if p.get("expert_d_ff") is not None:
        return f"expert_d_ff {p['expert_d_ff']}" + (" (solved)" if "expert_d_ff" in solved else "")
    if p.get("d_ff") is not None:
        return f"d_ff {p['d_ff']}" + (" (solved)" if "d_ff" in solved else "")
    return "n/a"


def facts_table(rs) -> Table:
    variants = rs.suite.get("variants") if isinstance(rs.suite.get("variants"), dict) else {}
    plan = {r["name"]: r for r in rs.plan or [] if isinstance(r, dict) and isinstance(r.get("name"), str)}
    rows = []
    for v in rs.variants:
        med = lambda c: stats.median(rs.seed_values(v, c))  # noqa: E731
        p = plan.get(v, {})
        total = p.get("params_total", med("params_total"))
        active = p.get("params_active", med("params_active"))
        unique = med("unique_train_tokens")
        rows.append([v, moe_blocks(variants.get(v) or {}), ffn_width(p), si(total), si(active),
                     fmt(med("tokens_per_param"), 3), fmt(med("epochs"), 3), si(unique)])
    return ["variant", "MoE blocks (0-based)", "FFN width", "params total", "params active",
            "training tokens / total param", "epochs (passes over the corpus)", "unique training tokens"], rows


def noise_table(rs) -> Table:
    """Seed-to-seed spread of each variant's final val loss: the noise floor."""
    rows = []
    for v in rs.variants:
        xs = rs.seed_values(v, "val_loss")
        rows.append([v, str(len(xs)), fmt(stats.mean(xs), 4), fmt(stats.sd(xs), 3)])
    return ["variant", "finished seeds", "final val loss (mean)", "seed-to-seed sd (noise floor)"], rows


def effects_table(verdicts) -> Table | None:
    """Each quality claim's effect in units of its baseline's seed sd, and what the suite could have detected."""
    rows = []
    for v in verdicts:
        n = v.numbers
        if v.kind not in QUALITY_KINDS or "noise_floor_sd" not in n:
            continue
        if v.kind == "speedup_to_loss":
            # the detectable speedup is simulated for INCONCLUSIVE verdicts only (claims.detectable)
            effect, detect = (f"{fmt(n.get('final_val_loss_improvement'), 3)} final val loss",
                              f"speedup {fmt(n['detectable_speedup'], 3)}x" if "detectable_speedup" in n else "-")
        elif v.kind == "loss_better":
            effect, detect = fmt(n.get("improvement"), 3), f"difference {fmt(n.get('detectable_difference'), 3)}"
        else:
            effect = f"{fmt(n.get('improvement_first_to_last'), 3)} first to last variant"
            detect = f"slope {fmt(n.get('detectable_slope'), 3)}"
        control = "-"
        if "control" in n:
            control = f"{n['control']}: {fmt(n.get('control_minus_baseline'), 3)}"
        rows.append([v.name, v.verdict, f"{fmt(n['noise_floor_sd'], 3)} ({n['noise_floor_of']})", effect,
                     fmt(n.get("effect_noise_units"), 3), detect, control])
    if not rows:
        return None
    return ["claim", "verdict", "noise floor: baseline seed sd", "effect", "effect / noise floor",
            "smallest detectable at 80% power", "control - baseline"], rows
