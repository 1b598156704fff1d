"""``train.collective_timeout_s`` reaches both places a rank can wait on another: torch's process group (through
``TorchConfig.timeout_s``) and Ray Train's report barrier (through the environment the Train controller copies).
The stalls themselves are injected in ``tests/e2e/test_hangs.py``."""

from __future__ import annotations

import os
import re

import pytest

from distgan.persist import rundir
from distgan.config import Config, ConfigError
from distgan import load_config
from distgan.launch.train import REPORT_BARRIER_TIMEOUT_ENV, build_trainer


def test_default_is_ten_minutes():
    assert Config().train.collective_timeout_s == 600.0


@pytest.mark.parametrize("text, needle", [
    ("0", "must be > 0"), ("-5", "must be > 0"), (".nan", "finite"), (".inf", "finite"),
    ("86401", "at most 86400 (a day)"), ("soon", "expected a number"),
])
def test_bad_timeouts_are_refused(text, needle):
    with pytest.raises(ConfigError, match=rf"train.collective_timeout_s: .*{re.escape(needle)}"):
        load_config(None, (f"train.collective_timeout_s={text}",))


def test_build_trainer_sets_the_process_group_and_report_barrier_timeouts(tmp_path, monkeypatch):
    monkeypatch.setenv(REPORT_BARRIER_TIMEOUT_ENV, "None")  # a value already there: the config wins
    cfg = load_config(None, ("train.collective_timeout_s=42.5",))
    run = rundir.prepare(tmp_path, "run", cfg)
    trainer = build_trainer(cfg, run, tmp_path, use_gpu=False, callbacks=[])
    assert trainer.backend_config.timeout_s == 42.5 and trainer.backend_config.backend == "gloo"
    assert float(os.environ[REPORT_BARRIER_TIMEOUT_ENV]) == 42.5
