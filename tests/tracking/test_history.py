"""history.jsonl: what each attempt of a run says about why it started, from what the run directory holds."""

from __future__ import annotations

from distgan.tracking import history

LAUNCH = 1000.0


def test_a_new_run_starts_and_a_same_width_restart_is_a_failure(tmp_path):
    assert history.attempt_start(tmp_path, 0, 2, None, LAUNCH) == ("started", "new run on 2 workers")
    history.append(tmp_path, history.STARTED, 0, 2, "new run on 2 workers", LAUNCH)
    event, why = history.attempt_start(tmp_path, 30, 2, 2, LAUNCH)
    assert event == "resumed" and why == "restarted on 2 workers after a worker failure"


def test_widths_and_causes_of_resizes(tmp_path):
    history.append(tmp_path, history.STARTED, 0, 2, "new run on 2 workers", LAUNCH)
    event, why = history.attempt_start(tmp_path, 30, 1, 2, LAUNCH)
    assert event == "resized" and why.startswith("shrunk from 2 to 1 worker after a worker failure")
    history.append(tmp_path, event, 30, 1, why, LAUNCH)
    event, why = history.attempt_start(tmp_path, 50, 2, 1, LAUNCH)
    assert event == "resized" and why == "grown from 1 to 2 workers by Ray Train's resize: capacity returned"
    history.append(tmp_path, event, 50, 2, why, LAUNCH)
    # A preemption notice, then a narrower group: the notice is the cause.
    history.append(tmp_path, history.PREEMPTED, 60, 2, "a worker was told to stop (SIGTERM)", LAUNCH)
    assert "after a preemption notice" in history.attempt_start(tmp_path, 60, 1, 2, LAUNCH)[1]
    # Another command resuming the run says so, whatever the width.
    assert history.attempt_start(tmp_path, 60, 2, 2, LAUNCH + 5)[1] == "restarted on 2 workers by a new distgan train"
    # ... and a width it chose is its own, not a loss: nothing was lost, no capacity returned.
    assert history.attempt_start(tmp_path, 60, 1, 2, LAUNCH + 5) == ("resized", "shrunk from 2 to 1 worker by a new distgan train")
    assert history.attempt_start(tmp_path, 60, 3, 2, LAUNCH + 5) == ("resized", "grown from 2 to 3 workers by a new distgan train")
    rows = history.read(tmp_path)
    assert [r["event"] for r in rows] == ["started", "resized", "resized", "preempted"]
    assert [r["world_size"] for r in rows] == [2, 1, 2, 2] and all(r["launch"] == LAUNCH for r in rows)


def test_a_run_without_history_reads_as_empty(tmp_path):
    assert history.read(tmp_path) == []
