"""compare: two result directories (e.g. two backends or two machines) side by side, one row per variant."""
from __future__ import annotations

from pathlib import Path

from moebench.analysis import stats
from moebench.analysis.resultset import load_results

from .tables import md_table, mib, si

# (column, header, formatter)
COLUMNS = (("val_loss", "val loss", lambda x: f"{x:.4f}"), ("val_bpb", "val bpb", lambda x: f"{x:.4f}"),
           ("tokens_per_s_median", "tokens/s", si), ("peak_memory_bytes", "peak memory", mib))


def _mean(rs, variant: str, column: str) -> float:
    if rs is None or column not in rs.runs.columns:
        return float("nan")
    return stats.mean(float(x) for x in rs.ok_runs(variant)[column].dropna())


def compare(results_a: Path, results_b: Path) -> str:
    """Markdown: per variant, each metric's mean over finished seeds in A and in B, and the ratio B/A."""
    a, b = load_results(Path(results_a)), load_results(Path(results_b))
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
    return title + "\n\n" + md_table((headers, rows)) + "\n" + notes
