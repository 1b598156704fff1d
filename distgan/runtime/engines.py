"""DeepSpeed engines for G and D: the only module that calls ``deepspeed.initialize``.

Each network gets its own engine and its own DeepSpeed JSON, generated from
the typed config, so G and D can differ in ZeRO stage, optimizer and gradient
accumulation. The helpers below hide the ZeRO-3 detail that parameters are
partitioned: code that needs whole parameters (EMA, export, sampling, buffer
sync) goes through ``whole_parameters``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from distgan.config import Config
from distgan.runtime import lr_schedule

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def lazy_ratio(cfg: Config, net: str) -> float:
    """interval / (interval + 1) for a network under lazy regularization (D: ``loss.d_reg``, G:
    ``loss.g_reg``), 1 otherwise.

    Lazy regularization (StyleGAN2, appendix B): the network then takes interval + 1 optimizer steps per
    interval, so its lr and betas are rescaled by this ratio (lr * ratio, beta ** ratio) to keep its per-step
    dynamics."""
    reg = cfg.loss.d_reg if net == "d" else cfg.loss.g_reg
    return reg.interval / (reg.interval + 1) if reg.type != "none" and reg.interval > 1 else 1.0


def scheduled_lr(cfg: Config, net: str) -> Callable[[int], float]:
    """Network ``net``'s lr for the optimizer steps of run step ``step`` (0-based: the steps done before
    them): ``optim.NET.schedule`` (``distgan.runtime.lr_schedule``), lazy-regularization ratio applied. Built
    once per engine; the loop calls it every step."""
    schedule, ratio = lr_schedule.build(cfg, net), lazy_ratio(cfg, net)
    return lambda step: schedule(step) * ratio


def optimizer_hyperparameters(cfg: Config, net: str, step: int = 0) -> dict:
    """lr, betas, eps and weight decay of network ``net``'s optimizer, as its engine must hold them for the
    optimizer steps of run step ``step`` (``scheduled_lr``)."""
    opt = getattr(cfg.optim, net)
    ratio = lazy_ratio(cfg, net)
    return {"lr": scheduled_lr(cfg, net)(step), "betas": [b ** ratio for b in opt.betas], "eps": opt.eps,
            "weight_decay": opt.weight_decay}


def apply_optimizer_hyperparameters(engine, cfg: Config, net: str, step: int) -> None:
    """Set the config's optimizer hyperparameters on an engine restored at run step ``step``.

    A checkpoint restores the optimizer's param groups with the values it was
    saved with; a run resumed with other ones (a PBT exploit that mutated the
    learning rates, or a user who changed them or the schedule) must train with
    the new ones, the lr where the schedule has it at ``step``.
    """
    wanted = optimizer_hyperparameters(cfg, net, step)
    for group in engine.optimizer.param_groups:
        group["lr"] = wanted["lr"]
        group["betas"] = tuple(wanted["betas"])
        group["eps"] = wanted["eps"]
        group["weight_decay"] = wanted["weight_decay"]


def set_learning_rate(engine, lr: float) -> None:
    """``lr`` on every param group of the engine's optimizer (the loop sets each step's scheduled lr)."""
    for group in engine.optimizer.param_groups:
        group["lr"] = lr


def deepspeed_config(cfg: Config, net: str, world_size: int, use_gpu: bool,
                     num_parameters: Optional[int] = None) -> dict:
    """The DeepSpeed JSON for network ``net`` ("g" or "d").

    ``num_parameters`` (the network's trainable elements) caps the ZeRO buckets: a bucket never holds more
    than the whole network, and DeepSpeed allocates its reduction bucket at the configured size (190 MiB
    at 5e7 fp32 elements) even for a DCGAN of 300,000 parameters.
    """
    bucket = cfg.deepspeed.bucket_size
    if num_parameters is not None:
        # Rounded up to a multiple of 4096 elements: ZeRO 1-2 need a multiple of their alignment (2 in bf16).
        bucket = min(bucket, -(-max(int(num_parameters), 1) // 4096) * 4096)
    engine = getattr(cfg.deepspeed, net)
    opt = getattr(cfg.optim, net)
    micro = cfg.train.batch_size
    gas = engine.gradient_accumulation_steps
    stage = cfg.deepspeed.stage(net)
    precision = cfg.deepspeed.precision_of(net)  # each engine its own: a fp32 D beside a bf16 G is common
    hyper = optimizer_hyperparameters(cfg, net)
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gas,
        "train_batch_size": micro * gas * world_size,
        "optimizer": {
            "type": "AdamW" if opt.type == "adamw" else "Adam",
            "params": {
                **hyper,
                "adam_w_mode": opt.type == "adamw",
                # FusedAdam is a CUDA kernel; on CPU DeepSpeed must use torch's Adam.
                "torch_adam": not use_gpu,
            },
        },
        "zero_optimization": {
            "stage": stage,
            "reduce_bucket_size": bucket,
            "allgather_bucket_size": bucket,
            "stage3_prefetch_bucket_size": bucket,
            "stage3_param_persistence_threshold": cfg.deepspeed.param_persistence_threshold,
        },
        "bf16": {"enabled": precision == "bf16"},
        # Dynamic loss scaling (loss_scale 0) is what fp16 GAN training needs:
        # D's logits on early fakes overflow a static scale.
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        # DeepSpeed casts only parameters; BatchNorm's running stats must follow
        # them or CPU batch_norm rejects the mixed dtypes.
        "data_types": {"buffer_dtype": precision} if precision != "fp32" else {},
        "gradient_clipping": engine.gradient_clipping,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def build_ops_in_this_environment() -> None:
    """Build DeepSpeed's JIT ops with this environment's ninja, into this environment's own directory.

    DeepSpeed builds its ops (on CPU, the shared-memory collective at every ``init_distributed``) through
    torch's JIT, which runs whichever ``ninja`` PATH finds, in ``~/.cache/torch_extensions`` unless
    ``TORCH_EXTENSIONS_DIR`` says otherwise. Either shared rebuilds the op from scratch, a minute on 2 cores
    in the middle of a start or a restart: a system ninja of another version hashes its build log
    differently, so each switch between the two (a shell without the environment activated, a Ray node
    started with it) rebuilds; and two environments on one machine (a checkout and a clean clone, say)
    compile with different include paths, so each rebuilds over the other's build. So the ninja beside this
    Python goes first on PATH, and a virtual environment keeps its builds in ``<environment>/torch_extensions``
    (a ``TORCH_EXTENSIONS_DIR`` already set is left alone)."""
    here = Path(sys.executable).parent
    if (here / "ninja").is_file() and shutil.which("ninja") != str(here / "ninja"):
        os.environ["PATH"] = os.pathsep.join([str(here), os.environ.get("PATH", "")])
    build_dir = op_build_dir()
    if build_dir is not None:
        os.environ["TORCH_EXTENSIONS_DIR"] = build_dir


def op_build_dir() -> Optional[str]:
    """Where runs here build DeepSpeed's JIT ops: ``TORCH_EXTENSIONS_DIR`` when set, else a writable virtual
    environment's ``torch_extensions`` folder, else None (torch's default under ``~/.cache``)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return os.environ["TORCH_EXTENSIONS_DIR"]
    if sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK):
        return os.path.join(sys.prefix, "torch_extensions")
    return None


def build_engine(module: nn.Module, cfg: Config, net: str, world_size: int, use_gpu: bool):
    """Wrap ``module`` in a DeepSpeed engine configured for network ``net``."""
    import deepspeed  # seconds to import and it probes accelerators: only where engines are built, not the driver

    build_ops_in_this_environment()
    bound_deepspeed_world_group(cfg.train.collective_timeout_s)
    trainable = [p for p in module.parameters() if p.requires_grad]
    ds_config = deepspeed_config(cfg, net, world_size, use_gpu, sum(p.numel() for p in trainable))
    engine, _, _, _ = deepspeed.initialize(model=module, model_parameters=trainable, config=ds_config)
    if world_size == 1 and engine.zero_optimization_stage() == 0:
        # Alone, the ZeRO-0 engine would still flatten, "all-reduce" and copy back every gradient at each
        # step (3% of a default DCGAN step on CPU). ZeRO 1-3 keep it: their partitioning rides on that path.
        engine.enable_backward_allreduce = False
    return engine


def bound_deepspeed_world_group(timeout_s: float) -> None:
    """Give DeepSpeed's copy of the world group ``train.collective_timeout_s``, like the default group.

    DeepSpeed reduces gradients and partitions ZeRO state on its own clone of
    the world group (``deepspeed.utils.groups._clone_world_group``), which it
    creates with torch's default timeout of 30 minutes. A rank that stalls
    just before a backward pass would then hold the others for half an hour
    instead of failing the step; creating the clone here, with the run's
    timeout, before DeepSpeed creates its own, bounds every collective the
    engines issue. Collective: every rank builds its engines together.
    """
    from deepspeed.utils import groups  # as above: never on the driver

    if dist.is_initialized() and groups._WORLD_GROUP is None:
        groups._WORLD_GROUP = dist.new_group(ranks=list(range(dist.get_world_size())),
                                             timeout=timedelta(seconds=timeout_s))


def loss_scale(engine) -> Optional[float]:
    """The dynamic loss scale of an fp16 engine (the ``loss_scale`` property of each of DeepSpeed's fp16
    and ZeRO optimizers), None for bf16 and fp32, which need none. Logged beside ``skipped_*``: an overflow
    halves it (after ``hysteresis`` of them), so a scale that keeps falling says fp16 cannot hold this
    model's gradients."""
    if not engine.fp16_enabled():
        return None
    scale = getattr(engine.optimizer, "loss_scale", None)
    return None if scale is None else float(scale)


def compute_dtype(cfg: Config, net: str) -> torch.dtype:
    """The dtype network ``net``'s engine holds its parameters and takes its inputs in."""
    return DTYPES[cfg.deepspeed.precision_of(net)]


def compile_modules(cfg: Config, engine_g, engine_d) -> None:
    """``train.compile``: compile each engine's module in place (``nn.Module.compile``), so its parameters,
    state-dict keys and DeepSpeed's hooks on them are the eager module's, and checkpoints do not change.

    Compilation happens at the first forward pass of each kind (D also sees G's fakes with D frozen: a
    second graph). D stays eager under a gradient penalty: its double backward is not supported by the
    compiled autograd of torch 2.x.
    """
    engine_g.module.compile()
    if engine_d is not None and cfg.loss.d_reg.type == "none":
        engine_d.module.compile()


def memory_format(cfg: Config) -> torch.memory_format:
    """The layout of image batches and conv weights: NHWC with ``train.channels_last``."""
    return torch.channels_last if cfg.train.channels_last else torch.contiguous_format


def to_compute(x: torch.Tensor, device: torch.device, dtype: torch.dtype,
               layout: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A batch on the compute device in the compute dtype; image batches (4-D) in ``layout``."""
    return x.to(device, dtype, memory_format=layout if x.dim() == 4 else torch.preserve_format)


def zero_stage(engine) -> int:
    return engine.zero_optimization_stage()


@contextlib.contextmanager
def whole_parameters(engine) -> Iterator[nn.Module]:
    """Yield the engine's module with whole parameters. Collective under ZeRO-3:
    every rank must enter it together."""
    if zero_stage(engine) == 3:
        import deepspeed  # as above: never on the driver

        with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
            yield engine.module
    else:
        yield engine.module


def average_buffers(module: nn.Module) -> None:
    """All-reduce-average floating buffers (BatchNorm running stats) across ranks.

    DeepSpeed, unlike DDP, never syncs buffers, so each replica's running
    statistics drift apart; G_ema, samples and checkpoints (taken from rank 0)
    would then depend on which rank happened to be first. One flat all-reduce,
    before each use (``Trainer.average_buffers``), keeps them identical.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().float().reshape(-1) for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for b in buffers:
        n = b.numel()
        b.copy_(flat[offset:offset + n].view_as(b).to(b.dtype))
        offset += n


def deepspeed_grad_norm(engine):
    """The global gradient norm DeepSpeed computed in the last step, or None.

    ZeRO 1-3 and the mixed-precision optimizers compute it; plain fp32 ZeRO-0
    does only when clipping, so the GAN phases measure it themselves there.
    """
    return engine.get_global_grad_norm()


def grad_norm(module: nn.Module) -> torch.Tensor:
    """L2 norm of ``module``'s gradients as they stand (already all-reduced under ZeRO-0)."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    if not norms:
        return torch.tensor(float("nan"))
    return torch.linalg.vector_norm(torch.stack(norms))
