"""write_report end to end on synthetic results, determinism of every output file, and compare()."""
import json
import re
import shutil

import pytest
from tests.synth import experts_stats, write_run, write_suite

from moebench.report.compare import compare
from moebench.errors import UserError
from moebench.report.render import DATE_LINE, write_report

CLAIMS = [
    {"kind": "speedup_to_loss", "variant": "moe", "baseline": "dense", "axis": "tokens", "min": 1.2,
     "source": "Fedus et al. 2021", "name": "switch speedup"},
    {"kind": "loss_better", "variant": "moe", "baseline": "dense", "metric": "val_bpb"},
    {"kind": "load_balance", "variant": "moe", "min_entropy": 0.9},
]


def make_results(root, tps=2000.0, name="synth"):
    d = write_suite(root, name=name, claims=CLAIMS)
    for s in (0, 1):
        write_run(d, "dense", s, [4.0, 3.5, 3.0, 2.8 + 0.01 * s], tokens_per_s=tps)
        write_run(d, "moe", s, [3.8, 3.0, 2.7, 2.5 - 0.01 * s], experts=experts_stats(), tokens_per_s=tps * 0.9,
                  peak_mem=2_000_000)
    return d


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("res")
    d = make_results(root)
    out = root / "out"
    return d, out, write_report(d, out)


def _files(out):
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


def test_report_files_and_order(report):
    d, out, readme = report
    assert readme == out / "README.md"
    names = {str(p) for p in _files(out)}
    assert {"README.md", "report.html", "results.csv", "curves.csv", "verdicts.json", "plots/val_loss_vs_tokens.png",
            "plots/val_loss_vs_flops.png", "plots/val_loss_vs_wall.png", "plots/throughput_memory.png",
            "plots/expert_load_moe.png", "plots/speedup.png"} <= names
    md = readme.read_text()
    order = ["## Claims", "## Variants", "## What each variant is and saw", "## Noise floor", "## Plots",
             "<summary>resolved suite YAML"]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    assert re.search(r"\| switch speedup \| PASS \| moe, dense \|.*\| Fedus et al. 2021 \|", md)
    assert "git SHA: abc1234 (clean)" in md and "torch 2.13.0" in md and "Synthetic CPU" in md
    assert "2.4950 ± 0.0635" in md  # moe val loss: mean 2.495, sd 0.00707, t(1) 12.706 / sqrt(2)
    assert "0.98, 1.3x, 0" in md
    # facts from the plan and the runs: MoE blocks by the model's rule, epochs of the corpus
    assert "| moe | all of 2; 4 experts, top-2 | expert_d_ff 32 (solved) | 33.3 k | 25.2 k | 400 | 0.04 | 10 M |" in md
    assert "| dense | 2 | 2.805 | 0.00707 |" in md  # noise floor: sd of 2.8, 2.81
    assert "| switch speedup | PASS | 0.00707 (dense val_loss) | 0.31 final val loss | 43.8 |" in md
    # Welch's t on log times (nothing censored): moe reaches 2.8 at 266.7 and 2.81 at 263.3 tokens-steps, dense
    # both at 400; t(1) 12.706 x half the log difference 0.01258 / 2 = +-0.0799 around ln 1.5095
    assert "speedup_tokens = 1.509 [1.39, 1.64]" in md
    assert "n/a (no peak recorded)" in md
    # the load table is per layer, never summed over layers: loads (.3 .2 .25 .25) and (.1 .4 .2 .3)
    assert re.search(r"## Expert load per layer[\s\S]*\| moe \| 0 \| 0\.2 \| 0\.2 \| 0\.141 \| 0 \|\n"
                     r"\| moe \| 1 \| 0\.6 \| 0\.6 \| 0\.447 \| 0 \|", md), md[md.find("## Expert load"):][:600]
    assert (out / "plots" / "expert_load_moe.png").read_bytes()[:4] == b"\x89PNG"
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert [(v["name"], v["verdict"]) for v in verdicts] == [
        ("switch speedup", "PASS"), ("loss_better: moe vs dense", "PASS"), ("load_balance: moe", "PASS")]


def test_html_is_self_contained(report):
    _, out, _ = report
    h = (out / "report.html").read_text()
    assert h.count('src="data:image/png;base64,') == 6
    assert "plots/" not in h  # no relative image links left
    assert h.index("<h2>Claims</h2>") < h.index("<h2>Variants</h2>")
    assert '<td class="pass">PASS</td>' in h


def test_csv_one_row_per_run(report):
    _, out, _ = report
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("suite,variant,seed,status")
    assert len((out / "curves.csv").read_text().splitlines()) == 1 + 4 * 4


def test_rerun_is_byte_identical_except_date(report, tmp_path):
    d, out, _ = report
    copy = tmp_path / "results"
    shutil.copytree(d, copy)  # another path, same content: nothing may depend on where results live
    out2 = tmp_path / "out2"
    write_report(copy, out2)
    assert _files(out) == _files(out2)
    for rel in _files(out):
        a, b = (out / rel).read_bytes(), (out2 / rel).read_bytes()
        if rel.suffix in (".md", ".html"):
            strip = lambda t: [ln for ln in t.decode().splitlines() if not DATE_LINE.match(ln)]  # noqa: E731
            assert len(strip(a)) == len(a.decode().splitlines()) - 1, rel  # exactly one date line
            assert strip(a) == strip(b), rel
        else:
            assert a == b, rel


def test_invalid_claims_are_a_user_error(tmp_path):
    d = write_suite(tmp_path, claims=[{"kind": "loss_better", "variant": "moe"}])
    with pytest.raises(UserError, match="baseline"):
        write_report(d, tmp_path / "out")


def test_compare_side_by_side(tmp_path):
    a = make_results(tmp_path / "a", tps=2000.0, name="cpu")
    b = make_results(tmp_path / "b", tps=3000.0, name="gpu")
    text = compare(a, b)
    assert "A = cpu" in text and "B = gpu" in text
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in text.splitlines() if ln.startswith("| ")}
    assert set(rows) == {"variant", "dense", "moe"}
    assert "| 2 k | 3 k | 1.500 |" in rows["dense"]  # tokens/s A, B, B/A
    assert "| 2.8050 | 2.8050 | 1.000 |" in rows["dense"]


def test_verdicts_json_is_strict_when_a_ci_is_unbounded(tmp_path):
    d = write_suite(tmp_path, claims=[CLAIMS[1]])
    write_run(d, "dense", 0, [3.0])  # one seed each: the Welch interval is (-inf, inf)
    write_run(d, "moe", 0, [2.9])
    out = tmp_path / "out"
    write_report(d, out)

    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")
    v = json.loads((out / "verdicts.json").read_text(), parse_constant=reject)[0]
    assert v["verdict"] == "INCONCLUSIVE" and v["numbers"]["ci95_improvement"] == [None, None]


def test_report_survives_failed_incomplete_and_empty_variants(tmp_path):
    d = write_suite(tmp_path, claims=CLAIMS, variants=("dense", "moe", "never_started"))
    write_run(d, "dense", 0, [4.0, 3.0])
    write_run(d, "moe", 0, [3.9, float("inf")], status="failed", experts=experts_stats(),
              failure={"step": 200, "reason": "loss is inf"})
    write_run(d, "moe", 1, [3.9], finished=False)
    md = write_report(d, tmp_path / "out").read_text()
    assert md.count("| INCONCLUSIVE |") == 3
    assert "moe/seed-0 failed at step 200: loss is inf" in md and "moe/seed-1 incomplete" in md
    assert "| never_started | ? | 0/1 |" in md


def test_moe_blocks_follow_the_model_rule():
    from moebench.report.facts import moe_blocks
    assert moe_blocks({"n_layers": 4, "num_experts": 8, "top_k": 1, "moe_every": 2}) == "1, 3 of 4; 8 experts, top-1"
    assert moe_blocks({"n_layers": 3, "num_experts": 4, "top_k": 2, "n_dense_layers": 1, "shared_experts": 1}) == \
        "1, 2 of 3; 4 experts, top-2 + 1 shared"
    assert moe_blocks({"n_layers": 2}) == "none (dense)"


def test_a_claim_name_with_dollars_is_drawn_as_plain_text(tmp_path):
    """`$x^$` is not valid math-text: matplotlib's parser raised from the speedup plot, after the suite trained."""
    claims = [{**CLAIMS[0], "name": "speedup $x^$ here"}]
    d = write_suite(tmp_path / "res", claims=claims)
    for s in (0, 1):
        write_run(d, "dense", s, [4.0, 3.5, 3.0, 2.8 + 0.01 * s])
        write_run(d, "moe", s, [3.8, 3.0, 2.7, 2.5 - 0.01 * s], experts=experts_stats())
    write_report(d, tmp_path / "rep")
    assert "speedup.png" in (tmp_path / "rep/README.md").read_text()
    assert "speedup $x^$ here" in (tmp_path / "rep/README.md").read_text()
