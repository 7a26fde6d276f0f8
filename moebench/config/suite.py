"""Load a suite file: YAML -> --set overrides -> schema -> inheritance -> semantic checks -> Suite.

Every problem is collected and reported at once, each prefixed with its dotted path, before any training.
"""
from __future__ import annotations

import copy
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from moebench.errors import SuiteValidationError, UserError, did_you_mean

from .claims import validate_claims
from .schema import MOE_FIELDS, BaseSpec, EvalSpec, MatchSpec, ReportSpec, SuiteSpec, TrainSpec, VariantSpec

VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


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

    @property
    def baseline(self) -> str:
        return self.match.baseline or next(n for n, v in self.variants.items() if v.kind == "dense")


# ---------------------------------------------------------------- reading and overrides

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""


def _strict_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)  # resolve `<<:` merges first: a merged key may be overridden on purpose
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"suite file not found: {path}")
    if not path.is_file():
        raise UserError(f"{path}: not a file (a suite is a YAML file, e.g. suites/quickstart.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (a suite is a YAML file)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        kind = "YAML error" if isinstance(e, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise UserError(f"{where}: {kind}: {problem}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a suite must be a YAML mapping (name:, variants:, train:, ...), got {type(data).__name__}")
    return data


def set_path(data: dict, key: str, value: Any, origin: str) -> None:
    """data["a"]["b"]["c"] = value for key "a.b.c", creating sections on the way."""
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.get(p) if isinstance(node, dict) else None
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise UserError(f"{origin} {key}: {p!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`--set train.steps=50 --set variants.moe8.num_experts=16`: values are parsed as YAML scalars/lists."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set train.steps=50")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        _check_variant_override(data, key.strip(), parsed)
        set_path(data, key, parsed, "--set")
    return data


def _check_variant_override(data: dict, key: str, value: Any) -> None:
    """`--set variants.moe9.top_k=2` with no variant moe9 is a typo, not a new variant; a whole mapping
    (`--set 'variants.moe16={extends: moe8, num_experts: 16}'`) adds one on purpose."""
    parts = key.split(".")
    variants = data.get("variants")
    if parts[0] != "variants" or len(parts) < 2 or not isinstance(variants, dict) or parts[1] in variants:
        return
    if len(parts) == 2 and isinstance(value, dict):
        return
    raise UserError(f"--set {key}: no variant named {parts[1]!r}{did_you_mean(parts[1], variants)}; the suite has "
                    f"{', '.join(map(str, variants))} (to add one, set it whole: --set 'variants.{parts[1]}={{...}}')")


# ---------------------------------------------------------------- pydantic errors -> path messages

def _unwrap(tp):
    for arg in typing.get_args(tp) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return tp


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def pydantic_problems(err: ValidationError, model: type[BaseModel], prefix: str) -> list[str]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc))
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            hint = did_you_mean(loc[-1], parent.model_fields) if parent else ""
            out.append(f"{path}: unknown key{hint}")
        elif e["type"] == "missing":
            out.append(f"{path}: required")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            out.append(f"{path}: {e['msg']}{shown}")
    return out


def validate_model(model: type[BaseModel], data: Any, prefix: str, problems: list[str]):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems.extend(pydantic_problems(err, model, prefix))
        return None


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
            if parent not in variants:
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
        if not VARIANT_NAME.match(str(name)) or name == "superseded":  # results/<suite>/superseded/: archived runs
            problems.append(f"variants.{name}: a variant name must be letters, digits, '_' or '-' (not 'superseded')")
        if own is None:
            variants[name] = own = {}
        if not isinstance(own, dict):
            problems.append(f"variants.{name}: must be a mapping of fields, got {type(own).__name__}")
            continue
        resolve(name, ())
    return resolved


def check_variant(name: str, v: VariantSpec, own_keys: set, seq_len: int, problems: list[str]) -> None:
    from moebench.models.activations import ACTIVATIONS
    from moebench.models.routers import ROUTERS

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
    if v.router in ROUTERS and not ROUTERS[v.router].token_choice and v.expert_choice_group > seq_len:
        problems.append(f"{p}.expert_choice_group: must be <= corpus.seq_len ({seq_len})")


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


def apply_preset(data: dict, preset: str | None) -> tuple[dict, str | None]:
    """`presets: {cpu: {train.steps: 300}, gpu: {...}}`: named sets of --set overrides. With none chosen the
    first one applies; the chosen preset is appended to the suite name so cpu and gpu results never mix."""
    data = dict(data)
    presets = data.pop("presets", None)
    if presets is None:
        if preset:
            raise UserError(f"--preset {preset}: this suite defines no presets")
        return data, None
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise UserError("presets: must map a preset name to {dotted.key: value} overrides")
    chosen = preset or next(iter(presets))
    if chosen not in presets:
        raise UserError(f"--preset {chosen}: no such preset{did_you_mean(chosen, presets)}; "
                        f"this suite has {', '.join(presets)}")
    data = copy.deepcopy(data)
    for key, value in presets[chosen].items():
        set_path(data, str(key), value, f"presets.{chosen}:")
    data["name"] = f"{data.get('name', 'suite')}-{chosen}"
    return data, chosen


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
        d = dict(d)
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
    check_train(spec, problems)
    problems.extend(check_corpus(spec.corpus))
    claims = validate_claims(spec.claims, list(spec.variants), problems)
    if problems:
        raise SuiteValidationError(problems)
    raw = spec.model_dump(mode="json")
    raw["variants"] = {n: v.model_dump(mode="json", exclude={"extends"}) for n, v in variants.items()}
    raw.pop("base")
    return Suite(spec.name, spec.description, spec.corpus, variants, spec.train, spec.eval, spec.match,
                 claims, spec.report, spec.inference, raw, Path(path) if path else None)


def check_train(spec: SuiteSpec, problems: list[str]) -> None:
    from moebench.models.backends import BACKENDS

    t = spec.train
    if (t.steps is None) == (t.tokens is None):
        problems.append("train: set exactly one of steps or tokens")
    steps = t.steps or ((t.tokens or 0) // (t.batch_size * spec.corpus.seq_len))
    if t.tokens is not None and steps < 1:
        problems.append(f"train.tokens: fewer than one step's worth ({t.batch_size} x {spec.corpus.seq_len} tokens)")
    if steps and t.warmup_steps >= steps:
        problems.append(f"train.warmup_steps: must be < the number of steps (got {t.warmup_steps} >= {steps})")
    if len(set(t.seeds)) != len(t.seeds):
        problems.append(f"train.seeds: repeated seeds {t.seeds}")
    negative = [s for s in t.seeds if s < 0]
    if negative:
        problems.append(f"train.seeds: must be >= 0 (got {negative})")
    if t.moe_backend != "auto" and t.moe_backend not in BACKENDS:
        problems.append(f"train.moe_backend: {BACKENDS.unknown(t.moe_backend)} (or auto)")
    else:
        problems.extend(device_problems(t, any(v.get("num_experts") is not None for v in _variant_dicts(spec))))


def _variant_dicts(spec: SuiteSpec) -> list[dict]:
    return [{**spec.base, **v} for v in spec.variants.values() if isinstance(v, dict)]


def device_problems(t: TrainSpec, has_moe: bool) -> list[str]:
    """Whether train.device and (for MoE variants) train.moe_backend can run on this machine: asked at
    validation, so `plan` says so and `run` fails before the first run trains, not after the dense one."""
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
