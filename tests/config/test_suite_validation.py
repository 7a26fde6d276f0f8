"""A table of bad suites -> the one message each must produce (with its path), and exit status 2."""
import pytest
import yaml

from moebench.cli import main
from moebench.errors import SuiteValidationError, UserError
from moebench.config.suite import apply_overrides, build_suite, load_suite
from tests.helpers import DELETE, tiny

BAD = [
    ({"trian": {}}, "trian: unknown key (did you mean 'train'?)"),
    ({"variants.moe.num_expert": 8}, "variants.moe.num_expert: unknown key (did you mean 'num_experts'?)"),
    ({"train.lr": -0.001}, "train.lr: Input should be greater than 0 (got -0.001)"),
    ({"variants.moe.top_k": 9, "variants.moe.num_experts": 8},
     "variants.moe.top_k: must be <= num_experts (got 9 > 8)"),
    ({"base.n_heads": 3}, "variants.dense.n_heads: must divide d_model (got d_model 32, n_heads 3)"),
    ({"variants.dense.top_k": 2}, "variants.dense.top_k: only valid for kind: moe (this variant is dense)"),
    ({"variants.moe.router": "swich"}, "variants.moe.router: unknown router 'swich' (did you mean 'switch'?)"),
    ({"variants.moe.extends": "mo"}, "variants.moe.extends: no variant named 'mo'"),
    ({"variants.moe.extends": "moe"}, "variants.moe.extends: cycle moe -> moe"),
    ({"train.steps": DELETE}, "train: set exactly one of steps or tokens"),
    ({"train.batch_size": "big"}, "train.batch_size: Input should be a valid integer"),
    ({"train.seeds": [1, 1]}, "train.seeds: repeated seeds [1, 1]"),
    ({"train.warmup_steps": 50}, "train.warmup_steps: must be < the number of steps (got 50 >= 12)"),
    ({"train.warmup_fraction": 0.05}, "train.warmup_fraction: set at most one of warmup_steps or warmup_fraction"),
    ({"train.warmup_fraction": 1.0, "train.warmup_steps": 0}, "train.warmup_fraction: Input should be less than 1"),
    ({"train.moe_backend": "trition"}, "train.moe_backend: unknown moe_backend 'trition' (did you mean 'triton'?)"),
    ({"variants.moe.n_dense_layers": 2}, "variants.moe.n_dense_layers: must be < n_layers (got 2 >= 2)"),
    ({"base.n_kv_heads": 3, "base.n_heads": 4}, "variants.dense.n_kv_heads: must divide n_heads (got 3, n_heads 4)"),
    ({"variants.moe.matched_to": "dnse"}, "variants.moe.matched_to: no variant named 'dnse' (did you mean 'dense'?)"),
    ({"match.baseline": "nope"}, "match.baseline: no variant named 'nope'"),
    ({"variants.moe.capacity_factor": -1}, "variants.moe.capacity_factor"),
    ({"variants.moe": {"num_experts": 4}}, "variants.moe.expert_d_ff: required for kind: moe"),
    ({"variants.bad/name": {}}, "variants: 'bad/name' is not a variant name: letters, digits, '_' or '-'"),
    ({"name": "has space"}, "name: a suite name must be letters, digits"),
    # ranges (docs/validation.md): finite, positive where a count or a rate, betas in [0, 1), int64 seeds
    ({"train.betas": [2, 0.5]}, "train.betas.0: Input should be less than 1 (got 2)"),
    ({"train.betas": [0.9, 1.0]}, "train.betas.1: Input should be less than 1 (got 1.0)"),
    ({"train.lr": float("inf")}, "train.lr: must be finite (got inf)"),
    ({"train.lr": float("nan")}, "train.lr: must be finite (got nan)"),
    ({"train.weight_decay": float("inf")}, "train.weight_decay: must be finite"),
    ({"train.grad_clip": float("-inf")}, "train.grad_clip: must be finite"),
    ({"variants.moe.capacity_factor": float("inf")}, "variants.moe.capacity_factor: must be finite or 'dropless'"),
    ({"variants.moe.capacity_factor": 0}, "variants.moe.capacity_factor: Input should be greater than 0 or 'dropless'"),
    ({"variants.moe.lb_coef": float("nan")}, "variants.moe.lb_coef: must be finite"),
    ({"variants.moe.router_init_scale": float("inf")}, "variants.moe.router_init_scale: must be finite"),
    ({"base.d_ff": -1}, "base.d_ff: Input should be greater than 0 or 'auto' (got -1)"),
    ({"base.d_model": 2**63}, "base.d_model: must be < 2**63"),
    ({"train.seeds": [2**64]}, "train.seeds: must be < 2**63"),
    ({"train.seeds": [2**63 - 1, -1]}, "train.seeds: must be >= 0 (got [-1])"),
    ({"eval.tokens": 1}, "eval.tokens: must be at least one evaluation window, corpus.seq_len = 32 tokens (got 1)"),
    ({"eval.tokens": 31}, "eval.tokens: must be at least one evaluation window"),
    ({"match.tolerance": float("inf")}, "match.tolerance: must be finite"),
    ({"inference": {"prune": {"min_load": [float("nan")]}}}, "inference.prune.min_load.0: must be finite"),
    ({"variants.moe.extends": ["dense"]}, "variants.moe.extends: must be one variant's name, got a list"),
    ({"variants.moe\n": {}}, "variants: 'moe\\n' is not a variant name"),
    ({"name": "tiny\n"}, "name: a suite name must be letters"),
    ({"claims": [{"kind": "loss_better", "variant": "moe", "baseline": "dense", "margin": float("inf")}]},
     "claims.0.margin: must be finite"),
    ({"claims": [{"kind": ["loss_better"]}]}, "claims.0.kind: unknown claim kind ['loss_better']"),
    # found by putting None, [], {}, "x", -1, 0, inf, nan, 2**70, true, [[1]] in every field: each was a TypeError
    ({"base.arch": ["llama"]}, "base.arch: Input should be 'llama' or 'mixtral'"),
    ({"claims": [{"kind": "monotonic", "variants": 3}]}, "claims.0.variants: Input should be a valid list"),
    ({"corpus.name": "ptbb"}, "corpus: unknown corpus 'ptbb'"),
    ({"variants.moe.score": "tanh"}, "variants.moe.score: Input should be 'softmax' or 'sigmoid'"),
    ({"variants.moe.router": "hash", "variants.moe.score": "sigmoid"},
     "variants.moe.score: router hash has no scores to change"),
    ({"variants.moe.router": "expert_choice", "variants.moe.bias_update_rate": 1e-3},
     "variants.moe.bias_update_rate: router expert_choice has no scores to change"),
    ({"variants.moe.bias_update_rate": -1}, "variants.moe.bias_update_rate: Input should be greater than or equal"),
    ({"variants.moe.lb_scope": "batch"}, "variants.moe.lb_scope: Input should be 'micro_batch', 'sequence' or"),
    ({"variants.dense.lb_scope": "global"}, "variants.dense.lb_scope: only valid for kind: moe"),
    ({"variants.moe.router": "hash", "variants.moe.null_experts": 2},
     "variants.moe.null_experts: zero-compute experts need a learned token-choice router (topk or switch), not hash"),
    ({"variants.moe.null_experts": 2, "inference.prune.min_load": [0.1]},
     "variants.moe.null_experts: inference.prune cannot prune a layer with zero-compute experts"),
    ({"variants.moe.null_experts": -1}, "variants.moe.null_experts: Input should be greater than or equal to 0"),
    ({"train.grad_accum_steps": 3}, "train.grad_accum_steps: must divide train.batch_size (got 3, batch_size 4)"),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_suite_message(changes, message):
    with pytest.raises(SuiteValidationError) as e:
        build_suite(tiny(**changes))
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


def test_every_problem_reported_at_once():
    with pytest.raises(SuiteValidationError) as e:
        build_suite(tiny(**{"train.lr": -1, "trian": 1, "variants.moe.top_k": 7}))
    text = str(e.value)
    assert "train.lr" in text and "trian: unknown key" in text


def test_semantic_problems_across_variants_reported_together():
    with pytest.raises(SuiteValidationError) as e:
        build_suite(tiny(**{"variants.moe.top_k": 7, "variants.dense.top_k": 2, "train.seeds": [0, 0]}))
    assert len(e.value.problems) == 3, e.value.problems


def test_inherited_bad_field_is_reported_once_at_base():
    with pytest.raises(SuiteValidationError) as e:
        build_suite(tiny(**{"base.d_modl": 32}))
    assert e.value.problems == ["base.d_modl: unknown key (did you mean 'd_model'?)"]


def test_extends_inherits_and_overrides():
    d = tiny(**{"variants.moe8": {"extends": "moe", "num_experts": 8}})
    s = build_suite(d)
    assert s.variants["moe8"].num_experts == 8 and s.variants["moe8"].top_k == 2
    assert s.variants["moe8"].router == "topk" and s.variants["moe8"].kind == "moe"


def test_set_overrides_parse_yaml_values():
    d = apply_overrides(tiny(), ["train.steps=50", "variants.moe.num_experts=16", "train.seeds=[1,2]"])
    assert d["train"]["steps"] == 50 and d["variants"]["moe"]["num_experts"] == 16 and d["train"]["seeds"] == [1, 2]
    with pytest.raises(UserError, match="expected KEY.PATH=VALUE"):
        apply_overrides(tiny(), ["train.steps"])


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nvariants:\n  dense: {d_ff: 4\ntrain: {steps: 1}\n")
    with pytest.raises(UserError, match=r"s.yaml:4:\d+: YAML syntax error"):
        load_suite(p)


def test_duplicate_keys_are_an_error_with_both_lines(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\ntrain: {steps: 1}\nvariants:\n  dense: {d_ff: 4, d_ff: 8}\n")
    with pytest.raises(UserError, match=r"s.yaml:4:\d+: YAML error: duplicate key 'd_ff' \(first at line 4\)"):
        load_suite(p)
    p.write_text("name: x\ntrain: {steps: 1}\nvariants: {dense: {}}\ntrain: {steps: 2}\n")
    with pytest.raises(UserError, match=r"s.yaml:4:1: YAML error: duplicate key 'train' \(first at line 2\)"):
        load_suite(p)


def test_missing_file():
    with pytest.raises(UserError, match="suite file not found"):
        load_suite("/nonexistent/suite.yaml")


@pytest.mark.parametrize("content,needle", [
    (None, "suite file not found"),
    ("name: x\n  bad: [", "YAML syntax error"),
    (yaml.safe_dump(tiny(**{"train.lr": -1})), "train.lr: Input should be greater than 0"),
    (yaml.safe_dump(tiny(**{"variants.moe.expert_d_ff": 512})), "outside the tolerance"),
])
def test_cli_user_errors_exit_2_without_traceback(tmp_path, capsys, content, needle):
    p = tmp_path / "suite.yaml"
    if content is not None:
        p.write_text(content)
    assert main(["plan", str(p)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_bad_flag_exits_2(capsys):
    assert main(["plan", "--no-such-flag", "x.yaml"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_presets_apply_and_name_the_suite(tmp_path):
    d = tiny()
    d["presets"] = {"cpu": {"train.steps": 6, "train.seeds": [0, 1]}, "gpu": {"train.steps": 1000, "base.d_model": 64}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    cpu = load_suite(p)  # the first preset by default
    assert cpu.name == "tiny-cpu" and cpu.train.steps == 6 and cpu.train.seeds == [0, 1]
    gpu = load_suite(p, ["train.steps=5"], preset="gpu")  # --set applies after the preset
    assert gpu.name == "tiny-gpu" and gpu.train.steps == 5 and gpu.variants["dense"].d_model == 64
    with pytest.raises(UserError, match="no such preset 'gpx'|no such preset"):
        load_suite(p, preset="gpx")


def test_a_preset_that_names_the_suite_keeps_that_name(tmp_path):
    """The quickstart's default preset keeps results/quickstart (and evidence/quickstart); its gpu preset does not."""
    d = tiny()
    d["presets"] = {"cpu": {"name": "tiny"}, "gpu": {"train.steps": 1000}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    assert load_suite(p).name == "tiny" and load_suite(p, preset="gpu").name == "tiny-gpu"


def test_a_broken_data_layer_is_an_error_not_a_skipped_check(monkeypatch):
    """Validation used to swallow an ImportError and skip the corpus check: a broken install must surface."""
    import sys

    monkeypatch.setitem(sys.modules, "moebench.data", None)  # import moebench.data now raises ImportError
    with pytest.raises(ImportError):
        build_suite(tiny())
