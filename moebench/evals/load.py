"""A finished run's model back out of its run directory (for lm-eval, `moebench eval`, inference)."""
from __future__ import annotations

from pathlib import Path

import yaml

from moebench import io as R
from moebench.errors import UserError


def read_run(run_dir: Path) -> tuple[Path, dict]:
    """(final weights file, config.yaml as plain data) of a finished run; UserError if it is not one."""
    rd = Path(run_dir)
    weights = R.final_model(rd)
    if weights is None and {R.FINAL_MODEL, R.LEGACY_FINAL_MODEL} & R.kept(rd).omitted:
        raise UserError(f"{rd}: its weights were omitted (committed evidence keeps summaries and metrics only); "
                        "train it with `moebench run` on its suite to export or evaluate it")
    if weights is None or not (rd / R.CONFIG).exists():
        raise UserError(f"{rd}: not a finished moebench run (needs {R.CONFIG} and {R.FINAL_MODEL})")
    summary, problem = R.read_summary(rd)  # the one check every reader of a run makes: weights, summary, metrics
    problem = problem or (R.verify_run(rd, summary) if summary is not None else R.verify_manifest(rd))
    if problem:
        raise UserError(f"{problem}; the run is damaged, rerun `moebench run` on its suite to retrain it")
    return weights, yaml.safe_load((rd / R.CONFIG).read_text(encoding="utf-8"))


def load_trained(run_dir: Path, device: str = "auto", backend: str = "torch"):
    """(model in eval mode, tokenizer, seq_len, device) of a finished run; `backend` computes its experts."""
    from moebench.data import get_tokenizer
    from moebench.models import ModelConfig, Transformer
    from moebench.models.backends import resolve_device
    from moebench.models.weights import load_weights

    weights, cfg = read_run(run_dir)
    dev = resolve_device(device)
    model = Transformer(ModelConfig.from_dict(cfg["model"]), backend).to(dev)
    model.load_state_dict(load_weights(weights, dev))
    model.eval()
    tok = get_tokenizer(cfg["corpus"]["name"], cfg["corpus"]["tokenizer"])
    return model, tok, cfg["model"]["seq_len"], dev
