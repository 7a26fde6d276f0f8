"""Load a suite file: YAML -> --set overrides -> schema -> inheritance -> semantic checks -> Suite.

Every problem is collected and reported at once, each prefixed with its dotted path, before any training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moebench.errors import SuiteValidationError, UserError, did_you_mean

from .claims import validate_claims
from .load import apply_overrides, apply_preset, read_yaml
from .problems import validate_model
from .sweep import build_sizes, claim_names
from .schema import (INT_LIMIT, MOE_FIELDS, NAME, BaseSpec, EvalSpec, MatchSpec, ReportSpec, SuiteSpec, SweepSpec, TrainSpec,
                     VariantSpec)


# `arch:` shorthands: the fields that make a variant the transformers architecture of that name, so it exports
# exactly (moebench.evals.export). Llama: RMSNorm, SwiGLU, RoPE. Mixtral adds softmax top-k routing with the k
# gates renormalised, no capacity limit, every block MoE, no shared expert; top_k defaults to Mixtral's 2 and
# must be >= 2 (moebench keeps a single gate's raw probability so the router gets a gradient; Mixtral makes it 1).
_LLAMA = {"norm": "rmsnorm", "activation": "swiglu", "pos": "rope"}
ARCHS = {
    "llama": _LLAMA,
    "mixtral": {**_LLAMA, "router": "topk", "renormalize": True, "capacity_factor": "dropless", "shared_experts": 0,
                "moe_every": 1, "n_dense_layers": 0},
}
ARCH_DEFAULTS = {"mixtral": {"top_k": 2}}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    corpus: Any
    variants: dict[str, VariantSpec]  # resolved: base + extends chain + own fields, kind filled in
    train: TrainSpec
    eval: EvalSpec
    match: MatchSpec
    claims: list  # validated claim specs (moebench.config.claims)
    report: ReportSpec
    inference: Any  # InferenceSpec | None
    raw: dict = field(repr=False)  # the resolved suite as plain data (written to results/<suite>/suite.yaml)
    path: Path | None = None
    track: tuple[str, ...] = ()  # experiment trackers (moebench.training.trackers)
    sweep: SweepSpec | None = None
    sizes: dict[str, "Suite"] = field(default_factory=dict)  # a sweep's sizes, each a resolved suite of its own

    @property
    def baseline(self) -> str:
        return self.match.baseline or next(n for n, v in self.variants.items() if v.kind == "dense")


# ---------------------------------------------------------------- variants: inheritance and semantics

def resolve_variant_dicts(base: dict, variants: dict, problems: list[str]) -> dict[str, dict]:
    """Merge base <- parent chain (`extends:`) <- own fields. Returns name -> merged dict."""
    resolved: dict[str, dict] = {}

    def resolve(name: str, stack: tuple) -> dict | None:
        if name in resolved:
            return resolved[name]
        own = variants[name] if isinstance(variants[name], dict) else {}
        parent = own.get("extends")
        merged = dict(base)
        if parent is not None:
            if not isinstance(parent, str):
                problems.append(f"variants.{name}.extends: must be one variant's name, got a {type(parent).__name__}")
                own = {k: v for k, v in own.items() if k != "extends"}  # said once, here, not again by the schema
            elif parent not in variants:
                problems.append(f"variants.{name}.extends: no variant named {parent!r}{did_you_mean(parent, variants)}")
            elif parent in stack:
                problems.append(f"variants.{name}.extends: cycle {' -> '.join(stack + (name, parent))}")
                return None
            else:
                p = resolve(parent, stack + (name,))
                if p is None:
                    return None
                merged = {k: v for k, v in p.items() if k not in ("description",)}
        merged.update(own)
        resolved[name] = merged
        return merged

    for name, own in variants.items():
        if not NAME.match(str(name)) or name == "superseded":  # results/<suite>/superseded/: archived runs
            problems.append(f"variants: {str(name)!r} is not a variant name: letters, digits, '_' or '-', starting "
                            "with a letter or digit (not 'superseded')")
        if own is None:
            variants[name] = own = {}
        if not isinstance(own, dict):
            problems.append(f"variants.{name}: must be a mapping of fields, got {type(own).__name__}")
            continue
        resolve(name, ())
    return resolved


def check_variant(name: str, v: VariantSpec, own_keys: set, seq_len: int, problems: list[str]) -> None:
    from moebench.models.names import ACTIVATION_SHAPES as ACTIVATIONS, ROUTER_TRAITS as ROUTERS

    p = f"variants.{name}"
    if v.activation not in ACTIVATIONS:
        problems.append(f"{p}.activation: {ACTIVATIONS.unknown(v.activation)}")
    if v.d_model % v.n_heads:
        problems.append(f"{p}.n_heads: must divide d_model (got d_model {v.d_model}, n_heads {v.n_heads})")
    elif v.pos == "rope" and (v.d_model // v.n_heads) % 2:
        problems.append(f"{p}.n_heads: RoPE needs an even head dim (d_model / n_heads = {v.d_model // v.n_heads})")
    if v.n_kv_heads and v.n_heads % v.n_kv_heads:
        problems.append(f"{p}.n_kv_heads: must divide n_heads (got {v.n_kv_heads}, n_heads {v.n_heads})")
    if v.kind == "dense":
        stray = sorted(k for k in own_keys if k in MOE_FIELDS)
        for k in stray:
            problems.append(f"{p}.{k}: only valid for kind: moe (this variant is dense)")
        if v.d_ff is None:
            problems.append(f"{p}.d_ff: required for a dense variant (a number, or auto to match its baseline)")
        return
    if v.num_experts is None:
        problems.append(f"{p}.num_experts: required for kind: moe")
        return
    if v.top_k > v.num_experts:
        problems.append(f"{p}.top_k: must be <= num_experts (got {v.top_k} > {v.num_experts})")
    if v.expert_d_ff is None:
        problems.append(f"{p}.expert_d_ff: required for kind: moe (a number, or auto to match its baseline)")
    if v.router not in ROUTERS:
        problems.append(f"{p}.router: {ROUTERS.unknown(v.router)}")
    if v.n_dense_layers >= v.n_layers:
        problems.append(f"{p}.n_dense_layers: must be < n_layers (got {v.n_dense_layers} >= {v.n_layers})")
    elif (v.n_layers - v.n_dense_layers) < v.moe_every:
        problems.append(f"{p}.moe_every: no block would be MoE ({v.n_layers - v.n_dense_layers} blocks after "
                        f"the dense prefix, moe_every {v.moe_every})")
    if v.d_ff is None and (v.moe_every > 1 or v.n_dense_layers):
        problems.append(f"{p}.d_ff: required: this variant has dense blocks (moe_every {v.moe_every}, "
                        f"n_dense_layers {v.n_dense_layers})")
    if v.router in ROUTERS and not ROUTERS[v.router].scored:
        for key, off in (("score", "softmax"), ("bias_update_rate", 0.0)):
            if getattr(v, key) != off:
                problems.append(f"{p}.{key}: router {v.router} has no scores to change (use router topk, switch "
                                f"or balanced)")
    if v.null_experts and v.router not in ("topk", "switch"):
        problems.append(f"{p}.null_experts: zero-compute experts need a learned token-choice router (topk or "
                        f"switch), not {v.router}")
    if v.router in ROUTERS and not ROUTERS[v.router].token_choice and v.expert_choice_group > seq_len:
        problems.append(f"{p}.expert_choice_group: must be <= corpus.seq_len ({seq_len})")


def expand_arch(name: str, merged: dict, explicit: set, problems: list[str]) -> dict:
    """`arch: mixtral` -> the fields it stands for. A field set next to it (in the variant, or in base when base
    sets the arch) that contradicts it is a problem; values merely inherited from elsewhere are replaced."""
    arch = merged.get("arch")
    if not isinstance(arch, str) or arch not in ARCHS:
        return merged  # absent, or a bad value the schema reports
    p = f"variants.{name}"
    moe = merged.get("num_experts") is not None
    if arch == "llama" and moe:
        problems.append(f"{p}.arch: llama is dense but num_experts is set (use arch: mixtral for an MoE variant)")
    if arch == "mixtral" and not moe:
        problems.append(f"{p}.arch: mixtral needs num_experts (a dense variant: use arch: llama)")
    out = dict(merged)
    for key, value in ARCHS[arch].items():
        if key in explicit and merged.get(key) != value:
            problems.append(f"{p}.{key}: {merged.get(key)!r} contradicts arch: {arch} (which needs {value!r}; "
                            f"drop arch or this field)")
        if key not in MOE_FIELDS or moe:
            out[key] = value
    for key, value in ARCH_DEFAULTS.get(arch, {}).items():
        out.setdefault(key, value)
    if arch == "mixtral" and moe and out.get("top_k") == 1:
        problems.append(f"{p}.top_k: arch: mixtral needs top_k >= 2 (Mixtral renormalises a single gate to 1, "
                        f"moebench keeps its raw probability); use top_k: 2")
    return out


def check_matching(suite_variants: dict[str, VariantSpec], match: MatchSpec,
                   problems: list[str]) -> dict[str, VariantSpec]:
    """The variants with matched_to and match_on filled in (default: the suite's baseline and match.by)."""
    names = list(suite_variants)
    out = dict(suite_variants)
    if match.baseline is not None and match.baseline not in suite_variants:
        problems.append(f"match.baseline: no variant named {match.baseline!r}{did_you_mean(match.baseline, names)}")
        return out
    baseline = match.baseline or next((n for n, v in suite_variants.items() if v.kind == "dense"), None)
    for name, v in suite_variants.items():
        target = v.matched_to if v.matched_to is not None else (None if name == baseline else baseline)
        auto = v.d_ff == "auto" or v.expert_d_ff == "auto"
        if target is None:
            if auto:
                problems.append(f"variants.{name}: an auto width needs a baseline to match (set matched_to)")
            continue
        if target not in suite_variants:
            problems.append(f"variants.{name}.matched_to: no variant named {target!r}{did_you_mean(target, names)}")
            continue
        if target == name:
            problems.append(f"variants.{name}.matched_to: a variant cannot be matched to itself")
        t = suite_variants[target]
        if t.d_ff == "auto" or t.expert_d_ff == "auto":
            problems.append(f"variants.{name}.matched_to: {target!r} has an auto width itself; match to a fixed one")
        on = v.match_on or match.by
        if auto and on == "none":
            problems.append(f"variants.{name}: an auto width needs match_on other than none")
        out[name] = v.model_copy(update={"matched_to": target, "match_on": on})
    return out


def load_suite(path: Path, overrides: list[str] | None = None, preset: str | None = None) -> Suite:
    data, _ = apply_preset(read_yaml(path), preset)
    data = apply_overrides(data, overrides or [])
    return build_suite(data, path)


def build_suite(data: dict, path: Path | None = None) -> Suite:
    problems: list[str] = []
    spec = validate_model(SuiteSpec, data, "", problems)
    if spec is None:
        raise SuiteValidationError(problems)
    validate_model(BaseSpec, spec.base, "base", problems)
    base_bad = {p.split(".")[1].split(":")[0] for p in problems if p.startswith("base.")}
    merged = resolve_variant_dicts(spec.base, spec.variants, problems)
    variants: dict[str, VariantSpec] = {}
    for name, d in merged.items():
        explicit = set(spec.variants[name]) | (set(spec.base) if "arch" in spec.base else set())
        d = expand_arch(name, dict(d), explicit, problems)
        d.setdefault("kind", "moe" if d.get("num_experts") is not None else "dense")
        sub: list[str] = []
        v = validate_model(VariantSpec, d, f"variants.{name}", sub)
        own = set(spec.variants[name])
        # a bad inherited field is reported once, at base; a missing one is the variant's to set
        problems.extend(m for m in sub if m.split(":")[0].split(".")[2] not in base_bad)
        if v is not None:
            check_variant(name, v, own, spec.corpus.seq_len, problems)
            variants[name] = v
    if len(variants) == len(merged):
        if not any(v.kind == "dense" for v in variants.values()) and spec.match.baseline is None:
            problems.append("variants: no dense variant to act as baseline; add one or set match.baseline")
        else:
            variants = check_matching(variants, spec.match, problems)
    if spec.inference is not None and spec.inference.prune is not None:
        problems.extend(f"variants.{n}.null_experts: inference.prune cannot prune a layer with zero-compute experts "
                        f"(set null_experts: 0 or drop inference.prune)" for n, v in variants.items() if v.null_experts)
    check_train(spec, problems)
    problems.extend(check_corpus(spec.corpus))
    claims = validate_claims(spec.claims, claim_names(spec.variants, spec.sweep and spec.sweep.sizes), problems)
    sizes = build_sizes(data, spec, build_suite, problems)
    if problems:
        raise SuiteValidationError(problems)
    raw = spec.model_dump(mode="json")
    raw["variants"] = {n: v.model_dump(mode="json", exclude={"extends"}) for n, v in variants.items()}
    raw.pop("base")
    return Suite(spec.name, spec.description, spec.corpus, variants, spec.train, spec.eval, spec.match,
                 claims, spec.report, spec.inference, raw, Path(path) if path else None, tuple(spec.track),
                 spec.sweep, sizes)


def check_train(spec: SuiteSpec, problems: list[str]) -> None:
    from moebench.models.names import BACKEND_NAMES as BACKENDS

    t = spec.train
    if (t.steps is None) == (t.tokens is None):
        problems.append("train: set exactly one of steps or tokens")
    steps = t.steps or ((t.tokens or 0) // (t.batch_size * spec.corpus.seq_len))
    if t.tokens is not None and steps < 1:
        problems.append(f"train.tokens: fewer than one step's worth ({t.batch_size} x {spec.corpus.seq_len} tokens)")
    if t.warmup_fraction is not None and t.warmup_steps:
        problems.append(f"train.warmup_fraction: set at most one of warmup_steps or warmup_fraction (got "
                        f"warmup_steps {t.warmup_steps} and warmup_fraction {t.warmup_fraction})")
    if steps and t.warmup_for(steps) >= steps:
        problems.append(f"train.warmup_steps: must be < the number of steps (got {t.warmup_steps} >= {steps}); "
                        f"lower it with the steps, e.g. --set train.warmup_steps={steps // 10}")
    if t.batch_size % t.grad_accum_steps:
        problems.append(f"train.grad_accum_steps: must divide train.batch_size (got {t.grad_accum_steps}, "
                        f"batch_size {t.batch_size})")
    if len(set(t.seeds)) != len(t.seeds):
        problems.append(f"train.seeds: repeated seeds {t.seeds}")
    negative = [s for s in t.seeds if s < 0]
    if negative:
        problems.append(f"train.seeds: must be >= 0 (got {negative})")
    huge = [s for s in t.seeds if s >= INT_LIMIT]
    if huge:
        problems.append(f"train.seeds: must be < 2**63, a seed torch can take (got {huge})")
    if spec.eval.tokens < spec.corpus.seq_len:
        problems.append(f"eval.tokens: must be at least one evaluation window, corpus.seq_len = {spec.corpus.seq_len} "
                        f"tokens (got {spec.eval.tokens})")
    if t.moe_backend != "auto" and t.moe_backend not in BACKENDS:
        problems.append(f"train.moe_backend: {BACKENDS.unknown(t.moe_backend)} (or auto)")
    else:
        problems.extend(device_problems(t, any(v.get("num_experts") is not None for v in _variant_dicts(spec))))


def _variant_dicts(spec: SuiteSpec) -> list[dict]:
    return [{**spec.base, **v} for v in spec.variants.values() if isinstance(v, dict)]


def device_problems(t: TrainSpec, has_moe: bool) -> list[str]:
    """Whether train.device and (for MoE variants) train.moe_backend can run on this machine: asked at
    validation, so `plan` says so and `run` fails before the first run trains, not after the dense one."""
    from moebench.models.names import CPU_BACKENDS, cpu_without_torch

    if cpu_without_torch(t.device) and (not has_moe or t.moe_backend in CPU_BACKENDS):
        return []  # nothing to ask torch: planning a CPU suite stays torch-free
    from moebench.models.backends import resolve_backend, resolve_device

    try:
        device = resolve_device(t.device)
        if has_moe:
            resolve_backend(t.moe_backend, device)
    except UserError as e:
        msg = str(e)
        return [msg if msg.startswith("train.") else f"train.{msg}"]
    return []


def check_corpus(corpus) -> list[str]:
    from moebench.data import check_corpus_spec

    return [f"corpus: {m}" for m in check_corpus_spec(corpus.name, corpus.tokenizer)]
