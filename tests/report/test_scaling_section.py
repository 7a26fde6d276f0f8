"""The report's scaling section on synthetic sweep run directories: present only for a sweep, with the fit's
tables and plots, or one sentence saying why there is no fit."""
import numpy as np

from moebench.analysis.resultset import load_results
from moebench.report.render import write_report
from moebench.report.scaling import scaling_blocks
from tests.synth import write_run, write_suite


def sweep(tmp_path, n_sizes: int):
    sizes = {f"s{i}": {"base": {"d_model": 8 * (i + 1)}} for i in range(n_sizes)}
    d = write_suite(tmp_path, sweep={"sizes": sizes})
    rng = np.random.default_rng(0)
    for variant, m in (("dense", 1.0), ("moe", 2.0)):
        for i in range(n_sizes):
            tps = 1000 * 8 ** i
            for seed in range(2):
                loss = 1.5 + (m * 6e6 * tps / 1e9) ** -0.3 + rng.normal(0, 0.005)
                write_run(d, variant, seed, [loss], tokens_per_step=tps, flops_per_token=6e4, size=f"s{i}")
    return d


def test_scaling_section_tables_and_plots(tmp_path):
    readme = write_report(sweep(tmp_path, 4), tmp_path / "rep").read_text()
    section = readme.split("## Scaling sweep: loss vs compute")[1].split("## Plots")[0]
    params = section.split("### Fit parameters")[1].split("###")[0]
    assert "Lack of fit: sum over (variant, size) cells of z^2 = " in section and "on 3 df" in section
    assert "; the law is " in section and "Plateau check: " in section  # rejected here by chance (p 0.048)
    assert "| dense |" in params and "| moe |" in params and "alpha [95% CI]" in params
    rows = [r for r in section.split("### Per size")[1].splitlines() if r.startswith("| moe |")]
    assert len(rows) == 4 and all("n/a" in r or "2." in r or "1.9" in r for r in rows)  # measured ~2x
    for png in ("scaling_loss_vs_flops.png", "scaling_multiplier_vs_loss.png"):
        assert f"plots/{png}" in section and (tmp_path / "rep/plots" / png).exists()


def test_plateau_sizes_are_shown_left_out_and_a_bent_law_is_rejected(tmp_path):
    d = write_suite(tmp_path, sweep={"sizes": {f"s{i}": {"base": {"d_model": 8 * (i + 1)}} for i in range(5)}})
    rng = np.random.default_rng(0)
    for variant, m in (("dense", 1.0), ("moe", 2.0)):
        for i in range(5):
            tps = 1000 * 8 ** i
            for seed in range(3):
                loss = 3.0 + rng.normal(0, 0.005) if i == 0 else 1.5 + (m * 6e6 * tps / 1e9) ** -0.3 + rng.normal(
                    0, 0.005) + (0.2 if (variant, i) == ("dense", 2) else 0.0)  # one cell far off the law
                write_run(d, variant, seed, [loss], tokens_per_step=tps, flops_per_token=6e4, size=f"s{i}",
                          extra={"unigram_ce_val": 3.02})
    text = " ".join(str(b[1]) for b in scaling_blocks(load_results(d), tmp_path / "img"))
    assert "left out s0" in text and "reference from the runs' summary.json" in text
    assert "the law is REJECTED" in text and "left out (plateau)" in text


def test_no_section_without_a_sweep_and_a_reason_without_a_fit(tmp_path):
    plain = write_suite(tmp_path / "a")
    write_run(plain, "dense", 0, [2.0])
    assert scaling_blocks(load_results(plain), tmp_path / "img") == []
    blocks = scaling_blocks(load_results(sweep(tmp_path / "b", 2)), tmp_path / "img")
    assert blocks[1][1].startswith("Plateau check:")
    assert blocks[2][1].startswith("No fit: a fit with a shared L_inf needs >= 3 sizes")
