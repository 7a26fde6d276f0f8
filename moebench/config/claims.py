"""What a suite may claim: one pydantic spec per claim kind (fields, bounds, cross-field checks), registered by
kind name. How each kind is judged lives in moebench.analysis.claims, registered under the same name; a test
checks that every spec here has a judge there.

Add a kind: a spec class here (`kind: Literal["name"]`, decorated `@CLAIM_KINDS.register("name")`) and a judge
function in analysis/claims/kinds.py (decorated `@JUDGES.register("name")`).
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moebench.errors import SuiteValidationError, did_you_mean
from moebench.registry import Registry

from .problems import message
from .schema import FiniteFloat

CLAIM_KINDS: Registry[type["ClaimBase"]] = Registry("claim kind")
FINAL_METRICS = ("val_loss", "val_ppl", "val_bpb", "test_loss", "test_ppl", "test_bpb")


def claim_kind(name: str):
    """Register a spec class; its `kind` field must be Literal[name] so the YAML and the registry agree."""
    def register(cls: type) -> type:
        declared = cls.model_fields["kind"].annotation
        if getattr(declared, "__args__", None) != (name,):
            raise TypeError(f"{cls.__name__}.kind must be Literal[{name!r}] to register as {name!r}")
        return CLAIM_KINDS.add(name, cls)
    return register


def check_metric_name(m: str) -> str:
    parts = m.split(".")
    if m in FINAL_METRICS or (len(parts) == 3 and parts[0] == "lm_eval" and all(parts)):
        return m
    raise ValueError(f"metric must be one of {', '.join(FINAL_METRICS)} or lm_eval.<task>.<metric>, got {m!r}")


class ClaimBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    name: Optional[str] = None
    description: str = ""
    source: str = ""  # citation, e.g. "Fedus et al. 2021, Fig. 4"
    min_tokens_per_param: float = Field(1.0, ge=0, allow_inf_nan=False)
    # passes over the training corpus beyond which the claim is INCONCLUSIVE: Muennighoff et al. 2023 ("Scaling
    # Data-Constrained Language Models") find up to ~4 epochs of repeated data worth about as much as fresh data
    max_epochs: Optional[float] = Field(4.0, gt=0, allow_inf_nan=False)

    def compared(self) -> list[str]:
        return [v for v in (getattr(self, "variant", None), getattr(self, "baseline", None)) if v]

    def label(self) -> str:
        return self.name or f"{self.kind}: " + " vs ".join(self.compared())


class PairClaim(ClaimBase):
    variant: str
    baseline: str


class QualityPair(PairClaim):
    # a variant that computes the same function as the baseline (e.g. a 1-expert Switch vs dense): its difference
    # from the baseline is shown next to the claim as a measured "no effect" reference
    control: Optional[str] = None


class MetricClaim(ClaimBase):
    metric: str = "val_loss"

    @field_validator("metric")
    @classmethod
    def check_metric(cls, m: str) -> str:
        return check_metric_name(m)


@claim_kind("speedup_to_loss")
class SpeedupToLoss(QualityPair):
    kind: Literal["speedup_to_loss"]
    axis: Literal["steps", "tokens", "flops", "wall"] = "flops"
    min: float = Field(gt=0, allow_inf_nan=False)
    # final (default): the quality the baseline ends at, which it always reaches under the same stay-below rule
    # as the variant; best: its lowest eval, a noise-selected minimum that is stricter on the variant
    target: Literal["final", "best"] = "final"


@claim_kind("loss_better")
class LossBetter(QualityPair, MetricClaim):
    kind: Literal["loss_better"]
    lower_is_better: bool = True
    margin: FiniteFloat = 0.0


@claim_kind("loss_equivalent")
class LossEquivalent(QualityPair, MetricClaim):
    """The variant's metric equals the baseline's within +-margin (two one-sided tests, e.g. the 1-expert MoE
    control: "matches dense within 0.02 nats")."""

    kind: Literal["loss_equivalent"]
    margin: float = Field(gt=0)


class RatioClaim(PairClaim):
    min: Optional[FiniteFloat] = None
    max: Optional[FiniteFloat] = None
    max_epochs: Optional[float] = Field(None, gt=0, allow_inf_nan=False)  # speed and memory do not depend on how often data repeats
    column: ClassVar[str] = ""

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("give min and/or max")
        return self


@claim_kind("throughput_ratio")
class ThroughputRatio(RatioClaim):
    kind: Literal["throughput_ratio"]
    column: ClassVar[str] = "tokens_per_s_median"


@claim_kind("memory_ratio")
class MemoryRatio(RatioClaim):
    kind: Literal["memory_ratio"]
    column: ClassVar[str] = "peak_memory_bytes"


@claim_kind("inference_ratio")
class InferenceRatio(RatioClaim):
    """Forward speed of two trained models at one batch size (suite `inference:` section), variant / baseline."""

    kind: Literal["inference_ratio"]
    batch_size: int = Field(ge=1, lt=2**63)
    metric: Literal["tokens_per_s", "latency_ms"] = "tokens_per_s"

    @property
    def column(self) -> str:
        return f"inference.{self.metric}.b{self.batch_size}"


@claim_kind("monotonic")
class Monotonic(MetricClaim):
    kind: Literal["monotonic"]
    variants: list[str] = Field(min_length=2)
    x: Optional[list[FiniteFloat]] = None  # e.g. expert counts; the fit is on log2(x), else on the list index
    direction: Literal["decreasing", "increasing"] = "decreasing"

    @field_validator("x")
    @classmethod
    def _x_distinct_positive(cls, x):
        # the slope is fitted on log2(x) and the steps are read in x order: x must be positive and distinct
        if x is not None and (min(x) <= 0 or len(set(x)) != len(x)):
            raise ValueError(f"x must be distinct positive numbers (log2 is taken), got {x}")
        return x

    @model_validator(mode="after")
    def _x_matches(self):
        if self.x is not None and len(self.x) != len(self.variants):
            raise ValueError("x needs one value per variant")
        return self

    def in_x_order(self) -> list[tuple[str, float | None]]:
        """(variant, x) sorted by x (listing order without x): the order in which "monotonic" is read."""
        if self.x is None:
            return [(v, None) for v in self.variants]
        return sorted(zip(self.variants, self.x), key=lambda p: p[1])

    def compared(self) -> list[str]:
        return list(self.variants)

    def label(self) -> str:
        return self.name or f"monotonic: {' -> '.join(self.variants)}"


@claim_kind("load_balance")
class LoadBalance(ClaimBase):
    kind: Literal["load_balance"]
    variant: str
    min_entropy: Optional[float] = Field(None, ge=0, le=1, allow_inf_nan=False)
    max_load_x_E: Optional[float] = Field(None, ge=1, allow_inf_nan=False)
    max_dead_experts: int = Field(0, ge=0, lt=2**63)


@claim_kind("flop_accounting")
class FlopAccounting(ClaimBase):
    """Analytic forward FLOPs/token (plan/flops.py) within `tolerance` of FlopCounterMode's count of a real forward."""

    kind: Literal["flop_accounting"]
    variants: list[str] = Field(min_length=1)
    tolerance: float = Field(0.05, gt=0, allow_inf_nan=False)
    min_tokens_per_param: float = Field(0.0, ge=0, allow_inf_nan=False)  # counting FLOPs needs no training
    max_epochs: Optional[float] = Field(None, gt=0, allow_inf_nan=False)

    def compared(self) -> list[str]:
        return list(self.variants)


@claim_kind("compute_multiplier")
class ComputeMultiplier(PairClaim):
    """A sweep's compute multiplier: C_baseline(L) / C_variant(L) from the fitted L(C) curves (analysis/scaling.py)
    at `loss` (default: the baseline's fitted loss at its largest size, or the variant's there if higher, so that
    both fits reach it without extrapolation), with a bootstrap 95% interval."""

    kind: Literal["compute_multiplier"]
    min: float = Field(gt=0, allow_inf_nan=False)
    loss: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    metric: Literal["val_loss", "val_bpb", "test_loss", "test_bpb"] = "val_loss"
    n_boot: int = Field(500, ge=100, le=100_000)  # resamples held in memory at report time

    @field_validator("variant", "baseline")
    @classmethod
    def _whole_variant(cls, v: str) -> str:
        if "@" in v:
            raise ValueError(f"name a variant, not one size of it (got {v!r}): the fit spans every size")
        return v


def _check_one(i: int, raw, variant_names, problems: list[str]):
    p = f"claims.{i}"
    if not isinstance(raw, dict):
        problems.append(f"{p}: must be a mapping")
        return None
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in CLAIM_KINDS:
        problems.append(f"{p}.kind: {CLAIM_KINDS.unknown(kind)}")
        return None
    cls = CLAIM_KINDS[kind]
    try:
        spec = cls.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            path = ".".join([p, *(str(x) for x in err["loc"])])
            key = err["loc"][-1] if err["loc"] else ""
            msg = {"extra_forbidden": f"unknown key{did_you_mean(key, cls.model_fields)}", "missing": "required"}.get(
                err["type"]) or message(err)
            problems.append(f"{path}: {msg}")
        spec = None
    # names are checked even when a field is invalid, so every problem of a claim is reported at once
    if variant_names is not None:
        refs = [(f"{p}.{k}", raw.get(k)) for k in ("variant", "baseline", "control")]
        listed = raw.get("variants") if isinstance(raw.get("variants"), list) else []  # else the schema says so
        refs += [(f"{p}.variants.{j}", v) for j, v in enumerate(listed)]
        problems += [f"{w}: no variant named {v!r}{did_you_mean(v, variant_names)}" for w, v in refs
                     if isinstance(v, str) and v not in variant_names]
    return spec


def validate_claims(claims: list, variant_names: list[str] | None, problems: list[str]) -> list:
    """Parse claim dicts, appending one "claims.<i>.<field>: message" per problem; variant names are checked too."""
    specs = [_check_one(i, c, variant_names, problems) for i, c in enumerate(claims or [])]
    return [s for s in specs if s is not None]


def parse_claims(raw: list, variant_names: list[str] | None = None) -> list:
    problems: list[str] = []
    specs = validate_claims(raw, variant_names, problems)
    if problems:
        raise SuiteValidationError(problems)
    return specs
