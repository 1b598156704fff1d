"""Population based training that knows the run's last step (Ray Tune imported: built only for a sweep)."""

from __future__ import annotations

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler


class FinalStepAwarePBT(PopulationBasedTraining):
    """PBT that leaves a trial alone at its last step.

    An exploit there would restart the trial from another one's checkpoint with
    mutated values and no steps left to train them: the trial would end with the
    other trial's result under a config it never trained with.
    """

    def __init__(self, total_steps: int, **kwargs):
        super().__init__(**kwargs)
        self._total_steps = total_steps

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._total_steps:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)
