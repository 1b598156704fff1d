"""Files that carry a pickle payload are refused, never executed (in-process, DeepSpeed, world size 1).

DeepSpeed 0.19 unpickles its checkpoint files in full (weights-only loading off); distgan looks at every
pickle before DeepSpeed does and makes DeepSpeed's own reads weights-only. Each crafted file here names
``io.open`` on a marker path: run the unsafe way it creates the marker, so "marker absent" means the payload
never ran. Exports are safetensors, never unpickled. Pretrained-weights files (``eval.inception_weights``,
``loss.perceptual.vgg_weights``) are covered where they are read: tests/metrics/test_inception.py
``test_pickled_code_is_never_run`` and tests/gan/test_perceptual.py.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from distgan.persist import checkpoint
from distgan.persist import safety as checkpoint_safety
from distgan.persist import rundir
from distgan.config import ConfigError
from distgan.persist.export import check_init_from, load_generator
from local_runs import make_trainer, optimizer_tensors, params, same, small_config
from test_checkpoint_fallback import as_ray_run, one_worker

MODEL_STATES = "G/state/mp_rank_00_model_states.pt"
OPTIM_STATES = "D/state/zero_pp_rank_0_mp_rank_00_optim_states.pt"


class _Payload:
    """Unpickling this creates a file: stands in for code a checkpoint should never get to run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_the_payload_runs_when_unpickled_the_unsafe_way(tmp_path):
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(_Payload(live))).close()
    assert live.exists()


@pytest.fixture(scope="module")
def saved(process_group, tmp_path_factory) -> Path:
    """Checkpoints 2 and 4 of a ZeRO-2 run: model states and optimizer shards in separate files."""
    tmp = tmp_path_factory.mktemp("zero2")
    trainer, session = make_trainer(small_config(2, steps=4), tmp, "run")
    trainer.run()
    assert [p.name for p in session.checkpoints] == ["checkpoint_000002", "checkpoint_000004"]
    return session.store


@pytest.fixture
def store(saved, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(saved, copy)
    return copy


def genuine(path: Path) -> dict:
    with torch.serialization.safe_globals(checkpoint_safety.deepspeed_classes()):
        return torch.load(path, map_location="cpu", weights_only=True)


def fix_manifest(ckpt: Path, path: Path) -> None:
    """Record the crafted file's size, as someone who rewrites a checkpoint would: only the pickle can tell."""
    manifest = ckpt / "manifest_rank0.json"
    record = json.loads(manifest.read_text())
    record["files"][str(path.relative_to(ckpt))] = path.stat().st_size
    manifest.write_text(json.dumps(record))


def plant(ckpt: Path, rel: str, marker: Path, how: str = "torch.save", manifest: bool = True) -> Path:
    """Put a payload into ``ckpt/rel``: inside the genuine state (``torch.save``), or as a bare pickle."""
    path = ckpt / rel
    if how == "torch.save":
        state = genuine(path)
        state["extra"] = _Payload(marker)
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps({"module": _Payload(marker)}))
    if manifest:
        fix_manifest(ckpt, path)
    return path


CRAFTED = {"model states, inside the genuine dict": (MODEL_STATES, "torch.save", True),
           "optimizer states, inside the genuine dict": (OPTIM_STATES, "torch.save", True),
           "model states, a bare pickle": (MODEL_STATES, "pickle", True),
           "model states, manifest not updated": (MODEL_STATES, "torch.save", False)}


@pytest.mark.parametrize("case", CRAFTED)
def test_a_payload_in_a_deepspeed_file_stops_the_resume_unrun(store, tmp_path, case):
    rel, how, manifest = CRAFTED[case]
    marker = tmp_path / "marker"
    bad = plant(store / "checkpoint_000004", rel, marker, how, manifest)
    trainer, _ = make_trainer(small_config(2, steps=6), tmp_path, "resumed", resume_from=store / "checkpoint_000004")
    with pytest.raises(checkpoint.UnsafeCheckpoint) as caught:
        trainer.restore()
    message = str(caught.value)
    assert f"checkpoint file {bad} carries pickled code: it names io.open" in message, message
    assert "checkpoint_000004 (an empty checkpoint is refused" in message
    assert not marker.exists()
    # checkpoint_000002 is complete and clean, but a file planted in the run directory stops the run
    assert trainer.state.step == 0


def test_the_driver_stops_before_ray_starts(store, tmp_path):
    marker = tmp_path / "marker"
    run = as_ray_run(store, "checkpoint_000004")
    bad = plant(run / "checkpoint_000004", OPTIM_STATES, marker)
    with pytest.raises(ConfigError, match=rf"cannot be resumed: checkpoint file {bad} carries pickled code"):
        rundir.check_resume(run, "r", one_worker())
    assert not marker.exists()


def test_deepspeeds_own_reads_are_weights_only(store, tmp_path):
    """Past the look before loading (a file swapped in between, say), DeepSpeed's read refuses it too."""
    marker = tmp_path / "marker"
    ckpt = store / "checkpoint_000004"
    bad = plant(ckpt, OPTIM_STATES, marker)
    trainer, _ = make_trainer(small_config(2, steps=6), tmp_path, "resumed")
    with pytest.raises(checkpoint.UnsafeCheckpoint, match=f"checkpoint file {bad} carries pickled code"):
        checkpoint.load(ckpt, trainer.engine_g, trainer.engine_d, rank=0, world_size=1)  # no check_pickles
    assert not marker.exists()
    assert "load" not in vars(trainer.engine_d.checkpoint_engine)  # DeepSpeed's own reader is back afterwards


@pytest.mark.parametrize("name", ["generator.safetensors", "rng_rank0.safetensors"])
def test_a_pickle_in_place_of_a_checkpoints_safetensors_file_stops_the_resume(store, tmp_path, name):
    marker = tmp_path / "marker"
    ckpt = store / "checkpoint_000004"
    path = ckpt / name
    torch.save({"weight": _Payload(marker)}, path)
    fix_manifest(ckpt, path)
    trainer, _ = make_trainer(small_config(2, steps=6), tmp_path, "resumed", resume_from=ckpt)
    with pytest.raises(checkpoint.UnsafeCheckpoint, match=f"checkpoint file {path} carries pickled code"):
        trainer.restore()
    assert not marker.exists()


def test_garbage_is_still_corruption_and_falls_back(store, tmp_path):
    """Only a pickle that names code stops the run; a damaged one is refused and the one before resumed."""
    path = store / "checkpoint_000004" / MODEL_STATES
    path.write_bytes(b"\x80\x02" + bytes(range(256)) * 4)  # opens like a pickle, but is none
    fix_manifest(store / "checkpoint_000004", path)
    trainer, _ = make_trainer(small_config(2, steps=6), tmp_path, "resumed", resume_from=store / "checkpoint_000004")
    trainer.restore()
    assert trainer.state.step == 2


# -- exported generators -------------------------------------------------------------------------------------


@pytest.fixture
def exported(saved, tmp_path) -> Path:
    """A run directory's final export: generator.safetensors + generator.json."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("generator.safetensors", "generator.json"):
        shutil.copy(saved / "checkpoint_000004" / name, run / name)
    load_generator(run)  # genuine: loads
    return run


def test_a_pickle_named_generator_safetensors_is_refused_unrun(exported, tmp_path):
    marker = tmp_path / "marker"
    weights = exported / "generator.safetensors"
    torch.save({"net.0.weight": _Payload(marker)}, weights)
    with pytest.raises(ValueError, match=rf"{weights} is not a safetensors file \(it holds a pickle .* which "
                                         rf"distgan never unpickles"):
        load_generator(exported)
    weights.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="it holds a pickle"):
        load_generator(weights)
    cfg = small_config()
    cfg.train.init_from = str(exported)
    with pytest.raises(ConfigError, match=rf"train.init_from: {weights} is not a safetensors file"):
        check_init_from(cfg)  # before Ray starts
    assert not marker.exists()


def test_a_pt_generator_file_is_never_loaded(exported, tmp_path):
    marker = tmp_path / "marker"
    path = exported / "generator.pt"
    torch.save({"net.0.weight": _Payload(marker)}, path)
    with pytest.raises(FileNotFoundError, match=r"generator.pt is not a .safetensors generator file .*never "
                                                r"unpickles a .pt or .pth file"):
        load_generator(path)
    assert not marker.exists()


# -- genuine checkpoints still load, through weights-only reads only -------------------------------------------


@pytest.mark.parametrize("stage,precision", [(0, "fp32"), (1, "fp32"), (2, "fp32"), (3, "fp32"), (2, "bf16")])
def test_genuine_checkpoints_load_with_weights_only_reads(process_group, tmp_path, monkeypatch, stage, precision):
    cfg = small_config(stage, steps=2)
    cfg.deepspeed.precision = precision
    trainer, session = make_trainer(cfg, tmp_path, "a")
    trainer.run()
    fresh, _ = make_trainer(cfg, tmp_path, "b", resume_from=session.checkpoints[-1])

    reads = []
    load = torch.load

    def spy(path, *args, **kwargs):
        reads.append((Path(path).name, kwargs.get("weights_only")))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    fresh.restore()
    monkeypatch.undo()
    assert reads and all(weights_only is True for _, weights_only in reads), reads
    assert fresh.state.step == 2
    assert same(params(fresh.engine_g), params(trainer.engine_g))
    assert same(params(fresh.engine_d), params(trainer.engine_d))
    assert same(optimizer_tensors(fresh.engine_g), optimizer_tensors(trainer.engine_g))
    assert same(optimizer_tensors(fresh.engine_d), optimizer_tensors(trainer.engine_d))
