"""`moebench compare A B` shows the config differences first and refuses suites that are not comparable."""
from moebench.cli import main
from tests.synth import write_run, write_suite


def results(root, name, **changes):
    d = write_suite(root, name=name, seeds=(0, 1), **changes)
    for s in (0, 1):
        write_run(d, "dense", s, [3.0, 2.8 + 0.01 * s])
        write_run(d, "moe", s, [3.0, 2.7 + 0.01 * s])
    return d


def test_differences_first_and_a_different_length_refused_unless_forced(tmp_path, capsys):
    a = results(tmp_path / "a", "s300", **{"train.steps": 30})
    b = results(tmp_path / "b", "s30", **{"train.steps": 12, "train.lr": 1e-3})
    assert main(["compare", str(a), str(b)]) == 2
    cap = capsys.readouterr()
    assert cap.out.splitlines()[:3] == ["config differences (A -> B):", "  train.lr: 0.003 -> 0.001",
                                        "  train.steps: 30 -> 12"]
    assert "| variant |" not in cap.out  # refused: no ratios printed
    assert cap.err.count("\n") == 1 and "training length (train.steps: 30 -> 12)" in cap.err
    assert "--force" in cap.err
    assert main(["compare", str(a), str(b), "--force"]) == 0
    out = capsys.readouterr().out
    assert out.index("train.steps: 30 -> 12") < out.index("| variant |")


def test_corpus_and_tokenizer_refused_other_settings_only_shown(tmp_path, capsys):
    a = results(tmp_path / "a", "a")
    assert main(["compare", str(a), str(results(tmp_path / "b", "b", **{"corpus.tokenizer": "gpt2"}))]) == 2
    assert "tokenizer (corpus.tokenizer: 'byte' -> 'gpt2')" in capsys.readouterr().err
    assert main(["compare", str(a), str(results(tmp_path / "c", "c", **{"train.lr": 1e-3}))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config differences (A -> B):\n  train.lr: 0.003 -> 0.001\n")
    assert main(["compare", str(a), str(results(tmp_path / "d", "d"))]) == 0
    assert capsys.readouterr().out.startswith("config: A and B ran the same suite settings\n")
