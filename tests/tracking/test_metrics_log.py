"""``metrics.jsonl`` as ``MetricsLog`` writes it and ``read_metrics`` reads it back: non-finite values, a
last line cut short by a crash, a line damaged before it."""

from __future__ import annotations

import pytest

from distgan.tracking import history
from distgan.tracking.jsonl import JsonlError, MetricsLog, is_non_finite, read_metrics


def cut_short(path, text: str = '{"step": 40, "loss_g": 0.') -> None:
    with path.open("a") as f:
        f.write(text)


def test_non_finite_values_are_written_as_null_and_read_back_as_non_finite(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"step": 1, "loss_g": float("nan"), "loss_d": float("inf"), "fid": 3.0})
    assert '"loss_g": null' in log.path.read_text()
    (record,) = read_metrics(log.path)
    assert is_non_finite(record, "loss_g") and is_non_finite(record, "loss_d")
    assert not is_non_finite(record, "fid") and not is_non_finite(record, "psnr")  # psnr was never logged


def test_a_last_line_cut_short_is_left_out(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (10, 20, 30):
        log.append({"step": step, "loss_g": 1.0})
    cut_short(log.path)
    assert [r["step"] for r in read_metrics(log.path)] == [10, 20, 30]
    cut_short(log.path, "\n\xff\xfe")  # bytes cut inside a character
    with pytest.raises(JsonlError):  # the earlier torn line is no longer the last
        read_metrics(log.path)


def test_a_line_damaged_before_the_last_names_its_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\n\n{"step": 20, "lo\n{"step": 30}\n')
    with pytest.raises(JsonlError, match=r"metrics.jsonl: line 3 is not a JSON object") as caught:
        read_metrics(path)
    assert str(path) in str(caught.value)


def test_a_rewind_after_a_crash_drops_the_torn_line_so_the_next_record_reads(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (10, 20, 30):
        log.append({"step": step, "loss_g": float("nan") if step == 20 else 1.0})
    cut_short(log.path)
    log.rewind(20)
    log.append({"step": 30, "loss_g": 0.9})
    records = read_metrics(log.path)
    assert [r["step"] for r in records] == [10, 20, 30] and records[1]["loss_g"] is None


def test_history_leaves_out_a_last_row_cut_short(tmp_path):
    history.append(tmp_path, history.STARTED, 0, 2, "new run", 0.0)
    cut_short(tmp_path / history.FILE, '{"time": 1.0, "event": "fin')
    assert [r["event"] for r in history.read(tmp_path)] == [history.STARTED]
