"""Tasks: what a run trains G to do. Each is one folder implementing ``distgan.runtime.task.Task``.

* ``generation``: z (and a class label) to a sample of the data set: the vanilla, DCGAN and conditional
  GAN families.
* ``super_resolution``: a low-resolution image to a ``model.scale`` times larger one: SRGAN, ESRGAN.

A model family names the task its generator serves (``Family.task``), so a
config never names its task; an exported ``generator.json`` records it.
Adding a task is one folder and one registration below.
"""

from __future__ import annotations

from distgan import models
from distgan.config import Config, ConfigError
from distgan.core.registry import Registry
from distgan.runtime.loop import RunInfo, Session, Trainer
from distgan.runtime.task import Task
from distgan.tasks.generation.task import GenerationTask
from distgan.tasks.super_resolution.task import SuperResolutionTask

TASKS: Registry[type[Task]] = Registry("task")
TASKS.register(GenerationTask.name)(GenerationTask)
TASKS.register(SuperResolutionTask.name)(SuperResolutionTask)

def task_for(cfg: Config) -> type[Task]:
    """The task of ``cfg``'s model family."""
    return TASKS.get(models.family(cfg.model).task, key="model.family")


def task_of(meta: dict) -> type[Task]:
    """The task an exported generator was trained for, from its ``generator.json``."""
    for name in TASKS.names():
        if TASKS.get(name).made(meta):
            return TASKS.get(name)
    raise ConfigError(f"generator.json names task {meta.get('task')!r}, which this distgan does not know; "
                      f"known: {', '.join(TASKS.names())}")


def build_trainer(cfg: Config, info: RunInfo, session: Session) -> Trainer:
    """The per-rank loop for ``cfg``'s task."""
    return Trainer(cfg, info, session, task_for(cfg))


__all__ = ["TASKS", "Task", "build_trainer", "task_for", "task_of"]
