"""Atomic writes: a reader sees the old file or the new one, never a torn one."""
import json
import os

import pytest

from moebench import io as R


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "a" / "summary.json"
    R.atomic_write_json(p, {"x": 1})
    R.atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [f.name for f in p.parent.iterdir()] == ["summary.json"]  # no temp files left behind


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "summary.json"
    R.atomic_write_json(p, {"done": True})

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        R.atomic_write_json(p, {"done": False})
    assert json.loads(p.read_text()) == {"done": True}
    assert [f.name for f in tmp_path.iterdir()] == ["summary.json"]


def test_unserialisable_value_leaves_no_file(tmp_path):
    p = tmp_path / "s.json"
    with pytest.raises(TypeError):
        R.atomic_write_json(p, {"x": object()})
    assert not p.exists()


def test_torn_metrics_line_is_ignored(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert R.read_metrics(p) == [{"step": 1}, {"step": 2}]
