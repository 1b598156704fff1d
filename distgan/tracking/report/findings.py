"""Rule-based findings at the top of a report, each citing the numbers that triggered it.

Each rule reads the run's records (and events) and returns a finding or None; a new
rule is one more function in ``RULES``. D winning and G's loss running away are the
console's own health checks (``distgan.tracking.health``) replayed over the whole
log, so the report says what the console said, with the step it first held at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from distgan.tracking import history
from distgan.tracking.health import HealthMonitor
from distgan.tracking.jsonl import is_non_finite
from distgan.tracking.report.load import RunData


@dataclass(frozen=True)
class Finding:
    level: str
    """``warn`` (worth acting on) or ``info``."""
    title: str
    detail: str


SIGN_HIGH, SIGN_WINDOWS = 0.9, 3
"""``d_real_sign`` (the mean sign of D on reals, StyleGAN2-ADA's overfitting signal) above this for this many
logged windows in a row means D has learned the training set apart from everything else."""
STALL_EVALS, STALL_GAIN = 3, 0.01
"""FID counts as stalled when none of the last this-many evaluations beat the best before them by this fraction."""


def health_rules(run: RunData) -> list[Finding]:
    monitor, found = HealthMonitor(), []
    for record in run.records:
        for warning in monitor.observe(record):
            title = "D wins outright" if warning.startswith("D has") else "G's loss diverges"
            found.append(Finding("warn", title, warning))
    return found


def real_sign_high(run: RunData) -> Optional[Finding]:
    streak, first = 0, None
    for record in run.records:
        sign = record.get("d_real_sign")
        if sign is None:
            continue
        streak = streak + 1 if sign > SIGN_HIGH else 0
        if streak == SIGN_WINDOWS and first is None:
            first = record
    if first is None:
        return None
    peak = max(r["d_real_sign"] for r in run.records if "d_real_sign" in r)
    return Finding("warn", "D is overfitting the reals",
                   f"d_real_sign stayed above {SIGN_HIGH} for {SIGN_WINDOWS} logged windows by step {first['step']} "
                   f"(peak {peak:.2f}): D tells the training images apart from anything else. Raise "
                   f"loss.d_reg.gamma (R1), or turn on augmentation (augment.type=ada or diffaugment).")


def fid_stalled(run: RunData) -> Optional[Finding]:
    evals = [(r["step"], r["fid"]) for r in run.records if isinstance(r.get("fid"), (int, float))]
    if len(evals) <= STALL_EVALS:
        return None
    best_before = min(f for _, f in evals[:-STALL_EVALS])
    recent = evals[-STALL_EVALS:]
    if min(f for _, f in recent) < best_before * (1 - STALL_GAIN):
        return None
    return Finding("info", "FID has stalled",
                   f"the last {STALL_EVALS} evaluations (steps {recent[0][0]}-{recent[-1][0]}: "
                   f"{', '.join(f'{f:.2f}' for _, f in recent)}) did not beat {best_before:.2f} by "
                   f"{STALL_GAIN:.0%}: lower the learning rates, or stop here.")


def psnr_below_bicubic(run: RunData) -> Optional[Finding]:
    evals = [r for r in run.records if "psnr" in r and "psnr_bicubic" in r]
    if not evals or evals[-1]["psnr"] >= evals[-1]["psnr_bicubic"]:
        return None
    last = evals[-1]
    return Finding("warn", "PSNR below bicubic",
                   f"at step {last['step']} G scores {last['psnr']:.2f} dB against bicubic's "
                   f"{last['psnr_bicubic']:.2f} dB on the same inputs: G is not yet better than interpolation "
                   f"(expected early in a GAN stage; train the PSNR stage first, train.init_from).")


def skipped_steps(run: RunData) -> Optional[Finding]:
    skipped = [(r["step"], r.get("skipped_g", 0) + r.get("skipped_d", 0)) for r in run.records
               if r.get("skipped_g", 0) or r.get("skipped_d", 0)]
    if not skipped:
        return None
    total = sum(n for _, n in skipped)
    return Finding("warn" if total > 2 else "info", "Non-finite steps skipped",
                   f"{total} optimizer steps skipped for non-finite gradients, first in the window ending at step "
                   f"{skipped[0][0]}: lower the learning rate or use bf16 over fp16 if it keeps happening.")


def restarts(run: RunData) -> Optional[Finding]:
    moved = [e for e in run.events if e.get("event") in (history.RESUMED, history.RESIZED, history.PREEMPTED)]
    if not moved:
        return None
    return Finding("info", f"{len(moved)} restart{'s' if len(moved) != 1 else ''} or resize"
                   f"{'s' if len(moved) != 1 else ''}",
                   "; ".join(f"step {e['step']}: {e['event']} on {e['world_size']} ({e['why']})" for e in moved[:5])
                   + (" ..." if len(moved) > 5 else ""))


LOSSES = ("loss_g", "loss_d")


def _shown(record: dict, key: str) -> str:
    # metrics.jsonl keeps a NaN or an infinity as null: say what it stood for, not "None".
    return "non-finite" if is_non_finite(record, key) else str(record.get(key, "-"))


def not_finite(run: RunData) -> Optional[Finding]:
    bad = next((r for r in run.records if any(is_non_finite(r, k) for k in LOSSES)), None)
    if bad is None:
        return None
    return Finding("warn", "A loss went non-finite",
                   f"at step {bad.get('step')}: " + ", ".join(f"{k} {_shown(bad, k)}" for k in LOSSES))


RULES: tuple[Callable[[RunData], object], ...] = (health_rules, real_sign_high, fid_stalled, psnr_below_bicubic,
                                                  skipped_steps, not_finite, restarts)


def findings(run: RunData) -> list[Finding]:
    found: list[Finding] = []
    for rule in RULES:
        result = rule(run)
        found.extend(result if isinstance(result, list) else [result] if result else [])
    return sorted(found, key=lambda f: f.level != "warn")
