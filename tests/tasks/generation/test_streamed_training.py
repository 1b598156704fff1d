"""The real loop (one rank, real DeepSpeed engines, no Ray) trains the same from a streamed folder as from the same
folder held in memory, logs how long it waited for data, and resumes a streamed run exactly."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from distgan.tracking.jsonl import read_metrics
from local_runs import make_trainer, params, small_config


def folder_config(folder, stream: bool, steps: int = 6):
    cfg = small_config(steps=steps)
    cfg.data.path, cfg.data.stream, cfg.data.resolution = str(folder), stream, 8
    cfg.eval.every = 0
    return cfg


def make_folder(root):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):  # 2.5 batches of 16 per epoch: six steps cross two epoch boundaries
        Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


def test_streamed_and_in_memory_folders_train_the_same(process_group, tmp_path):
    folder = make_folder(tmp_path / "imgs")
    finals = {}
    for stream in (False, True):
        trainer, _ = make_trainer(folder_config(folder, stream), tmp_path, f"run-{stream}")
        trainer.run()
        finals[stream] = params(trainer.engine_g) + params(trainer.engine_d)
        records = read_metrics(tmp_path / f"run-{stream}" / "metrics.jsonl")
        assert [r["step"] for r in records] == [2, 4, 6]
        assert all(r["data_wait_s"] >= 0 and r["data_skipped"] == 0 for r in records)
    assert all(torch.equal(a, b) for a, b in zip(finals[False], finals[True]))


def test_a_streamed_run_resumes_exactly(process_group, tmp_path):
    folder = make_folder(tmp_path / "imgs")
    whole, _ = make_trainer(folder_config(folder, True), tmp_path, "whole")
    whole.run()
    first, session = make_trainer(folder_config(folder, True, steps=2), tmp_path, "first")
    first.run()  # stops at step 2 with a checkpoint, batches decoded ahead left unused
    second, _ = make_trainer(folder_config(folder, True), tmp_path, "second", resume_from=session.checkpoints[-1])
    second.run()
    assert all(torch.equal(a, b) for a, b in zip(params(whole.engine_g), params(second.engine_g)))
