"""The GPU path on one CUDA device: DeepSpeed's CUDA engines (FusedAdam built by nvcc), bf16 and fp16
with loss scaling, nccl, and G_ema, samples and evaluation on the GPU.

CI has no GPU, so these are skipped there (with the reason); run them on a GPU machine with
``pytest tests/runtime/test_gpu.py``. Each case runs the training loop in a fresh process, because the test
session's own process group is gloo on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tiny_run import OVERRIDES

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from distgan.core.loopback_group import init_local_group
    torch.cuda.set_device(0)
    init_local_group("nccl")  # store and NCCL's sockets on 127.0.0.1 only
    from distgan import load_config
    from distgan.persist.export import generate, load_generator
    from distgan.runtime.loop import RunInfo
    from distgan.tasks import build_trainer
    from sessions import LocalSession

    cfg = load_config(None, tuple(json.loads(sys.argv[2])))
    run = Path(sys.argv[1])
    run.mkdir()
    session = LocalSession(run / "store", device=torch.device("cuda"))
    trainer = build_trainer(cfg, RunInfo(run, "gpu", "gpu"), session)
    trainer.run()
    g, _ = load_generator(run)
    print("RESULT " + json.dumps({
        "reports": session.reports,
        "g_device": str(next(trainer.engine_g.module.parameters()).device),
        "ema_device": str(next(trainer.ema.module.parameters()).device),
        "g_dtype": str(next(trainer.engine_g.module.parameters()).dtype),
        "optimizer": type(trainer.engine_g.optimizer).__name__,
        "export_finite": bool(torch.isfinite(generate(g, 8, seed=0)).all()),
    }))
""")


@pytest.mark.parametrize("precision,stage", [("bf16", 2), ("fp16", 0), ("fp32", 3)])
def test_training_and_evaluation_on_one_gpu(precision, stage, tmp_path):
    overrides = OVERRIDES + ("train.steps=20", "scaling.num_workers=1", "tracking.wandb=false",
                             "scaling.use_gpu=true", f"deepspeed.precision={precision}",
                             f"deepspeed.zero_stage={stage}")
    tests_dir = Path(__file__).resolve().parents[1]  # the helper modules (sessions.py)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run"), json.dumps(overrides)],
                          capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["g_device"].startswith("cuda") and out["ema_device"].startswith("cuda")
    expected = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}[precision]
    assert out["g_dtype"] == expected
    losses = [r["loss_d"] for r in out["reports"] if "loss_d" in r] + \
             [r["loss_g"] for r in out["reports"] if "loss_g" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    last = out["reports"][-1]
    assert last["step"] == 20 and math.isfinite(last["fid"]) and last["fid"] > 0
    assert out["export_finite"]
    print(precision, stage, out["optimizer"], {k: last[k] for k in ("fid", "kid", "precision", "recall")})
