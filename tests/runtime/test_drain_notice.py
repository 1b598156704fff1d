"""A node being drained for preemption (Ray Train's ``get_preemption_info``) makes every rank checkpoint at once
and train on; the loop asks every ``train.preemption_check_every`` steps, and only until the first notice.

In-process over ``LocalSession``, whose notice stands in for Ray Core's drain state (the 2-node cluster test
drains a real node)."""

from __future__ import annotations

from distgan.tracking import history
from local_runs import make_trainer, small_config


def test_the_first_notice_checkpoints_that_step_and_training_goes_on(process_group, tmp_path):
    cfg = small_config(steps=10)
    cfg.train.checkpoint_every = 100
    cfg.train.preemption_check_every = 3
    trainer, session = make_trainer(cfg, tmp_path, "drained")
    session.notice_at = 2  # quiet at step 3, a node draining at step 6
    state = trainer.run()

    assert state.step == 10  # the run went on to its end
    assert [p.name for p in session.checkpoints] == ["checkpoint_000006", "checkpoint_000010"]
    assert session.notice_calls == 2, "asked at steps 3 and 6, then no more: one checkpoint per attempt"
    rows = history.read(tmp_path / "drained")
    assert [(r["event"], r["step"]) for r in rows] == [("started", 0), ("preempted", 6), ("finished", 10)]
    assert "a node being preempted; checkpointed step 6, training on until it goes" == rows[1]["why"]


def test_a_notice_at_a_checkpoint_step_does_not_write_it_twice(process_group, tmp_path):
    cfg = small_config(steps=8)
    cfg.train.checkpoint_every = 4
    cfg.train.preemption_check_every = 4
    trainer, session = make_trainer(cfg, tmp_path, "at-checkpoint")
    session.notice_at = 1
    trainer.run()
    assert [p.name for p in session.checkpoints] == ["checkpoint_000004", "checkpoint_000008"]
    assert session.notice_calls == 1


def test_zero_never_asks(process_group, tmp_path):
    cfg = small_config(steps=4)
    cfg.train.preemption_check_every = 0
    trainer, session = make_trainer(cfg, tmp_path, "never")
    session.notice_at = 1
    trainer.run()
    assert session.notice_calls == 0
    assert [r["event"] for r in history.read(tmp_path / "never")] == ["started", "finished"]
