"""Which generator a run directory stands for (``find_generator``: sample, evaluate, export, serve and
``train.init_from`` all go through it), and a description that cannot be what it must be named as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distgan.cli import main as cli_main
from distgan.persist.export import META, WEIGHTS, GeneratorFileError, find_generator, load_generator
from tiny_generators import save_tiny


def test_the_export_unless_a_newer_checkpoint_exists(tmp_path):
    run = tmp_path / "run"
    save_tiny(run, "dcgan", step=60)
    save_tiny(run / "checkpoint_000060", "dcgan", step=60)
    assert find_generator(run) == run / WEIGHTS  # the export of the same step is the one the run made
    assert find_generator(f"file://{run}") == run.resolve() / WEIGHTS  # a file:// URI is the directory
    # The finished run resumed to more steps: its old export is older than the checkpoint now written.
    save_tiny(run / "checkpoint_000090", "dcgan", seed=1, step=90)
    assert find_generator(run) == run / "checkpoint_000090" / WEIGHTS
    assert load_generator(run)[1]["step"] == 90


def test_checkpoints_are_ordered_by_number_not_name(tmp_path):
    run = tmp_path / "run"
    for step in (999999, 1000000):
        save_tiny(run / f"checkpoint_{step:06d}", "dcgan", step=step)
    assert find_generator(run).parent.name == "checkpoint_1000000"


def test_a_trial_stopped_early_is_found_under_its_attempts(tmp_path):
    """A trial that the scheduler stopped never exported: its checkpoints are under attempts/attempt_NNN."""
    trial = tmp_path / "sweep" / "trials" / "t3"
    save_tiny(trial / "attempts" / "attempt_000" / "checkpoint_000060", "dcgan", step=60)
    save_tiny(trial / "attempts" / "attempt_001" / "checkpoint_000080", "dcgan", step=80)
    (trial / "attempts" / "attempt_001" / "checkpoint_000100").mkdir()  # being written: no weights yet
    assert find_generator(trial) == trial / "attempts" / "attempt_001" / "checkpoint_000080" / WEIGHTS
    assert cli_main(["sample", str(trial), "--n", "2", "--out", str(tmp_path / "s.npz")]) == 0


@pytest.mark.parametrize("damage, named", [
    (lambda text: text[:len(text) // 2], "cannot be read as JSON"),
    (lambda text: json.dumps({**json.loads(text), "format": "other"}), "is not a distgan generator description"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "model"}), "lacks 'model'"),
    (lambda text: "[1, 2]", "is not a distgan generator description"),
], ids=["cut", "format", "no-model", "a-list"])
def test_a_damaged_description_is_named_and_the_commands_exit_2(tmp_path, capsys, damage, named):
    run = save_tiny(tmp_path / "run", "dcgan")
    meta = run / META
    meta.write_text(damage(meta.read_text()))
    with pytest.raises(GeneratorFileError, match=named) as refused:
        load_generator(run)
    assert str(meta) in str(refused.value)
    for argv in (["sample", str(run), "--out", str(tmp_path / "s.png")],
                 ["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "g.pt")],
                 ["evaluate", str(run), "--n", "16", "--features", "identity"]):
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert named in err and str(meta) in err and "Traceback" not in err, argv
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "g.pt").exists()
