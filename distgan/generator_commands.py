"""The commands that use or make an exported generator: ``sample``, ``evaluate``, ``upscale``, ``export``,
``import-weights``, ``serve``.

``distgan.cli`` parses their arguments without importing torch and hands the
parsed arguments here, where torch and the layers below are imported at the
top; each function returns the exit status. Errors are the package's own
(ConfigError, FileNotFoundError, GeneratorFileError), which the CLI prints alone.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from distgan.config import ConfigError
from distgan.deploy import ExportCheckFailed, export_generator
from distgan.evaluate import evaluate_generator, format_table
from distgan.launch.serve import ServeOptions, read_token, serve_generator
from distgan.persist.export import generate, load_generator
from distgan.persist.import_weights import import_weights
from distgan.serving import ServeLimits
from distgan.tasks import task_of
from distgan.tasks.generation import interpolation, sampling
from distgan.tasks.super_resolution import benchmark
from distgan.tasks.super_resolution.upscale import upscale_path
from distgan.tracking.images import image_grid, render_samples, save_animation, save_image, to_unit


def sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".png", ".npz") and not (out.suffix == ".gif" and args.interpolate is not None):
        raise ConfigError(f"--out {args.out!r}: must end in .png (a grid) or .npz (an array), or with "
                          f"--interpolate in .gif (an animation)")
    if args.n <= 0:
        raise ConfigError(f"--n: must be > 0, got {args.n}")
    if args.zoom < 1:
        raise ConfigError(f"--zoom: must be >= 1, got {args.zoom}")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed: must be in [0, 2^63), got {args.seed}")
    if args.truncation is not None and not math.isfinite(args.truncation):
        raise ConfigError(f"--truncation: must be a finite number (1 leaves w as drawn), got {args.truncation}")
    # A GIF keeps each frame's duration in hundredths of a second, and browsers play anything under 2 of them
    # at 10 frames a second; the longest it holds is 655.35 s.
    if not 1 / 655 <= args.fps <= 50:
        raise ConfigError(f"--fps: must be in [1/655, 50] (a GIF frame lasts 0.02 s to 655 s), got {args.fps}")
    module, meta = load_generator(args.source)
    task = task_of(meta)
    if "sample" not in task.commands:
        raise ConfigError(f"{args.source} is a {task.name.replace('_', '-')} generator: distgan sample draws from "
                          f"generation models; use distgan {task.commands[0]} {args.source} INPUT")
    if args.mix is not None and args.interpolate is not None:
        raise ConfigError("--mix and --interpolate: each makes its own picture; give one of them")
    if args.mix is not None:
        return _sample_mix(args, module, meta, out)
    if args.crossover is not None:
        raise ConfigError("--crossover: sets where --mix's grid switches from row to column styles; give --mix")
    if args.interpolate is not None:
        return _sample_walk(args, module, meta, out)
    labels = sampling.parse_labels(args.labels, meta, args.n)
    if args.truncation is not None or (args.noise_mode is not None) or sampling.is_style_based(module):
        for flag, given in (("--truncation", args.truncation), ("--noise-mode", args.noise_mode)):
            if given is not None:
                sampling.require_style_based(module, flag)
        psi = 1.0 if args.truncation is None else args.truncation
        samples = sampling.generate_styled(module, args.n, args.seed, labels, psi, args.noise_mode or "const")
    else:
        samples = generate(module, args.n, args.seed, labels=labels)
    if out.suffix == ".png":
        save_image(_zoomed(render_samples(samples), args.zoom), out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **sampling.sample_arrays(samples, labels))
    print(f"wrote {args.n} samples (step {meta.get('step')}) to {out}")
    return 0


def _sample_mix(args: argparse.Namespace, module, meta: dict, out: Path) -> int:
    """``--mix RxC``: a style-mixing grid (``distgan.tasks.generation.sampling.mixing_grid``)."""
    sampling.require_style_based(module, "--mix")
    rows, cols = _pair(args.mix, "--mix", "ROWSxCOLS, e.g. 4x6")
    if rows < 1 or cols < 1:
        raise ConfigError(f"--mix {args.mix!r}: rows and columns must be >= 1")
    if out.suffix != ".png":
        raise ConfigError(f"--mix: writes a .png grid; --out {args.out!r} must end in .png")
    psi = 1.0 if args.truncation is None else args.truncation
    images = sampling.mixing_grid(module, rows, cols, args.seed, args.crossover, psi, args.noise_mode or "const",
                                  sampling.parse_labels(args.labels, meta, rows),
                                  sampling.parse_labels(args.labels, meta, cols))
    save_image(_zoomed(image_grid(to_unit(images), nrow=cols + 1), args.zoom), out)
    print(f"wrote a {rows}x{cols} style-mixing grid (step {meta.get('step')}) to {out}")
    return 0


def _sample_walk(args: argparse.Namespace, module, meta: dict, out: Path) -> int:
    """``--interpolate KxSTEPS``: a latent walk (``distgan.tasks.generation.interpolation``) as strips (.png),
    an animation that loops (.gif) or an array (.npz: ``images`` (K, STEPS, C, H, W) in [0, 1], and for a
    conditional G ``labels`` (K,), the class of each row)."""
    keyframes, steps = _pair(args.interpolate, "--interpolate", "KEYFRAMESxSTEPS, e.g. 4x8")
    if keyframes < 2 or steps < 2:
        raise ConfigError(f"--interpolate {args.interpolate!r}: a walk needs at least 2 keyframes and 2 steps")
    if len(meta.get("data_shape") or ()) != 3:
        raise ConfigError(f"--interpolate: walks between images; this generator makes points "
                          f"(shape {meta.get('data_shape')}): plot distgan sample --out FILE.npz instead")
    if not sampling.is_style_based(module):
        for flag, given in (("--truncation", args.truncation), ("--noise-mode", args.noise_mode)):
            if given is not None:
                sampling.require_style_based(module, flag)
    labels = sampling.parse_labels(args.labels, meta, keyframes)
    psi = 1.0 if args.truncation is None else args.truncation
    frames = interpolation.latent_walk(module, keyframes, steps, args.seed, labels, psi, args.noise_mode or "const")
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **sampling.sample_arrays(frames, labels))
    elif out.suffix == ".png":
        save_image(_zoomed(image_grid(to_unit(frames.flatten(0, 1)), nrow=steps), args.zoom), out)
    else:  # each row's last frame is the next row's first: dropped, the rows loop without a repeated frame
        pictures = [_zoomed(image_grid(to_unit(f[None]), pad=0), args.zoom) for f in frames[:, :-1].flatten(0, 1)]
        save_animation(pictures, out, args.fps)
    print(f"wrote a walk through {keyframes} latents, {steps} steps each (step {meta.get('step')}), to {out}")
    return 0


def _pair(text: str, flag: str, form: str) -> tuple[int, int]:
    """``AxB`` of a grid flag as two integers, or an error naming the flag and the form it takes."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give {form}") from None
    return a, b


def _zoomed(img: Image.Image, zoom: int) -> Image.Image:
    """Enlarged ``zoom`` times by repeating pixels: small samples (16 px) stay exact to look at."""
    return img if zoom == 1 else img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)


EVAL_FLAGS = (("metrics", "eval.metrics"), ("n", "eval.n"), ("features", "eval.features"),
              ("inception_weights", "eval.inception_weights"), ("seed", "eval.seed"),
              ("batch_size", "eval.batch_size"))
"""``distgan evaluate``'s flags that are shorthands for ``eval.*`` overrides."""


def _json_target(args: argparse.Namespace, overrides: list[str]) -> Optional[str]:
    """``--json`` alone: "-" (print JSON instead of the table); ``--json FILE``: write it there too. The
    optional value swallows a following ``KEY=VALUE`` (``--json eval.n=64``): that is an override, as it
    was when ``--json`` took no value."""
    target = args.json
    if isinstance(target, str) and target != "-" and "=" in target and not target.endswith(".json"):
        overrides.append(target)
        return "-"
    return target


def evaluate(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    json_to = _json_target(args, overrides)
    if args.hr_folder is not None:
        return _evaluate_folders(args, overrides, json_to)
    for flag, key in EVAL_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    stray = [o for o in overrides if "=" not in o]
    if stray:
        raise ConfigError(f"expected KEY=VALUE overrides after the generator, got {stray[0]!r}")
    unused = [flag for flag, value in (("--lr-folder", args.lr_folder), ("--out", args.out)) if value]
    if unused:
        raise ConfigError(f"{unused[0]}: scores an image folder; give --hr-folder DIR with it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        scores, info = evaluate_generator(args.source, overrides)
    for w in caught:
        print(f"distgan: warning: {w.message}", file=sys.stderr)
    if json_to == "-":
        print(json.dumps({**info, **scores}, sort_keys=False))
        return 0
    if json_to:
        _write_json(json_to, {**info, **scores})
    if "images" in info:  # a super-resolution generator: validation images, not samples
        print(f"{info['generator']} (step {info['step']}): x{info['scale']} on {info['images']} validation "
              f"images, {'Y' if info['y_channel'] else 'RGB'}, border {info['crop_border']}")
    else:
        print(f"{info['generator']} (step {info['step']}): {info['n']} samples, seed {info['seed']}, "
              f"{info['features']} features {info['features_digest'][:12]}")
    print(format_table(scores))
    return 0


def _evaluate_folders(args: argparse.Namespace, overrides: list[str], json_to: Optional[str]) -> int:
    """``--hr-folder``: the SR papers' table (``distgan.tasks.super_resolution.benchmark``)."""
    given = [f"--{flag.replace('_', '-')}" for flag, _ in EVAL_FLAGS if getattr(args, flag) is not None]
    if overrides or given:
        raise ConfigError(f"--hr-folder scores PSNR/SSIM on that folder under the SR papers' protocol; "
                          f"{(given + overrides)[0]} does not apply to it")
    if args.tile < 0:
        raise ConfigError(f"--tile: must be >= 0 (0 runs the whole image at once), got {args.tile}")
    # One line per image on stderr as it is scored: DIV2K-val takes minutes on a CPU; the table is stdout's.
    result = benchmark.score_folders(args.source, args.hr_folder, args.lr_folder, tile=args.tile,
                                     device=args.device, out=args.out,
                                     progress=lambda row: print(f"{row.image}: {row.psnr:.2f} dB", file=sys.stderr,
                                                                flush=True))
    if json_to == "-":
        print(json.dumps(result.to_dict()))
        return 0
    if json_to:
        _write_json(json_to, result.to_dict())
    print(benchmark.format_table(result))
    if args.out:
        print(f"wrote {len(result.rows)} upscaled images to {args.out}")
    return 0


def _write_json(path: str, payload: dict) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote the scores to {target}", file=sys.stderr)


def upscale(args: argparse.Namespace) -> int:
    if args.tile < 0:
        raise ConfigError(f"--tile: must be >= 0 (0 runs the whole image at once), got {args.tile}")
    if args.tile_overlap < 0:
        raise ConfigError(f"--tile-overlap: must be >= 0, got {args.tile_overlap}")
    if args.scale is not None and args.scale < 1:
        raise ConfigError(f"--scale: must be >= 1, got {args.scale}")
    written = upscale_path(args.source, args.input, args.out, tile=args.tile, overlap=args.tile_overlap,
                           scale=args.scale, device=args.device,
                           progress=lambda src, dst: print(f"{src} -> {dst}", flush=True))
    print(f"wrote {len(written)} image{'s' if len(written) != 1 else ''}")
    return 0


def export(args: argparse.Namespace) -> int:
    try:
        done = export_generator(args.source, args.format, args.out, args.tolerance)
    except ExportCheckFailed as exc:  # the export ran but computes something else: not a usage error
        print(f"distgan: error: {exc}", file=sys.stderr)
        return 1
    print(done.summary())
    print(f"wrote {done.path} (described in {done.metadata_path.name})")
    return 0


def import_published(args: argparse.Namespace) -> int:
    done = import_weights(args.file, args.family, args.out, args.scale)
    for note in done.notes:
        print(f"distgan: note: {note}", file=sys.stderr)
    model = done.meta["model"]
    print(f"imported {args.file} ({done.layout} layout, {done.used}): {model['family']} x{model['scale']}, "
          f"{model['g_width']} features, {model['blocks']} block{'s' if model['blocks'] != 1 else ''}"
          + (f", growth {model['growth']}" if model["family"] == "rrdb" else "")
          + f" -> {done.directory} (generator.safetensors + generator.json)")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Deploy on Ray Serve; without ``--detach``, serve until Ctrl-C (or SIGTERM), then take the app down."""
    replicas = args.replicas if args.replicas == "auto" else _whole(args.replicas, "--replicas")
    limits = ServeLimits(max_n=args.max_n, max_pixels=args.max_pixels, max_body_bytes=int(args.max_body_mb * 2**20),
                         timeout_s=args.timeout)
    options = ServeOptions(host=args.host, port=args.port, route=args.route, replicas=replicas,
                           max_replicas=args.max_replicas, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                           tile=args.tile, limits=limits)
    token = read_token(args.token_file)
    served = serve_generator(args.source, options, token, args.address)
    if not args.detach:  # before the line below: whoever waits for it may stop the server at once
        signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: take the app down as Ctrl-C does
    what = "samples" if served.generates else "upscaling"
    print(f"serving {what} from {args.source} at {served.url} (health: {served.url}/health)"
          + ("; clients send 'Authorization: Bearer TOKEN'" if token else ""), flush=True)
    if args.detach:
        print(f"left running as Serve application {served.app_name!r}; `serve shutdown` on the cluster stops it")
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        served.stop()
        print(f"stopped serving {served.app_name!r}")
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _whole(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a whole number or auto") from None
