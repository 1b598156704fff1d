"""The per-rank training loop, run by every worker; the same for every task.

It knows nothing of Ray: the launcher hands it a ``Session`` (rank, device,
report, last checkpoint) and the task (``distgan.runtime.task``) to train.
The loop reads top to bottom as a list of steps: data, models, engines,
restore, then the task's training steps with metrics, samples, evaluation and
checkpoints when the schedule says they are due, and the generator exported
at the end.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Optional, Protocol

import torch
import torch.distributed as dist

from distgan.config import Config, ConfigError
from distgan.data.stream import Streamer
from distgan.gan.ema import GeneratorEMA
from distgan.metrics.registry import objectives
from distgan.persist import checkpoint
from distgan.persist.checkpoint import TrainState
from distgan.persist.export import META as GENERATOR_META, find_generator, read_weights, save_generator
from distgan.persist.storage import StoreDir
from distgan.runtime import elastic, engines, lr_schedule
from distgan.runtime.preemption import Preempted, Watch
from distgan.runtime.rng import latent_generator, reseed, restore_rng, rng_state
from distgan.runtime.schedule import Schedule
from distgan.runtime.task import Task
from distgan.tracking import history
from distgan.tracking.images import save_image
from distgan.tracking.jsonl import MetricsLog
from distgan.tracking.memory import worker_memory
from distgan.tracking.report import write_report
from distgan.tracking.startup import FILE as STARTUP_FILE, StartupClock
from distgan.tracking.wandb_logger import WandbLogger

log = logging.getLogger(__name__)


class Session(Protocol):
    """What the loop needs from the process group it runs in."""

    rank: int
    world_size: int
    device: torch.device
    use_gpu: bool
    streamer: Optional[Streamer]
    """Decodes streamed data ahead of the step (Ray tasks under Ray); None: a thread of this process."""

    def latest_checkpoint(self) -> ContextManager[Optional[Path]]: ...

    def report(self, metrics: dict, checkpoint_dir: Optional[Path] = None, name: Optional[str] = None) -> None: ...

    def preemption_notice(self) -> Optional[str]:
        """What the cluster says of a node of this group being preempted, or None; every rank calls it at the
        same step and gets the same answer."""
        ...


@dataclass
class RunInfo:
    """Where the run writes and how it is known to trackers (set by the launcher)."""

    run_dir: Path
    name: str
    wandb_id: str
    wandb_group: Optional[str] = None
    """The sweep a trial belongs to (W&B groups its runs)."""
    wandb_extra: dict = field(default_factory=dict)
    """Added to the W&B run config: a trial's sampled hyperparameters."""
    startup: dict = field(default_factory=dict)
    """The driver's start-up marks (``distgan.tracking.startup``), completed by rank 0."""
    launch: float = 0.0
    """When the trainer of this attempt was built (epoch seconds): the attempts of one ``fit`` share it, so
    the run's history tells Ray's restarts from a new command (``distgan.tracking.history``)."""
    remote: Optional[StoreDir] = None
    """The run directory under a URI (``distgan.persist.storage``); ``run_dir`` is then this node's staging copy, and
    rank 0 uploads every file it writes there (``Trainer.publish``)."""


class Trainer:
    """State of one rank's run; ``run`` is the loop. ``task`` is a ``distgan.runtime.task.Task`` class."""

    def __init__(self, cfg: Config, info: RunInfo, session: Session, task: type[Task]):
        self.configured = cfg
        """The run's config as written; ``cfg`` is what this attempt trains with at its width (elastic runs)."""
        cfg = elastic.at_width(cfg, session.world_size)
        self.cfg, self.info, self.session = cfg, info, session
        self.rank, self.world = session.rank, session.world_size
        self.device = session.device
        self.schedule = Schedule.from_config(cfg)
        self.startup = StartupClock(info.startup)
        self.startup.mark("worker_start")
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.scaling.cpus_per_worker)
        self.task = task(cfg, self.rank, self.world, self.device)
        self.task.setup_data(session.streamer)
        self.startup.mark("data")

        # Models: identical init on every rank from the shared seed.
        torch.manual_seed(cfg.train.seed)
        g_module = self.task.build_generator()
        if cfg.train.init_from:
            init_generator(g_module, cfg)
        d_module = self.task.build_discriminator()
        layout = engines.memory_format(cfg)
        self.ema = None
        if cfg.ema.enabled:
            # On G's device: the average is updated from G's (gathered) weights every step.
            self.ema = GeneratorEMA(self.task.build_generator().to(self.device, memory_format=layout),
                                    cfg.ema.half_life_kimg, cfg.ema.rampup)
            self.ema.copy_from(g_module)
        self.startup.mark("models")

        # Engines: one per network, each with its own DeepSpeed JSON.
        self.engine_g = engines.build_engine(g_module, cfg, "g", self.world, session.use_gpu)
        self.startup.mark("engine_g")
        self.engine_d = (engines.build_engine(d_module, cfg, "d", self.world, session.use_gpu)
                         if d_module is not None else None)
        self.startup.mark("engine_d")
        if cfg.train.channels_last:
            # After DeepSpeed's initial broadcast, which views each parameter's bytes and needs them contiguous.
            for engine in (self.engine_g, self.engine_d):
                if engine is not None:
                    engine.module.to(memory_format=layout)
        if cfg.train.compile:
            engines.compile_modules(cfg, self.engine_g, self.engine_d)
        self.z_gen = latent_generator(cfg.train.seed, self.rank)
        self.gan = self.task.build_algorithm(self.engine_g, self.engine_d, self.z_gen)
        self.state = TrainState(world_size=self.world)
        self.lr_of = {net: engines.scheduled_lr(cfg, net) for net in ("g", "d")}
        self.preemption = Watch(self.world, cfg.train.collective_timeout_s)  # collective, like the engines
        self.drain_checkpointed = False
        """Whether this attempt checkpointed for a preempted node (``checkpoint_for_drain``)."""
        self.written_by: Optional[int] = None
        """The worker count of the checkpoint restored (None: none), before any resharding."""
        # Collective: rank 0 may prepare what evaluation compares with and share it.
        self.evaluator = self.task.build_evaluator() if self.schedule.eval_every > 0 else None
        self.startup.mark("evaluator")
        # Real samples drawn per step over all ranks, and images G makes per step (the EMA's clock).
        self.real_per_step = self.gan.samples_per_step(cfg.train.batch_size) * self.world
        self.g_batch = cfg.train.batch_size * self.engine_g.gradient_accumulation_steps() * self.world

    # -- the loop -------------------------------------------------------------
    def run(self) -> TrainState:
        due = self.schedule
        self.restore()
        metrics_log, wandb_run = self.open_trackers()
        try:
            self.train(metrics_log, wandb_run)
            self.record_history(history.FINISHED, f"reached step {self.state.step} of {due.steps}")
            self.export()
            if self.rank == 0 and self.cfg.tracking.report:
                self.write_report()
        except BaseException:
            # An attempt that ends early (a preemption notice, an error Ray Train restarts from, a failed
            # export) closes its W&B run as failed, so its offline log is whole; a process killed outright
            # keeps what the service flushed (``wandb_logger.FLUSH_S``). The next attempt resumes the same run.
            if wandb_run is not None:
                wandb_run.finish_failed()
            raise
        if wandb_run is not None:
            wandb_run.finish()
            self.publish(self.info.run_dir / "wandb")  # an offline run is synced from there
        return self.state

    def train(self, metrics_log: Optional[MetricsLog], wandb_run: Optional[WandbLogger]) -> None:
        """The steps of this attempt, from the restored one to the last."""
        due = self.schedule
        self.record_history(*history.attempt_start(self.info.run_dir, self.state.step, self.world, self.written_by,
                                                   self.info.launch))
        self.startup.mark("restored")
        clock = time.perf_counter()
        images_at_clock = self.state.images_seen
        while self.state.step < due.steps:
            self.set_learning_rates()
            self.gan.measure_grad_norms = due.logs(self.state.step + 1)
            self.gan.step(self.task.next_batch, self.cfg.train.batch_size)
            if self.startup.first_step_done(self.info.run_dir if self.rank == 0 else None):
                self.publish(self.info.run_dir / STARTUP_FILE)
            self.state.step += 1
            self.state.images_seen += self.real_per_step
            step = self.state.step
            if due.reads_buffers(step):
                self.average_buffers()
            if self.ema is not None:
                with engines.whole_parameters(self.engine_g) as g:
                    self.ema.update(g, self.state.images_seen, self.g_batch)

            record, images = None, {}
            if due.logs(step):
                now = time.perf_counter()
                record = self.collect_metrics((self.state.images_seen - images_at_clock) / (now - clock))
                clock, images_at_clock = now, self.state.images_seen
            if due.samples(step):
                images = self.write_samples()
            if due.evaluates(step):
                record = {**(record or {"step": step, "images_seen": self.state.images_seen}), **self.evaluate()}
            if self.rank == 0 and record is not None:
                metrics_log.append({**record, "time": round(time.time(), 3)})  # the report's wall-time axis
                self.publish(metrics_log.path)
            if wandb_run is not None and (record is not None or images):
                wandb_run.log({**(record or {"step": step})}, images)
            if due.checkpoints(step):
                self.save_checkpoint(record or {"step": step})
            elif record is not None:
                self.session.report(record)
            if self.preemption.poll():
                self.stop_for_preemption(checkpointed=due.checkpoints(step))
            if due.asks_preemption(step) and not self.drain_checkpointed:
                self.checkpoint_for_drain(checkpointed=due.checkpoints(step))
        self.preemption.close()

    def write_report(self) -> None:
        """``report.html`` into the run directory. The run is done by now: a report that cannot be written is a
        warning, never a failed run."""
        try:
            path = write_report(self.info.run_dir)
        except Exception as exc:  # noqa: BLE001  (any reader or renderer error: the run's results stand)
            log.warning("could not write the run's report: %s", exc)
            return
        self.publish(path)
        log.info("report: %s", path)

    def publish(self, path: Path) -> None:
        """Upload a file (or tree) rank 0 wrote into the run directory, when that is a staging copy of a
        run under a URI; on a file system it is already in place."""
        if self.info.remote is not None and path.exists():
            self.info.remote.upload(path, path.relative_to(self.info.run_dir).as_posix())

    def record_history(self, event: str, why: str) -> None:
        if self.rank == 0:
            self.publish(history.append(self.info.run_dir, event, self.state.step, self.world, why, self.info.launch))
            log.info("%s at step %d on %s: %s", event, self.state.step, history.workers(self.world), why)

    def stop_for_preemption(self, checkpointed: bool) -> None:
        """A rank was told to stop (``distgan.runtime.preemption``): checkpoint this step unless that is done,
        and end the attempt; Ray Train restarts the group from this checkpoint."""
        step = self.state.step
        if not checkpointed:
            self.save_checkpoint({"step": step, "images_seen": self.state.images_seen})
        self.preemption.close()
        self.record_history(history.PREEMPTED, f"a worker was told to stop (SIGTERM); checkpointed step {step}")
        raise Preempted(f"a worker was told to stop (SIGTERM): checkpointed step {step}; the run resumes there")

    def checkpoint_for_drain(self, checkpointed: bool) -> None:
        """Ask whether a node of the group is being preempted; at the first notice checkpoint this step (unless
        that is done) and train on: when the node goes, Ray Train restarts from here. Once per attempt."""
        notice = self.session.preemption_notice()
        if notice is None:
            return
        step = self.state.step
        if not checkpointed:
            self.save_checkpoint({"step": step, "images_seen": self.state.images_seen})
        self.drain_checkpointed = True
        self.record_history(history.PREEMPTED, f"{notice}; checkpointed step {step}, training on until it goes")

    def set_learning_rates(self) -> None:
        """Each engine's scheduled lr for the step about to run (a function of the steps done)."""
        for net, engine in (("g", self.engine_g), ("d", self.engine_d)):
            if engine is not None:
                engines.set_learning_rate(engine, self.lr_of[net](self.state.step))

    def average_buffers(self) -> None:
        """Make G's and D's buffers (BatchNorm statistics) the mean over the ranks.

        Only before they are used, not every step: a running statistic's update is
        linear in the batch statistic, so the mean of the ranks' running averages is
        the running average of the ranks' mean batch statistics. One collective per
        use instead of two per step. (Spectral norm's power-iteration vectors depend
        on the weights alone, which are the same on every rank.)
        """
        engines.average_buffers(self.engine_g.module)
        if self.engine_d is not None:
            engines.average_buffers(self.engine_d.module)

    # -- steps of the loop ----------------------------------------------------
    checkpoint_floor: int = 0
    """Checkpoints of steps up to this one are not saved: a refused checkpoint Ray still tracks has that number."""

    def restore(self) -> None:
        """Load the checkpoint the session hands over or, if it is refused, the newest complete one before it."""
        with self.session.latest_checkpoint() as directory:
            if directory is None:
                return
            # A session over a run under a URI downloads the candidates as they are tried (distgan.persist.storage).
            downloads = getattr(self.session, "checkpoint_downloads", None)
            restored = checkpoint.load_newest_complete(directory, self.engine_g, self.engine_d, self.rank,
                                                       self.world, downloads)
        state, rng, generator = restored.state, restored.rng, restored.generator
        self.written_by = state.world_size
        if restored.refused:
            # Ray still counts the refused checkpoint as the latest. A checkpoint saved under its number again
            # would be registered twice, and deleted from under the new one when the old entry ages out of
            # keep_checkpoints; so the next one saved is the first numbered above it.
            self.checkpoint_floor = max(checkpoint.number(path) or 0 for path, _ in restored.refused)
            if self.rank == 0:
                log.warning("refused to resume:\n%s\nresuming from %s (step %d) instead; the next checkpoint "
                            "saved is the first after step %d", "\n".join(f"  - {why}" for _, why in restored.refused),
                            restored.directory, state.step, self.checkpoint_floor)
        self.state = state
        # The config's optimizer settings win over the checkpoint's (they differ after a PBT exploit), the
        # schedule's too: the lr is a function of the restored step (distgan.runtime.lr_schedule).
        changed = lr_schedule.changes(state.lr_schedule, lr_schedule.describe(self.configured))
        if changed and self.rank == 0:
            log.warning("the learning-rate schedule differs from the checkpoint's; from step %d on it follows this "
                        "config:\n%s", state.step, "\n".join(f"  - {c}" for c in changed))
        for net, engine in (("g", self.engine_g), ("d", self.engine_d)):
            if engine is not None:
                engines.apply_optimizer_hyperparameters(engine, self.cfg, net, state.step)
        self.gan.steps_done = state.step
        self.gan.load_state_dict(state.algorithm)
        self.task.load_data_state(state.data)
        if rng is None:  # resharded from another worker count
            reseed(self.cfg.train.seed, self.rank, state.step, self.z_gen)
            if self.rank == 0:
                log.warning("resharded %s from %d workers to %d: ZeRO partitions re-split, the data position "
                            "carried over, new RNG streams; global batch now %d images", restored.directory,
                            state.world_size, self.world, self.real_per_step)
            state.world_size = self.world
        else:
            restore_rng(rng, self.z_gen)
        if self.ema is not None:
            self.ema.module.load_state_dict(generator)
        if self.rank == 0:
            log.info("resumed from step %d (%d images seen)", state.step, state.images_seen)

    def open_trackers(self):
        if self.rank != 0:
            return None, None
        metrics_log = MetricsLog(self.info.run_dir / "metrics.jsonl")
        if self.info.remote is not None and self.info.remote.is_file("metrics.jsonl"):
            self.info.remote.download("metrics.jsonl", metrics_log.path)  # a resume may run on another node
        metrics_log.rewind(self.state.step)
        self.publish(metrics_log.path)
        wandb_run = None
        if self.cfg.tracking.wandb:
            group = self.info.wandb_group
            wandb_run = WandbLogger(self.cfg.tracking, self.info.run_dir, self.info.wandb_id, self.info.name,
                                    {**self.configured.to_dict(), **self.info.wandb_extra}, group,
                                    tags=[self.cfg.model.family, self.task.name, *([group] if group else [])],
                                    summaries={score: d for score, (_, d) in objectives().items()},
                                    system_stats=self.device.type == "cuda")
        return metrics_log, wandb_run

    def collect_metrics(self, images_per_s: float) -> dict:
        """Average the phase statistics over ranks (the one sync of a log step)."""
        stats, seen = self.gan.pop_stats_seen()
        if self.world > 1:  # means and the seen marks in one collective
            packed = torch.cat([stats, seen.to(stats.dtype)])
            dist.all_reduce(packed)
            stats, seen = packed[:len(stats)] / self.world, packed[len(stats):] > 0
        record = {"step": self.state.step, "images_seen": self.state.images_seen, "world_size": self.world}
        # A statistic no phase produced in this window (reg_d without a regularizer) is left out; one that was
        # produced and went non-finite (a loss of NaN) is kept, for the health checks and the report to see.
        record.update({name: v for name, v, produced in zip(self.gan.stat_names, stats.tolist(), seen.tolist())
                       if produced})
        record["grad_norm_g"] = self.gan.grad_norms["g"]
        if self.engine_d is not None:
            record["grad_norm_d"] = self.gan.grad_norms["d"]
        # Cumulative, and the same on every rank: a non-finite step is skipped on all of them together.
        record.update({f"skipped_{net}": n for net, n in self.gan.skipped_steps().items()})
        record["lr_g"] = float(self.engine_g.get_lr()[0])
        if self.engine_d is not None:
            record["lr_d"] = float(self.engine_d.get_lr()[0])
        for net, engine in (("g", self.engine_g), ("d", self.engine_d)):
            scale = None if engine is None else engines.loss_scale(engine)
            if scale is not None:  # fp16 engines only
                record[f"loss_scale_{net}"] = scale
        record["images_per_s"] = images_per_s
        record.update(self.data_metrics())
        return record

    def data_metrics(self) -> dict[str, float]:
        """The task's data statistics and the worker's memory, each the maximum over the ranks: the slowest
        rank's wait holds up every step, a file skipped on any rank was skipped, and the fullest rank is the
        one that runs out of memory."""
        values = {**self.task.data_metrics(), **worker_memory(self.device)}
        if values and self.world > 1:
            stats = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
            dist.all_reduce(stats, op=dist.ReduceOp.MAX)
            values = dict(zip(values, stats.tolist()))
        return values

    @contextlib.contextmanager
    def generator_snapshot(self):
        """A whole, plain generator for sampling and export: G_ema, or a copy of G.

        Collective under ZeRO-3 without EMA (G's weights are gathered), so every
        rank enters it; only rank 0 should use what it yields.
        """
        if self.ema is not None:
            yield self.ema.module
            return
        with engines.whole_parameters(self.engine_g) as g:
            copy = self.task.build_generator().to(self.device)
            copy.load_state_dict({k: v.detach().float() for k, v in g.state_dict().items()})
        yield copy.eval()

    def export_metadata(self) -> dict:
        """``generator.json``: what every task's G needs (the model and data config), then the task's own."""
        cfg = self.cfg.to_dict()
        return {"task": self.task.name, "model": cfg["model"], "data_config": cfg["data"],
                "data": self.cfg.data.path or self.cfg.data.name, **self.task.export_metadata(),
                "ema": self.ema is not None, "step": self.state.step, "images_seen": self.state.images_seen}

    def evaluate(self) -> dict:
        """The task's scores of G_ema (or G), every rank taking its share of the work."""
        with self.generator_snapshot() as g:
            return self.evaluator.run(g)

    def write_samples(self) -> dict:
        with self.generator_snapshot() as g:
            img = self.task.render_samples(g, self.evaluator)
        if self.rank != 0:
            return {}
        self.save_sample_grid(img)
        return {"samples": img}

    def save_sample_grid(self, img) -> None:
        path = self.info.run_dir / "samples" / f"step_{self.state.step:06d}.png"
        save_image(img, path)
        self.publish(path)

    def save_checkpoint(self, metrics: dict) -> None:
        if self.state.step <= self.checkpoint_floor:  # see restore
            self.session.report(metrics)
            return
        self.state.data = self.task.data_state()
        self.state.algorithm = self.gan.state_dict()  # collective for some algorithms: every rank is here
        self.state.lr_schedule = lr_schedule.describe(self.configured)
        with tempfile.TemporaryDirectory(prefix="distgan-ckpt-") as tmp:
            with self.generator_snapshot() as g:
                export = (g, self.export_metadata()) if self.rank == 0 else None
                checkpoint.save(Path(tmp), self.engine_g, self.engine_d, export, self.state,
                                rng_state(self.z_gen), self.rank)
            self.session.report(metrics, checkpoint_dir=Path(tmp), name=f"checkpoint_{self.state.step:06d}")

    def export(self) -> None:
        with self.generator_snapshot() as g:
            if self.rank == 0:
                weights = save_generator(self.info.run_dir, g, self.export_metadata())
                self.publish(weights)
                self.publish(weights.with_name(GENERATOR_META))


def init_generator(module: torch.nn.Module, cfg: Config) -> None:
    """Load ``train.init_from``'s exported weights into a freshly built G (checked against the config)."""
    weights = find_generator(cfg.train.init_from)
    state = read_weights(weights)  # safetensors only, like every generator read
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # config.check_init_from names the usual causes before Ray starts
        raise ConfigError(f"train.init_from: {weights} does not fit this generator: {exc}") from None
    log.info("generator initialised from %s", weights)
