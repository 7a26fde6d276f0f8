"""compare: two result directories (e.g. two backends or two machines) side by side, one row per variant."""
from __future__ import annotations

from pathlib import Path

from moebench.analysis import stats
from moebench.analysis.resultset import load_results
from moebench.config.diff import incomparable, suite_changes
from moebench.errors import UserError
from moebench.io import LEGACY

from .tables import md_table, mib, si

# (column, header, formatter)
COLUMNS = (("val_loss", "val loss", lambda x: f"{x:.4f}"), ("val_bpb", "val bpb", lambda x: f"{x:.4f}"),
           ("tokens_per_s_median", "tokens/s", si), ("peak_memory_bytes", "peak memory", mib))


def _mean(rs, variant: str, column: str) -> float:
    if rs is None or column not in rs.runs.columns:
        return float("nan")
    return stats.mean(float(x) for x in rs.ok_runs(variant)[column].dropna())


def config_differences(changes) -> str:
    if not changes:
        return "config: A and B ran the same suite settings"
    return "config differences (A -> B):\n" + "\n".join(f"  {c}" for c in changes)


def compare(results_a: Path, results_b: Path, force: bool = False, show=print) -> str:
    """Markdown: per variant, each metric's mean over finished seeds in A and in B, and the ratio B/A. The config
    differences are shown first (`show`); suites that trained for different lengths, or on another corpus or
    tokenizer, are refused unless `force`: their losses and speeds measure different things."""
    a, b = load_results(Path(results_a)), load_results(Path(results_b))
    changes = suite_changes(a.suite, b.suite, skip=("name", "description", "claims", "report"))
    show(config_differences(changes))
    why = incomparable(changes)
    if why and not force:
        raise UserError(f"compare: {results_a} and {results_b} differ in {'; '.join(why)}, so their losses and "
                        "speeds are not comparable; pass --force to compare anyway")
    headers = ["variant"]
    for _, name, _ in COLUMNS:
        headers += [f"{name} A", f"{name} B", f"{name} B/A"]
    rows = []
    for v in sorted(set(a.variants) | set(b.variants)):
        row = [v]
        for col, _, f in COLUMNS:
            x, y = _mean(a, v, col), _mean(b, v, col)
            ratio = y / x if x == x and y == y and x else float("nan")
            row += [f(x) if x == x else "n/a", f(y) if y == y else "n/a", f"{ratio:.3f}" if ratio == ratio else "n/a"]
        rows.append(row)
    title = f"A = {a.name} ({Path(results_a)}), B = {b.name} ({Path(results_b)}); means over finished seeds"
    damaged = [f"- {r}" for rs in (a, b) for r in [*rs.runs.loc[rs.runs["status"] == "damaged", "failure_reason"],
                                                   *rs.damaged_files]]
    notes = "\nDamaged, left out (rerun `moebench run` to retrain):\n" + "\n".join(damaged) + "\n" if damaged else ""
    legacy = [f"- {rs.name}: {r.variant} seed {int(r.seed)}" for rs in (a, b) if "verified" in rs.runs
              for r in rs.runs[rs.runs["verified"] == LEGACY].itertuples()]
    if legacy:  # used, as before manifests, but said: an edit of their summaries would not be noticed
        notes += (f"\nIncluded, {LEGACY} (written before run manifests; their summaries cannot be checked):\n"
                  + "\n".join(legacy) + "\n")
    return title + "\n\n" + md_table((headers, rows)) + "\n" + notes
