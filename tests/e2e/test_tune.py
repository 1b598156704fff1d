"""``distgan tune`` on the shared local Ray: every trial a real distributed run of the tiny DCGAN.

- ASHA over 3 trials with 2 workers each: poor trials stop early, the best
  trial's config retrains to the same FID with ``distgan train``, its
  generator is exported, and each trial is a W&B run grouped under the sweep (a stopped one's offline log
  holding what it logged before its workers were killed).
- PBT over 2 one-worker trials, the whole sweep kept in an S3 bucket: after an
  exploit, the trial's G and D optimizers hold its mutated learning rates (as the
  workers report them), and the sweep's state, trials and summary are in the bucket.
- A trial that cannot fit the cluster is refused before anything runs.
The kill-and-resume test is in test_tune_resume.py.
"""

from __future__ import annotations

import json

import pytest

import distgan
from distgan.config import ConfigError
from distgan import load_config
from distgan.launch.tune import run_tune
from distgan.persist.storage import Storage
from distgan.tracking.jsonl import read_metrics
from distgan.tracking.wandb_logger import FLUSH_S
from wandb_log import logged_steps, read_log

pytestmark = pytest.mark.ray

SWEEP = ("train.steps=40", "train.batch_size=16", "train.log_every=10", "train.checkpoint_every=20",
         "train.sample_every=40", "model.g_width=16", "model.d_width=16", "model.latent_dim=16",
         "eval.every=20", "eval.n=200", "eval.metrics=fid,kid", "eval.kid_subsets=10", "eval.kid_subset_size=100",
         "tune.seed=0")
RUNG = 200
"""ASHA's one rung in the ASHA test (its grace period; the next, at twice that, is past its 300 steps)."""
LRS = "tune.space={optim.g.lr: {loguniform: [1.0e-5, 3.0e-3]}, optim.d.lr: {loguniform: [1.0e-5, 3.0e-3]}}"


def test_asha_sweep_stops_poor_trials_and_its_best_config_retrains_to_the_same_fid(local_ray, tmp_path):
    # A grid runs in order: two useful learning rates, then one that leaves G's weights where they
    # started, which ASHA must stop at its rung (step 200) once the useful ones have set the bar there.
    # (At step 20 FID cannot tell them apart yet: every G is still close to its initialisation.) The rung is
    # that late so that a stopped trial has logged for a few seconds before its workers are killed (100
    # steps take about two seconds here), which the W&B check below needs.
    cfg = load_config(None, SWEEP + ("train.steps=300", "eval.every=100", "train.checkpoint_every=100",
                                     "train.sample_every=300",
                                     "tune.space={optim.g.lr: {grid: [4.0e-4, 8.0e-4, 1.0e-8]}}",
                                     "tune.num_samples=1", "tune.scheduler.type=asha",
                                     f"tune.scheduler.grace_period={RUNG}"))
    result = run_tune(cfg, name="asha", storage=tmp_path)
    sweep = tmp_path / "asha"
    rows = result.rows
    assert len(rows) == 3 and all(r["fid"] is not None for r in rows)
    stopped = [r for r in rows if r["status"] == "stopped early"]
    # The useless rate stops; ASHA (keeping the better half at the rung) may stop the second useful one too.
    assert 1e-8 in {r["values"]["optim.g.lr"] for r in stopped}, rows
    assert all(r["step"] == RUNG for r in stopped)
    assert result.best["status"] == "finished" and result.best["step"] == 300
    rung_fid = {r["trial"]: next(m["fid"] for m in read_metrics(sweep / "trials" / r["trial"] / "metrics.jsonl")
                                 if m["step"] == RUNG and "fid" in m) for r in rows}
    assert all(rung_fid[r["trial"]] > rung_fid[result.best["trial"]] for r in stopped)
    assert result.best["fid"] == min(r["fid"] for r in rows if r["status"] == "finished")
    for row in stopped:  # a stopped trial really stopped (a few steps after the rung's report), unfinished
        trial = sweep / "trials" / row["trial"]
        logged = read_metrics(trial / "metrics.jsonl")
        assert logged[-1]["step"] < 300 and not (trial / "generator.json").exists()
        # Its workers were killed, never reaching W&B's finish: its offline log still holds every step logged
        # more than two flush intervals before the last one (W&B's default interval had left it empty).
        (log_file,) = (trial / "wandb").glob("offline-run-*/run-*.wandb")
        flushed = [m["step"] for m in logged if m["time"] < logged[-1]["time"] - 2 * FLUSH_S]
        assert flushed and set(flushed) <= set(logged_steps(read_log(log_file))), (flushed, log_file)
    assert json.loads((sweep / "results.json").read_text())["best"]["trial"] == result.best["trial"]

    best_cfg = load_config(sweep / "best_config.yaml")
    assert best_cfg.optim.g.lr == pytest.approx(result.best["values"]["optim.g.lr"])
    assert (sweep / "best" / "generator.safetensors").is_file()
    rerun = distgan.train(best_cfg, name="rerun", storage=tmp_path, progress=False)
    assert rerun.metrics["fid"] == pytest.approx(result.best["fid"], rel=1e-6)

    # W&B: one offline run per trial, in the sweep's group, with the trial's values in its config.
    trial_dir = sweep / "trials" / result.best["trial"]
    (record,) = (trial_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()
    assert b"asha" in data and b"tune/optim.g.lr" in data


def test_pbt_sweep_in_a_bucket_puts_the_mutated_learning_rates_into_both_optimizers(local_ray, s3_storage,
                                                                                    tmp_path, monkeypatch):
    # The whole sweep is kept in an S3 bucket (moto's server on 127.0.0.1 stands in for the cloud store):
    # Tune's state, every trial's run directory and checkpoints, and PBT's hand-over checkpoints.
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, SWEEP + (LRS, "train.steps=40", "scaling.num_workers=1", "tune.num_samples=2",
                                     "tune.scheduler.type=pbt", "tune.scheduler.perturbation_interval=20",
                                     "tune.scheduler.quantile_fraction=0.5", "tune.scheduler.synch=true",
                                     "deepspeed.zero_stage=2", "tracking.wandb=false"))
    result = run_tune(cfg, name="pbt", storage=s3_storage)
    sweep = Storage.parse(s3_storage).child("pbt").as_dir()
    assert result.location == sweep.display() and result.location.startswith("s3://")
    exploited = 0
    for row in result.rows:
        trial = sweep.child(f"trials/{row['trial']}")
        records = [json.loads(line) for line in trial.read_text("metrics.jsonl").splitlines()]
        records = [r for r in records if "lr_g" in r]
        final = row["values"]
        # The optimizers report the trial's final values at the end, whatever the checkpoint they started from.
        assert records[-1]["lr_g"] == pytest.approx(final["optim.g.lr"], rel=1e-9)
        assert records[-1]["lr_d"] == pytest.approx(final["optim.d.lr"], rel=1e-9)
        attempts = [d for d in trial.child("attempts").subdirs() if d.startswith("attempt_")]
        assert any(d.startswith("checkpoint_") for d in trial.child(f"attempts/{attempts[0]}").subdirs())
        if records[0]["lr_g"] != pytest.approx(final["optim.g.lr"], rel=1e-9):
            # Restarted from the other trial's checkpoint, which its workers downloaded from Tune's copy.
            exploited += 1
            assert len(attempts) >= 2
    assert exploited >= 1, "PBT never exploited: the test proves nothing"
    assert all(r["step"] == 40 for r in result.rows)
    # The summary is in the bucket, and copied to this machine; nothing was written in the working directory.
    saved = json.loads(sweep.read_text("results.json"))
    assert saved["best"]["trial"] == result.best["trial"]
    assert sweep.is_file("best_config.yaml") and sweep.is_file("best/generator.safetensors")
    assert sweep.is_dir("tune") and sweep.is_file("sweep.yaml")
    assert (result.sweep_dir / "best" / "generator.safetensors").read_bytes() == \
        sweep.read_bytes("best/generator.safetensors")
    assert load_config(result.sweep_dir / "best_config.yaml").optim.g.lr == \
        pytest.approx(result.best["values"]["optim.g.lr"])
    assert list(tmp_path.iterdir()) == []


def test_a_trial_larger_than_the_cluster_is_refused_before_anything_starts(local_ray, tmp_path):
    cfg = load_config(None, SWEEP + (LRS, "scaling.num_workers=5"))
    with pytest.raises(ConfigError, match=r"scaling.num_workers: a trial needs 5 CPUs .* the Ray cluster has 4"):
        run_tune(cfg, name="too-big", storage=tmp_path)
    assert not (tmp_path / "too-big").exists()
