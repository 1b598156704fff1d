"""The start-up breakdown: phases between consecutive marks, written once by rank 0."""

import json

from distgan.tracking.startup import LABELS, StartupClock, format_breakdown, phases


def test_phases_are_the_gaps_between_present_marks_in_order():
    marks = {"start": 100.0, "ray_ready": 104.0, "worker_start": 110.0, "data": 110.5, "engine_g": 113.0,
             "first_step": 114.0}
    spent = phases(marks)
    assert list(spent) == ["ray_ready", "worker_start", "data", "engine_g", "first_step"]
    assert spent == {"ray_ready": 4.0, "worker_start": 6.0, "data": 0.5, "engine_g": 2.5, "first_step": 1.0}
    text = format_breakdown(marks)
    assert text.startswith("first training step 14.0 s after start:") and LABELS["engine_g"] in text


def test_only_rank_zero_writes_and_only_once(tmp_path):
    rank0, rank1 = StartupClock({"start": 1.0}), StartupClock({"start": 1.0})
    for clock in (rank0, rank1):
        clock.mark("worker_start")
    rank1.first_step_done(None)
    assert not (tmp_path / "startup.json").exists() and "first_step" in rank1.marks
    rank0.first_step_done(tmp_path)
    written = json.loads((tmp_path / "startup.json").read_text())
    first = written["marks"]["first_step"]
    rank0.first_step_done(tmp_path)  # a later step changes nothing
    assert json.loads((tmp_path / "startup.json").read_text())["marks"]["first_step"] == first
    assert set(written["phases"]) == {"worker_start", "first_step"}
