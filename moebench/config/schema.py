"""The suite file's schema (pydantic v2): every field, its type, default and bounds. No logic beyond that."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from moebench.io import REPORTS_ROOT

# Every number of a suite is finite and every count fits an int64 (torch's index type), so a typo such as
# `lr: .inf` or a seed of 2**64 is refused at validation, before `run` writes a byte (docs/validation.md).
INT_LIMIT = 2**63
PositiveInt = Annotated[int, Field(gt=0, lt=INT_LIMIT)]
NonNegativeInt = Annotated[int, Field(ge=0, lt=INT_LIMIT)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]  # [0, 1]
Width = Union[PositiveInt, Literal["auto"]]

# Names that become folder names (results/<suite>/<variant>/): \A..\Z, since `$` also matches before a final
# newline and "moe\n" would make a folder with a newline in its name.
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]*\Z")
SUITE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _suite_name(name: str) -> str:
    if not SUITE_NAME.match(name):
        raise ValueError("a suite name must be letters, digits, '_', '.' or '-', starting with a letter or digit")
    return name


MatchOn = Literal["train_flops", "params_active", "params_total", "step_time", "none"]


class Strict(BaseModel):
    # frozen: a validated spec travels end to end (suite -> plan -> RunSpec -> trainer) and nothing edits it
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusSpec(Strict):
    name: str = "ptb"
    tokenizer: str = "byte"
    seq_len: PositiveInt = 128


class ModelFields(Strict):
    """Architecture fields: set in `base`, overridden per variant."""

    # a shorthand for the fields of an architecture transformers has (config/suite.py ARCHS expands it), so
    # the trained model exports exactly (`moebench export --format hf`)
    arch: Optional[Literal["llama", "mixtral"]] = None
    d_model: PositiveInt
    n_layers: PositiveInt
    n_heads: PositiveInt
    n_kv_heads: Optional[PositiveInt] = None
    d_ff: Optional[Width] = None
    activation: str = "gelu"  # a name in moebench.models.activations.ACTIVATIONS (checked with the variant)
    pos: Literal["rope", "learned"] = "rope"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    tie_embeddings: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0, allow_inf_nan=False)


MOE_FIELDS = (
    "num_experts", "top_k", "expert_d_ff", "router", "renormalize", "noise_std", "shared_experts",
    "capacity_factor", "lb_coef", "z_coef", "router_fp32", "router_init_scale", "moe_every", "n_dense_layers",
    "dead_threshold", "expert_choice_group", "score", "bias_update_rate", "lb_scope", "null_experts",
)


class VariantSpec(ModelFields):
    kind: Optional[Literal["dense", "moe"]] = None  # inferred: moe when num_experts is set
    description: str = ""
    extends: Optional[str] = None
    matched_to: Optional[str] = None  # default: match.baseline (the baseline itself is matched to nothing)
    match_on: Optional[MatchOn] = None  # default: match.by
    # MoE fields (only for kind: moe)
    num_experts: Optional[PositiveInt] = None
    top_k: PositiveInt = 1
    expert_d_ff: Optional[Width] = None
    router: str = "topk"
    renormalize: bool = True
    noise_std: NonNegativeFloat = 1.0
    shared_experts: NonNegativeInt = 0
    capacity_factor: Union[PositiveFloat, Literal["dropless"]] = "dropless"
    lb_coef: NonNegativeFloat = 1e-2
    z_coef: NonNegativeFloat = 1e-3
    router_fp32: bool = True
    router_init_scale: PositiveFloat = 0.1
    moe_every: PositiveInt = 1
    n_dense_layers: NonNegativeInt = 0
    dead_threshold: Fraction = 0.1
    expert_choice_group: NonNegativeInt = 0
    # docs/routing.md: sigmoid scores (DeepSeek-V3), loss-free balancing (Wang et al. 2024), the scope of f_i
    score: Literal["softmax", "sigmoid"] = "softmax"
    bias_update_rate: NonNegativeFloat = 0.0
    lb_scope: Literal["micro_batch", "sequence", "global"] = "micro_batch"
    null_experts: NonNegativeInt = 0  # zero-compute experts (MoE++); FLOPs count every slot as a real expert


class BaseSpec(ModelFields):
    """`base` may leave any architecture field for the variants to set."""

    d_model: Optional[PositiveInt] = None
    n_layers: Optional[PositiveInt] = None
    n_heads: Optional[PositiveInt] = None


Beta = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]  # Adam's moment decay: 1 never forgets


class TrainSpec(Strict):
    steps: Optional[PositiveInt] = None
    tokens: Optional[PositiveInt] = None
    batch_size: PositiveInt = 16  # sequences per optimizer step (all micro-batches and ranks together)
    grad_accum_steps: PositiveInt = 1  # micro-batches per optimizer step (gradient accumulation)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: PositiveFloat = 3e-3
    weight_decay: NonNegativeFloat = 0.1
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    grad_clip: NonNegativeFloat = 1.0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: NonNegativeInt = 0
    # warm-up as a share of each run's steps (resolved into warmup_steps per run): a sweep whose sizes train for
    # different step counts then gives every size the same schedule shape, where a fixed warmup_steps is a larger
    # share of the smallest size's run
    warmup_fraction: Optional[Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]] = None
    min_lr_ratio: Fraction = 0.1
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)  # range: config/suite.py check_train
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # fp32 matmuls on CUDA may use TF32 (10-bit mantissa) when true. Off by default (None = off): the fp32
    # router of `router_fp32` and every float32 run then compute in real fp32, as on the CPU; bfloat16 runs
    # lose little, since their big matmuls are bf16 anyway. Recorded in every summary's env (fp32_matmul).
    tf32: Optional[bool] = None
    moe_backend: str = "auto"
    checkpoint_every: PositiveInt = 50
    compile: bool = False
    threads: Optional[PositiveInt] = None  # CPU intra-op threads (None: torch's default, one per core)
    parallel: Literal["ddp", "fsdp"] = "ddp"  # data parallel over torchrun's processes (moebench.distributed)
    expert_parallel: PositiveInt = 1  # shard each MoE layer's experts over this many ranks

    def warmup_for(self, steps: int) -> int:
        """Warm-up steps of a run of `steps` steps: warmup_steps, or warmup_fraction of the steps (rounded down,
        so always fewer than the steps)."""
        return self.warmup_steps if self.warmup_fraction is None else int(self.warmup_fraction * steps)


class LmEvalSpec(Strict):
    tasks: list[str] = Field(default_factory=list)
    limit: Optional[PositiveInt] = None
    batch_size: PositiveInt = 8


class EvalSpec(Strict):
    interval: PositiveInt = 50
    tokens: PositiveInt = 16384
    batch_size: Optional[PositiveInt] = None  # default: train.batch_size
    test: bool = True
    lm_eval: LmEvalSpec = Field(default_factory=LmEvalSpec)


class MatchSpec(Strict):
    baseline: Optional[str] = None  # default: the first dense variant
    by: MatchOn = "train_flops"  # (not `on`: YAML 1.1 reads a bare on as true)
    tolerance: PositiveFloat = 0.05
    strict: bool = True
    multiple_of: PositiveInt = 8


class PruneSpec(Strict):
    min_load: list[NonNegativeFloat] = Field(default_factory=list)  # drop experts with load share < min_load / E
    drop_least: list[PositiveInt] = Field(default_factory=list)  # drop the k least-used experts per layer


class InferenceSpec(Strict):
    """After training, measure forward speed and memory of each run's model (and of pruned copies)."""

    batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256], min_length=1)
    repeats: PositiveInt = 3
    prune: Optional[PruneSpec] = None


class ReportSpec(Strict):
    out: str = REPORTS_ROOT  # never evidence/: the project's committed reports are written only when asked
    title: Optional[str] = None


class SweepSize(Strict):
    """One size of a sweep: `base` overrides (d_model, n_layers, n_heads, d_ff, ...) and its token budget."""

    base: dict[str, Any] = Field(min_length=1)
    tokens_per_param: Optional[PositiveFloat] = None  # x the baseline's total params at this size
    steps: Optional[PositiveInt] = None


class SweepSpec(Strict):
    """Every variant at every size (`auto` widths re-solved per size); a loss-vs-compute fit per variant."""

    sizes: dict[str, SweepSize] = Field(min_length=2)
    tokens_per_param: Optional[PositiveFloat] = None  # default budget of a size that states none
    # L(C) = L_inf + A C^-alpha: "shared" fits one L_inf for all variants (bounded to [0, the lowest loss));
    # a number fixes it (Marin found a free per-variant L_inf too optimistic)
    l_inf: Union[Literal["shared"], NonNegativeFloat] = "shared"


class SuiteSpec(Strict):
    name: Annotated[str, AfterValidator(_suite_name)]
    description: str = ""
    corpus: CorpusSpec = Field(default_factory=CorpusSpec)
    base: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    train: TrainSpec
    eval: EvalSpec = Field(default_factory=EvalSpec)
    match: MatchSpec = Field(default_factory=MatchSpec)
    claims: list[Any] = Field(default_factory=list)
    report: ReportSpec = Field(default_factory=ReportSpec)
    inference: Optional[InferenceSpec] = None
    # experiment trackers every run streams to (names in moebench.training.trackers.TRACKERS, checked there,
    # with the package each needs, before training)
    track: list[str] = Field(default_factory=list)
    sweep: Optional[SweepSpec] = None
