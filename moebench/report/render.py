"""write_report: results/<suite>/ -> README.md, report.html (self-contained), results.csv, curves.csv,
verdicts.json and plots/*.png.

The report is a list of blocks rendered twice (markdown and HTML), so both always show the same content. Only the
line starting with "Date:" changes between reruns on the same inputs.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import yaml

from moebench.analysis import sequential
from moebench.analysis.claims import MIN_SEEDS, judge_all
from moebench.analysis.resultset import load_results
from moebench.config.claims import parse_claims
from moebench.config.sweep import claim_names
from moebench.errors import UserError
from moebench.io import atomic_write_text, check_out_dir

from . import facts, sections, tables
from .plots import make_plots
from .scaling import scaling_blocks

PLOT_DIR = "plots"


def _header(rs) -> list:
    e = rs.env
    dirty = {True: " (dirty)", False: " (clean)"}.get(e.get("git_dirty"), f" (dirty: {e.get('git_dirty', 'n/a')})")
    n_ok = int((rs.runs["status"] == "ok").sum()) if len(rs.runs) else 0
    items = [f"git SHA: {e.get('git_sha', 'n/a')}{dirty}",
             f"python {e.get('python', 'n/a')}, torch {e.get('torch', 'n/a')}, triton {e.get('triton', 'n/a')}",
             _lock_line(e),
             f"device: {e.get('device', 'n/a')} ({e.get('device_name', 'n/a')}); CPU: {e.get('cpu_model', 'n/a')}",
             f"total training wall time: {rs.total_wall_time_s():.1f} s over {len(rs.runs)} runs ({n_ok} finished ok)"]
    return [("h1", f"moebench report: {rs.name}"),
            ("p", "Date: " + datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")), ("list", items)]


def _lock_line(e: dict) -> str:
    state, sha = e.get("lock_state"), e.get("lock_sha256")
    if state is None:
        return "environment lock: not recorded (runs made before requirements/test.lock)"
    if state == "no lock":
        return "environment lock: none (not run from a checkout with requirements/test.lock)"
    line = f"environment lock: requirements/test.lock sha256 {str(sha)[:12]}, {state}"
    return line + (f" ({e['lock_differ']})" if state != "locked" and e.get("lock_differ") else "")


def _rules(verdicts, min_tpp_default: float = 1.0) -> list:
    gates = (f"Every verdict is INCONCLUSIVE (reason given) when a compared variant has a failed or incomplete run, "
             f"fewer than {MIN_SEEDS} finished seeds, fewer training tokens per total parameter than the claim's "
             f"min_tokens_per_param (default {min_tpp_default:g}), or (training claims) more passes over its corpus "
             f"than max_epochs (default 4); a quality claim is also INCONCLUSIVE when a variant's seeds are "
             f"identical (a seed that randomises nothing is a bug, not evidence). Quality verdicts (loss_better, "
             f"speedup_to_loss, monotonic) are null-calibrated: on simulated suites with no true effect they PASS "
             f"at most 5% of the time at 2 and 3 seeds (tests/analysis/test_null_calibration.py).")
    return [("p", gates), ("list", [f"{v.name}: {v.rule}" for v in verdicts])] if verdicts else [("p", gates)]


def build_blocks(rs, verdicts, plots: list[tuple[str, str]], suite_text: str, extra: list | None = None,
                 seq: list | None = None) -> list:
    """The report's blocks; `extra` (the scaling section of a sweep) goes before the plots, `seq` (the rounds of
    `run --until-decided`) after the claims."""
    blocks = _header(rs)
    if rs.suite.get("description"):
        blocks.append(("p", str(rs.suite["description"]).strip()))
    blocks += [("h2", "Claims"), ("table", tables.claims_table(verdicts)) if verdicts else ("p", "No claims.")]
    blocks += _rules(verdicts) + (seq or [])
    if verdicts:
        nums = {v.name: {"verdict": v.verdict, **v.numbers} for v in verdicts}
        blocks.append(("details", "all claim numbers (JSON)", _json(nums), "json"))
    blocks += [("h2", "Variants"), ("table", tables.variants_table(rs)),
               ("p", "Means over finished seeds, ± the 95% t interval; params, FLOPs, tokens/s and memory are "
                     "medians.")]
    blocks += [("h2", "What each variant is and saw"), ("table", facts.facts_table(rs)),
               ("p", "From the plan (plan.json), the resolved suite and the runs (medians over finished seeds); "
                     "epochs = training tokens / unique training tokens of the corpus. Beyond ~4 epochs repeated "
                     "data is worth less than fresh data (Muennighoff et al. 2023).")]
    blocks += [("h2", "Noise floor"), ("table", facts.noise_table(rs)),
               ("p", "The seed-to-seed standard deviation of each variant's final val loss: the smallest difference "
                     "that means anything at this suite's scale.")]
    effects = facts.effects_table(verdicts)
    if effects:
        blocks += [("table", effects),
                   ("p", "Each quality claim's effect in units of its baseline's seed sd, and the smallest effect "
                         "the suite could have detected at that noise with 80% power (what an INCONCLUSIVE "
                         "could have seen); a control variant computes the same function as the baseline, so its "
                         "difference is a measured no-effect.")]
    load = sections.load_table(rs)
    if load:
        blocks += [("h2", "Expert load per layer"), ("table", load),
                   ("p", "Final evaluation, medians over seeds. MaxVio = max load / mean load - 1 (Wang et al. "
                         "2024): over the whole evaluation (global) and per evaluation batch (averaged); 0 is "
                         "perfectly even. Dead: experts with load share < dead_threshold / E.")]
    failed = sections.failed_runs_table(rs)
    if failed:
        blocks += [("h2", "Failed runs"), ("table", failed),
                   ("p", "Runs that are not finished ok are left out of every mean and make the claims that compare "
                         "their variant INCONCLUSIVE. damaged: a file no longer matches the row count or checksum "
                         "its summary recorded (rerun `moebench run` to retrain it).")]
    if rs.damaged_files:  # an edited sidebyside.json is not used (per-run medians instead); suite.yaml, plan.json
        # say what the suite is and cannot be left out: the verdicts above rest on them, so they are named here
        blocks += [("h2", "Damaged files"), ("p", "These files no longer match the checksums their folder's "
                                                  "manifest recorded (rerun the command that wrote them; `moebench "
                                                  "run` on the suite rewrites suite.yaml and plan.json): "
                                                  + "; ".join(rs.damaged_files) + ". A damaged sidebyside.json is "
                                                  "not used; claims read from a damaged suite.yaml are suspect.")]
    legacy = sections.legacy_runs_table(rs)
    if legacy:
        blocks += [("h2", "Unverified runs (legacy)"), ("table", legacy),
                   ("p", "Written before runs had a manifest: their weights and metrics are checked against their "
                         "summary, but an edited summary.json cannot be detected. They are used as before; "
                         "`moebench run --force` retrains and records them.")]
    blocks += [("h2", "Utilisation (S-MFU, S-MBU)"), ("table", tables.utilisation_table(rs)),
               ("p", "S-MFU and S-MBU as MoE-CAP (Jiang et al. 2024) define them for sparse models: achieved "
                     "FLOP/s of the active parameters (train FLOPs/token x tokens/s) / device peak FLOP/s, and bytes "
                     "of active weights read per step (active params x env.param_bytes, default "
                     f"{tables.DEFAULT_PARAM_BYTES}) / step time / peak bandwidth. Peaks are the ones recorded with "
                     "the runs (spec sheet or measured probe).")]
    dist = sections.distributed_table(rs)
    if dist:
        blocks += [("h2", "Distributed training"), ("table", dist),
                   ("p", "Communication time: all-reduce (DDP) and all-to-all (expert parallel) intervals, from the "
                         "slowest rank, merged where they overlap; tokens/s are summed over ranks, memory is the "
                         "largest rank's.")]
    lm = sections.lm_eval_table(rs)
    if lm:
        blocks += [("h2", "lm-evaluation-harness"), ("table", lm),
                   ("p", "Tasks from eval.lm_eval, run by lm-evaluation-harness on each finished run's model "
                         "(moebench/evals/harness.py); mean over finished seeds.")]
    flops = sections.flop_table(rs)
    if flops:
        blocks += [("h2", "FLOP accounting"), ("table", flops),
                   ("p", "Analytic: moebench/plan/flops.py (matmuls only, attention over the full context, k experts "
                         "per token). Measured: torch FlopCounterMode on one forward of an evaluation batch at the "
                         "end of training (math SDPA backend so attention is visible; real routing, so tokens a "
                         "capacity limit drops cost nothing). The last column is what fixed-shape hardware pays "
                         "when every expert is padded to its capacity.")]
    for title, table in sections.inference_tables(rs):
        blocks += [("h2", title), ("table", table)]
    blocks += extra or []
    blocks += [("h2", "Plots")] + [b for title, f in plots for b in (("h3", title), ("img", title, f))]
    blocks += [("h2", "Suite"), ("details", "resolved suite YAML", suite_text, "yaml")]
    return blocks


def _strict(x):
    """NaN / inf (an unbounded CI, a missing value) become null: strict JSON that every reader accepts."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _strict(v) for k, v in x.items()}
    return [_strict(v) for v in x] if isinstance(x, (list, tuple)) else x


def _json(obj) -> str:
    return json.dumps(_strict(obj), indent=1, sort_keys=True, allow_nan=False, default=float)


def verdicts_json(verdicts) -> str:
    """verdicts.json: the machine-readable twin of the claims table (NaN written as null)."""
    return _json([dataclasses.asdict(v) for v in verdicts]) + "\n"


def to_markdown(blocks) -> str:
    render = {
        "h1": lambda b: f"# {b[1]}", "h2": lambda b: f"## {b[1]}", "h3": lambda b: f"### {b[1]}",
        "p": lambda b: b[1], "list": lambda b: "\n".join(f"- {i}" for i in b[1]),
        "table": lambda b: tables.md_table(b[1]), "img": lambda b: f"![{b[1]}]({PLOT_DIR}/{b[2]})",
        "details": lambda b: f"<details><summary>{b[1]}</summary>\n\n```{b[3]}\n{b[2].rstrip()}\n```\n\n</details>",
    }
    return "\n\n".join(render[b[0]](b) for b in blocks) + "\n"


STYLE = ("body{font-family:sans-serif;max-width:1150px;margin:auto;padding:1em}table{border-collapse:collapse;"
         "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}img{max-width:100%}"
         ".pass{background:#c8f0c8}.fail{background:#f4c4c4}.inconclusive{background:#eee8b0}")


def html_table(t) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t[0])
    body = "\n".join("<tr>" + "".join(f"<td{_cls(c)}>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in t[1])
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def _cls(cell) -> str:
    return f' class="{cell.lower()}"' if cell in ("PASS", "FAIL", "INCONCLUSIVE") else ""


def to_html(blocks, img_dir: Path) -> str:
    def img(b):
        data = base64.b64encode((img_dir / b[2]).read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(b[1])}" src="data:image/png;base64,{data}">'
    esc = html.escape
    render = {
        "h1": lambda b: f"<h1>{esc(b[1])}</h1>", "h2": lambda b: f"<h2>{esc(b[1])}</h2>",
        "h3": lambda b: f"<h3>{esc(b[1])}</h3>", "p": lambda b: f"<p>{esc(b[1])}</p>",
        "list": lambda b: "<ul>\n" + "\n".join(f"<li>{esc(i)}</li>" for i in b[1]) + "\n</ul>",
        "table": lambda b: html_table(b[1]), "img": img,
        "details": lambda b: f"<details><summary>{esc(b[1])}</summary>\n<pre>{esc(b[2])}</pre>\n</details>",
    }
    title = next((b[1] for b in blocks if b[0] == "h1"), "moebench report")
    body = "\n".join(render[b[0]](b) for b in blocks)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _csv(df, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n", float_format="%.10g"))


# written into every report folder: the report's files there may be replaced by the next report. A folder
# without it (or, from before it existed, without report.html and verdicts.json) is someone else's: refused.
MARKER = ".moebench-report"


def check_report_dir(out_dir: Path) -> None:
    """UserError unless `out_dir` is new, empty, or a report folder moebench wrote (it overwrites README.md there)."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, "report folder")
    if not out_dir.exists() or not any(out_dir.iterdir()) or (out_dir / MARKER).is_file():
        return
    if not ((out_dir / "report.html").is_file() and (out_dir / "verdicts.json").is_file()):
        raise UserError(f"report folder {out_dir}: not empty and not a moebench report (no {MARKER}); a report "
                        "replaces README.md and report.html there: choose another --out")


@dataclasses.dataclass(frozen=True)
class Rendered:
    readme: Path
    verdicts: tuple
    sequential: str = ""  # one line on the rounds of a `run --until-decided`, "" without them
    damaged_files: tuple[str, ...] = ()  # suite-level files that failed their check, for the console too


CONSOLE_REASON_CHARS = 100  # one terminal line each; the report has the whole reason


def one_line(text: str, limit: int = CONSOLE_REASON_CHARS) -> str:
    """The reason's first clause, cut to `limit` characters: what a console line can carry."""
    first = " ".join(text.split()).split("; ")[0]
    return first if len(first) <= limit else first[:limit - 1].rstrip() + "…"


def console_claims(verdicts) -> str:
    """The claims as a plain-text table for the console: verdict, claim, key number, one-line reason, and the
    counts on top (what a user ran the suite for, printed after `run` and `report`)."""
    if not verdicts:
        return "claims: none in this suite"
    counts = {k: sum(v.verdict == k for v in verdicts) for k in ("PASS", "FAIL", "INCONCLUSIVE")}
    rows = [[v.verdict, v.name, tables.key_number(v) or "-", one_line(v.reason)] for v in verdicts]
    headers = ["verdict", "claim", "key number", "reason"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:3])]
    line = lambda r: "  ".join([c.ljust(w) for c, w in zip(r[:3], widths)] + [r[3]]).rstrip()  # noqa: E731
    head = "claims: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return "\n".join([head, line(headers), line(["-" * w for w in widths] + ["-" * 6])]
                     + [line(r) for r in rows])


def write_report(results_dir: Path, out_dir: Path, seeds_to_decide: bool | None = None) -> Path:
    return render_report(results_dir, out_dir, seeds_to_decide).readme


def suite_claims(rs) -> list:
    """The suite's claims, parsed against its variants (and a sweep's variant@size names)."""
    names = rs.suite.get("variants")  # an unknown variant in a claim is the user's typo, not a missing run
    sizes = (rs.suite.get("sweep") or {}).get("sizes")  # a sweep's claims may name one size: variant@size
    return parse_claims(rs.suite.get("claims") or [], claim_names(names, sizes) if isinstance(names, dict) else None)


def judge_results(rs) -> list:
    """The verdicts of the suite's claims on a ResultSet: what the report tabulates and the evidence re-judge checks."""
    return judge_all(suite_claims(rs), rs)


def final_verdicts(rs, results_dir: Path) -> tuple[list, sequential.Record | None, str]:
    """The verdicts the report states, the rounds of `run --until-decided` if the folder holds their record (after
    such a run its verdicts use the sequential boundary, not the fixed 2.5%), and why a record that no longer
    matches the runs was not applied ("" otherwise)."""
    verdicts, rec = judge_results(rs), sequential.read_record(results_dir)
    if rec is None:
        return verdicts, None, ""
    seeds = {str(v): {int(s) for s in g["seed"]} for v, g in rs.runs.groupby("variant")}
    why = sequential.stale(rec, seeds)
    return (verdicts, None, why) if why else (sequential.apply(verdicts, rec), rec, "")


def render_report(results_dir: Path, out_dir: Path, seeds_to_decide: bool | None = None) -> Rendered:
    """`seeds_to_decide`: add what would decide each INCONCLUSIVE claim (analysis/power_plan.py, seconds per
    claim); None: only after `run --until-decided`, whose undecided claims the report owes that figure."""
    out_dir = Path(out_dir)
    check_report_dir(out_dir)
    rs = load_results(Path(results_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / MARKER, "written by moebench report; its other files are replaced on the next one\n")
    verdicts, rec, stale = final_verdicts(rs, Path(results_dir))
    plots = make_plots(rs, verdicts, out_dir / PLOT_DIR)
    extra = scaling_blocks(rs, out_dir / PLOT_DIR)
    suite_path = Path(results_dir) / "suite.yaml"
    suite_text = suite_path.read_text(encoding="utf-8") if suite_path.exists() else yaml.safe_dump(rs.suite)
    seq = sections.sequential_blocks(rec) if rec else [("p", stale)] if stale else []
    if seeds_to_decide if seeds_to_decide is not None else rec is not None:
        seq += sections.decide_blocks(rs, suite_claims(rs), verdicts)
    blocks = build_blocks(rs, verdicts, plots, suite_text, extra, seq)
    readme = out_dir / "README.md"
    atomic_write_text(readme, to_markdown(blocks))
    atomic_write_text(out_dir / "report.html", to_html(blocks, out_dir / PLOT_DIR))
    atomic_write_text(out_dir / "verdicts.json", verdicts_json(verdicts))
    _csv(rs.runs, out_dir / "results.csv")
    _csv(rs.curves, out_dir / "curves.csv")
    return Rendered(readme, tuple(verdicts), rec.summary() if rec else stale, rs.damaged_files)


DATE_LINE = re.compile(r"^(<p>)?Date: ")  # the one line allowed to differ between reruns
