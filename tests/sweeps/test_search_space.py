"""``tune:`` sections: domains, keys and values checked when the config loads; the sweep's bookkeeping."""

from __future__ import annotations

import pytest
from ray import tune

from distgan.sweeps import space as search_space
from distgan.config import ConfigError
from distgan.config import load_config as raw_config
from distgan import load_config
from distgan.launch.sweep_results import best_row, format_rows
from distgan.launch.tune import trial_resources
from distgan.sweeps.checks import check_sweep, mode
from distgan.sweeps.space import to_tune_domain

LR = "tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}}"


def sweep(*overrides: str):
    return check_sweep(load_config(None, ("train.checkpoint_every=500",) + overrides))


def test_a_valid_space_loads_with_every_domain():
    cfg = sweep("tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}, optim.d.lr: {uniform: [1.0e-4, 2.0e-4]},"
                " train.n_critic: {randint: [1, 3]}, model.g_width: {choice: [16, 32]}, loss.type: {grid: [hinge,"
                " nonsaturating]}}", "tune.scheduler.type=asha")
    space = search_space.parse_space(cfg.tune.space)
    assert [d.kind for d in space.values()] == ["loguniform", "uniform", "randint", "choice", "grid"]
    assert space["optim.g.lr"].values == (1e-4, 1e-3)  # YAML's "1.0e-4" strings become numbers
    assert space["train.n_critic"].examples() == (1, 2)  # randint's high end is exclusive
    assert isinstance(to_tune_domain(space["optim.g.lr"]), tune.search.sample.Float)
    assert to_tune_domain(space["loss.type"]) == {"grid_search": ["hinge", "nonsaturating"]}


@pytest.mark.parametrize("override,message", [
    ("tune.space={optim.g.lrr: {loguniform: [1.0e-4, 1.0e-3]}}", "did you mean 'optim.g.lr'"),
    ("tune.space={model.g_width: {choice: [16, -4]}}", "tune.space.model.g_width = -4: model.g_width: must be > 0"),
    ("tune.space={loss.type: {choice: [hinge, hing]}}", "did you mean 'hinge'"),
    ("tune.space={optim.g.lr: {logunifrom: [1.0e-4, 1.0e-3]}}", "unknown domain 'logunifrom'"),
    ("tune.space={optim.g.lr: {loguniform: [0, 1.0e-3]}}", "both ends must be > 0"),
    ("tune.space={optim.g.lr: {uniform: [2.0e-4, 1.0e-4]}}", "low must be below high"),
    ("tune.space={train.n_critic: {randint: [1.5, 3]}}", "expected integers"),
    ("tune.space={optim.g.lr: 0.001}", "expected one domain"),
    ("tune.space={tune.num_samples: {choice: [1, 2]}}", "cannot search its own settings"),
])
def test_bad_spaces_are_refused_at_load_time_by_name(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        sweep(override)


@pytest.mark.parametrize("overrides,message", [
    (("tune.metric=loss_g", LR), "not an evaluation metric"),
    (("tune.metric=class_acc", LR), "needs 'class_acc' in eval.metrics"),
    (("eval.every=0", LR), "eval.every must be > 0"),
    (("eval.every=300", LR), "must be a multiple of eval.every"),
    (("tune.scheduler.type=pbt", "tune.space={model.g_width: {choice: [16, 32]}}"), "PBT copies checkpoints"),
    (("tune.scheduler.type=pbt", "tune.space={optim.g.lr: {grid: [1.0e-4, 2.0e-4]}}"), "use choice instead of grid"),
    (("tune.scheduler.type=pbt", "tune.scheduler.perturbation_interval=300", LR), "multiple of train.checkpoint_every"),
    (("tune.search=optuna", "tune.space={optim.g.lr: {grid: [1.0e-4, 2.0e-4]}}"), "optuna samples its own points"),
    (("tune.scheduler.type=asha", "tune.scheduler.reduction_factor=1", LR), "reduction_factor: must be >= 2"),
])
def test_sweep_settings_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        sweep(*overrides)


def test_a_config_without_a_space_is_not_a_sweep_and_trains_as_before():
    cfg = load_config(None, ("eval.every=0",))  # would be refused for a sweep
    assert cfg.tune.space == {}


def test_mode_follows_the_metric():
    assert mode(sweep(LR)) == "min"
    assert mode(sweep(LR, "tune.metric=recall")) == "max"
    assert mode(sweep(LR, "tune.metric=fid", "tune.mode=max")) == "max"


def test_trial_resources_take_the_largest_worker_count_in_the_space():
    cfg = sweep("tune.space={scaling.num_workers: {choice: [1, 3]}}", "scaling.cpus_per_worker=2")
    cpus, workers = trial_resources(cfg, search_space.parse_space(cfg.tune.space))
    assert workers == 3 and cpus == pytest.approx(6.01)


def test_apply_sets_a_trials_values_without_the_tune_section():
    cfg = sweep(LR)
    raw = search_space.apply(cfg.to_dict(), {"optim.g.lr": 3e-4, "model.g_width": 8})
    assert "tune" not in raw and raw["optim"]["g"]["lr"] == 3e-4 and raw["model"]["g_width"] == 8


def test_the_best_trial_is_a_finished_one_in_the_metrics_direction():
    cfg = sweep(LR)
    rows = [{"trial": "a", "values": {"optim.g.lr": 1e-4}, "fid": 5.0, "step": 1500, "status": "finished"},
            {"trial": "b", "values": {"optim.g.lr": 2e-4}, "fid": 3.0, "step": 1500, "status": "finished"},
            {"trial": "c", "values": {"optim.g.lr": 3e-4}, "fid": 1.0, "step": 500, "status": "stopped early"},
            {"trial": "d", "values": {"optim.g.lr": 4e-4}, "fid": None, "step": None, "status": "error"}]
    assert best_row(cfg, rows)["trial"] == "b"
    assert best_row(sweep(LR, "tune.mode=max"), rows)["trial"] == "a"
    assert best_row(cfg, rows[2:])["trial"] == "c"  # with no finished trial, the best stopped one
    table = format_rows(cfg, rows).splitlines()
    assert table[0].split() == ["trial", "optim.g.lr", "fid", "step", "status"]
    assert table[3].split()[:4] == ["c", "0.0003", "1", "500"] and table[4].endswith("error")


def test_a_sweep_searches_the_learning_rate_schedule():
    cfg = sweep("optim.g.schedule.type=multistep", "optim.g.schedule.milestones=[500, 1000]",
                "tune.space={optim.g.schedule.gamma: {uniform: [0.3, 0.7]}, optim.g.schedule.milestones: "
                "{choice: [[500, 1000], [750, 1250]]}, optim.d.schedule.warmup_steps: {randint: [0, 100]}}")
    space = search_space.parse_space(cfg.tune.space)
    assert space["optim.g.schedule.milestones"].values == ([500, 1000], [750, 1250])
    assert to_tune_domain(space["optim.g.schedule.milestones"]).categories == [[500, 1000], [750, 1250]]
    raw = search_space.apply(cfg.to_dict(), {"optim.g.schedule.milestones": [750, 1250]})
    assert raw["optim"]["g"]["schedule"]["milestones"] == [750, 1250]
    # Every option is checked at load time, against the rest of the config, by name.
    with pytest.raises(ConfigError, match=r"tune\.space\.optim\.g\.schedule\.milestones = \[1000, 500\]: "
                                          r"optim\.g\.schedule\.milestones: must be strictly increasing"):
        sweep("optim.g.schedule.type=multistep", "optim.g.schedule.milestones=[500, 1000]",
              "tune.space={optim.g.schedule.milestones: {choice: [[500, 1000], [1000, 500]]}}")


def test_a_base_may_leave_to_the_space_what_it_cannot_run_without():
    """A multistep schedule whose milestones only the space gives is a sweep every trial of which can run
    (docs/training.md's example); the base alone is never run, so it is not refused for lacking them."""

    def sweep(*overrides: str):  # as distgan tune loads it: keys and types, then check_sweep on the trials' configs
        return check_sweep(raw_config(None, ("train.checkpoint_every=500", "optim.g.schedule.type=multistep")
                                      + overrides))

    cfg = sweep("tune.space={optim.g.schedule.gamma: {uniform: [0.3, 0.7]}, "
                "optim.g.schedule.milestones: {choice: [[500, 1000], [750, 1250]]}}")
    assert cfg.optim.g.schedule.milestones == []  # the base as given; each trial gets its milestones
    with pytest.raises(ConfigError, match=r"tune\.space\.optim\.g\.schedule\.gamma = 0\.3: "
                                          r"optim\.g\.schedule\.milestones: multistep needs at least one"):
        sweep("tune.space={optim.g.schedule.gamma: {uniform: [0.3, 0.7]}}")
    # With two keys, a later example is blamed on its own key, the others held at their first.
    lr = "optim.g.schedule.milestones: {choice: [[500]]}, optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}"
    with pytest.raises(ConfigError, match=r"^tune\.space\.model\.g_width = -4: model\.g_width: must be > 0"):
        sweep(f"tune.space={{{lr}, model.g_width: {{choice: [16, -4]}}}}")
    with pytest.raises(ConfigError, match=r"^tune\.space \(each key at its first value: .*model\.g_width = -4\): "
                                          r"model\.g_width: must be > 0"):
        sweep(f"tune.space={{{lr}, model.g_width: {{choice: [-4, 16]}}}}")
