"""What is due at a step: the loop asks instead of doing interval arithmetic itself."""

from __future__ import annotations

from dataclasses import dataclass

from distgan.config import Config


@dataclass(frozen=True)
class Schedule:
    steps: int
    log_every: int
    sample_every: int
    checkpoint_every: int
    eval_every: int
    """0: never evaluate."""
    preemption_check_every: int = 0
    """0: never ask Ray Train about preempted nodes."""

    @classmethod
    def from_config(cls, cfg: Config) -> "Schedule":
        t = cfg.train
        return cls(t.steps, t.log_every, t.sample_every, t.checkpoint_every, cfg.eval.every,
                   t.preemption_check_every)

    def is_last(self, step: int) -> bool:
        return step == self.steps

    def logs(self, step: int) -> bool:
        """Logged steps also measure gradient norms (a sync), so the loop asks before the step too."""
        return step % self.log_every == 0 or self.is_last(step)

    def samples(self, step: int) -> bool:
        return step % self.sample_every == 0 or self.is_last(step)

    def evaluates(self, step: int) -> bool:
        return self.eval_every > 0 and (step % self.eval_every == 0 or self.is_last(step))

    def checkpoints(self, step: int) -> bool:
        return step % self.checkpoint_every == 0 or self.is_last(step)

    def asks_preemption(self, step: int) -> bool:
        """Not at the last step: the run's end checkpoints anyway."""
        return self.preemption_check_every > 0 and step % self.preemption_check_every == 0 and not self.is_last(step)

    def reads_buffers(self, step: int) -> bool:
        """Whether the step samples, evaluates or checkpoints: what reads G's and D's buffers."""
        return self.samples(step) or self.evaluates(step) or self.checkpoints(step)
