"""Command line: ``distgan train | tune | submit | jobs | sample | evaluate | upscale | export | import-weights |
serve | config | data | ls | report | doctor``.

A thin face over the Python API (``distgan.api``) and the launchers (``distgan.launch``), taking the same
typed config. Its start imports neither torch nor Ray, so ``--help``, ``distgan config keys`` and a config
that fails its key, type or range checks (``distgan.config``) answer at once; torch comes with the full
check (``distgan.checks.validate``, and ``check_sweep`` for a sweep), Ray only when work starts.
``--dry-run`` on train, tune and submit makes every check and prints the plan (``distgan.launch.plan``)
without starting Ray or writing anything. ``distgan config`` shows a resolved config, every key
(``distgan.config.reference``, which also writes docs/config.md) and a JSON Schema for editors. The
commands that use or make a generator (sample, evaluate, upscale, export, import-weights, serve) parse here and run in
``distgan.generator_commands``, imported when one of them runs.
"""

from __future__ import annotations

import time

STARTED = time.time()
"""When the command started (before the heavy imports): the start of its start-up breakdown."""

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

from distgan.config import Config, ConfigError, load_config  # noqa: E402  (PyYAML only: cheap)

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def split_config_args(items: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """``[CONFIG] [KEY=VALUE ...]``: the config file, if any, comes first and has no '='."""
    items = list(items)
    config = None
    if items and "=" not in items[0]:
        if looks_like_key(items[0]) and not Path(items[0]).exists():
            raise bare_key_error(items[0])  # else it is reported as a config file that does not exist
        config = items.pop(0)
    stray = [i for i in items if "=" not in i]
    if stray:
        raise bare_key_error(stray[0])
    return config, items


def looks_like_key(item: str) -> bool:
    """``train.steps`` (a section, a dot), not ``train.yaml`` or ``configs/x``: what a bare key looks like."""
    head, dot, _ = item.partition(".")
    sections = {f.name for f in dataclasses.fields(Config)}
    return bool(dot) and head in sections and "/" not in item and not item.endswith(CONFIG_SUFFIXES)


def bare_key_error(item: str) -> ConfigError:
    from distgan.config.reference import find, yaml_value

    known = find(item)
    example = f"{item}={yaml_value(known.default)} (its default)" if known else "train.steps=200"
    return ConfigError(f"{item!r}: a bare key; give KEY=VALUE, e.g. {example}")


def load_checked(items: Sequence[str], sweep: bool = False) -> Config:
    """``[CONFIG] [KEY=VALUE ...]`` -> a Config checked in full (and its ``tune`` section with ``sweep``).

    The cheap checks (keys, types, ranges) run before torch is imported for the registries, so a misspelt
    key answers at once; Ray is imported only after this, once the config can run.
    """
    config_path, overrides = split_config_args(items)
    cfg = load_config(config_path, tuple(overrides))
    from distgan.checks import validate

    validate(cfg)
    if sweep:
        from distgan.sweeps.checks import check_sweep

        check_sweep(cfg)
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from distgan.launch.loopback import keep_embedded_ray_on_loopback

    keep_embedded_ray_on_loopback(args.address)  # before anything imports ray
    cfg = load_checked(args.items)
    if args.dry_run:
        from distgan.launch.plan import train_plan

        print(train_plan(cfg, args.name, args.storage, args.address).render())
        return 0
    from distgan.launch.train import train  # not distgan.api.train: this one takes the command's start time

    result = train(cfg, name=args.name, address=args.address, storage=args.storage, started=STARTED)
    kept = "" if result.location == str(result.run_dir) else f"{result.location}; a copy of its outputs is in "
    print(f"Done: {kept}{result.run_dir} (generator: {result.run_dir / 'generator.safetensors'})")
    startup = result.run_dir / "startup.json"
    if startup.is_file():
        import json

        from distgan.tracking.startup import format_breakdown

        print(format_breakdown(json.loads(startup.read_text())["marks"]))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from distgan.launch.loopback import keep_embedded_ray_on_loopback

    keep_embedded_ray_on_loopback(args.address)
    config_path, overrides = split_config_args(args.items)
    if args.resume and (config_path or overrides):
        raise ConfigError("--resume continues a sweep with the config it was started with; give only --name")
    if args.resume and not args.name:
        raise ConfigError("--resume: name the sweep to continue with --name")
    cfg = None if args.resume else load_checked(args.items, sweep=True)  # a resumed sweep keeps its own
    if args.dry_run:
        from distgan.launch.plan import tune_plan

        print(tune_plan(cfg, args.name, args.storage, args.address, args.resume).render())
        return 0
    from distgan.api import tune

    result = tune(cfg, name=args.name, address=args.address, storage=args.storage, resume=args.resume)
    return 0 if result.best is not None else 1


def _jobs_address(args: argparse.Namespace) -> str:
    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError("--address: give the cluster's Jobs API address, e.g. http://HEAD:8265 "
                          "(or set RAY_API_SERVER_ADDRESS)")
    return address


def cmd_submit(args: argparse.Namespace) -> int:
    from distgan.launch import plan, submit

    # A bad config, storage or address fails here, before anything is sent.
    cfg = load_checked(args.items, sweep=args.tune and not args.resume)
    storage = plan.submit_storage(args.storage, cfg)
    address = _jobs_address(args)
    if args.dry_run:
        print(plan.submit_plan(cfg, address, args.name, storage, args.tune, args.resume, args.package).render())
        return 0
    name = plan.submit_name(cfg, args.name, args.tune)
    command = "tune" if args.tune else "train"
    job_id = submit.submit(cfg, address, name, storage, command, args.package, args.resume)
    print(f"Submitted {command} {name!r} as job {job_id}; runs in {storage}/{name}", flush=True)
    if not args.follow:
        print(f"Follow it with: distgan jobs logs {job_id} --address {address} --follow")
        return 0
    status = submit.follow(address, job_id)
    print(f"Job {job_id} {status}")
    return 0 if status == "SUCCEEDED" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from distgan.launch import submit

    address = _jobs_address(args)
    if args.action == "list":
        rows = submit.list_jobs(address)
        for row in rows:
            print(f"{row['id']}  {row['kind']:<5}  {row['name']}  {row['status']}  {row['message']}")
        if not rows:
            print("no distgan jobs on this cluster")
        return 0
    if not args.job_id:
        raise ConfigError(f"jobs {args.action}: give the job id (see `distgan jobs list`)")
    if args.action == "logs":
        if args.follow:
            status = submit.follow(address, args.job_id)
            print(f"Job {args.job_id} {status}")
            return 0 if status == "SUCCEEDED" else 1
        print(submit.logs(address, args.job_id), end="")
        return 0
    stopped = submit.stop(address, args.job_id)
    print(f"Job {args.job_id} {'stopping' if stopped else 'had already ended'}")
    return 0


def generator_command(name: str):
    """A command of ``distgan.generator_commands``, imported when it runs: it brings torch with it."""

    def run(args: argparse.Namespace) -> int:
        from distgan import generator_commands

        return getattr(generator_commands, name)(args)

    return run


def cmd_data(args: argparse.Namespace) -> int:
    from distgan.data import commands

    if args.action == "pack":
        return commands.pack_command(args.src, args.dest, args.per_shard, args.skip_corrupt)
    return commands.check_command(args.path, args.json)


def cmd_ls(args: argparse.Namespace) -> int:
    from distgan.api import list_runs
    from distgan.persist.catalog import format_table

    entries = list_runs(args.storage)
    if args.json:
        import json

        print(json.dumps([e.as_dict() for e in entries], indent=2))
    elif entries:
        print(format_table(entries))
    else:
        print(f"no runs or sweeps in {args.storage or 'runs'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from distgan.api import report

    path = report(args.source, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); open it in a browser, it needs no server")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    config_path, overrides = split_config_args(args.items)
    cfg = load_config(config_path, tuple(overrides)) if args.items else None
    try:
        from distgan.launch import doctor
    except ImportError as exc:  # doctor needs torch itself: a broken install is the finding
        print(f"fail  {exc.name or 'import'}  cannot be imported ({exc})\n"
              f"      -> install the project's dependencies: `make setup` (or pip install -e .)")
        return 1
    checks = doctor.run_checks(address=args.address, storage=args.storage, cfg=cfg)
    print(doctor.render(checks))
    return 1 if any(c.status == doctor.FAIL for c in checks) else 0


def cmd_config(args: argparse.Namespace) -> int:
    from distgan.config import reference

    if args.action == "keys":
        sys.stdout.write(reference.render_markdown() if args.markdown else reference.render_keys())
        return 0
    if args.action == "schema":
        import json

        text = json.dumps(reference.json_schema(), indent=2) + "\n"
        if args.out:
            Path(args.out).write_text(text)
            print(f"wrote the JSON Schema of distgan configs to {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    import yaml

    cfg = load_checked(args.items, sweep=args.tune)
    sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return 0


def config_epilog() -> str:
    """The config's sections, one line each from their docstrings, and where every key is described."""
    from distgan.config.reference import sections

    found = sections()
    width = max(len(name) for name, _ in found)
    lines = ["config sections (override any key as SECTION.KEY=VALUE, e.g. train.steps=200):"]
    lines += [f"  {name:<{width}}  {' '.join(doc.replace('``', '`').split())}" for name, doc in found]
    lines += ["", "Every key with its type, default and meaning: `distgan config keys` or docs/config.md;",
              "a config as it resolves, checked: `distgan config show [CONFIG] [KEY=VALUE ...]`."]
    return "\n".join(lines)


def _launch_arguments(p: argparse.ArgumentParser, items_help: str, name_help: str) -> None:
    """What ``train`` and ``tune`` share: config and overrides, a name, the cluster and the storage."""
    p.add_argument("items", nargs="*", metavar="[CONFIG] [KEY=VALUE]", help=items_help)
    p.add_argument("--name", help=name_help)
    p.add_argument("--address", help="Ray cluster to join (e.g. auto or ray://HEAD:10001)")
    p.add_argument("--storage", help="where runs are kept (default ./runs): a directory, or for train a URI such "
                                     "as s3://bucket/runs or gs://bucket/runs")
    _dry_run_argument(p)


def _dry_run_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print the plan (workers, devices, ZeRO, storage, run directory, "
                        "fresh or resumed); starts no Ray and writes nothing")


SOURCE_HELP = "a run directory, checkpoint or generator.safetensors, or its URI (s3://bucket/runs/NAME)"


def build_parser() -> argparse.ArgumentParser:
    epilog = config_epilog()

    def command(name: str, summary: str, with_config: bool = False) -> argparse.ArgumentParser:
        # Commands that take a config list its sections under their options, as the top level does.
        return sub.add_parser(name, help=summary, epilog=epilog if with_config else None,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    parser = argparse.ArgumentParser(prog="distgan", epilog=epilog,
                                     description="Distributed GAN training on Ray Train with DeepSpeed engines "
                                                 "for G and D.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = command("train", "train a GAN on Ray (embedded local Ray unless --address)", with_config=True)
    _launch_arguments(p, "a YAML config (default: DCGAN on digits) and dotted overrides, e.g. train.steps=200",
                      "run name; an existing run of that name is resumed")
    p.set_defaults(func=cmd_train)

    p = command("tune", "a Ray Tune sweep over the config's tune.space, each trial a distributed run",
                with_config=True)
    _launch_arguments(p, "a YAML config with a tune section, and dotted overrides",
                      "sweep name (directory under --storage)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep; finished trials stay done")
    p.set_defaults(func=cmd_tune)

    p = command("submit", "run training (or a sweep with --tune) as a job on a Ray cluster", with_config=True)
    p.add_argument("items", nargs="*", metavar="[CONFIG] [KEY=VALUE]", help="a YAML config and dotted overrides")
    p.add_argument("--address", help="the cluster's Jobs API, e.g. http://HEAD:8265 (default: "
                                     "RAY_API_SERVER_ADDRESS)")
    p.add_argument("--storage", help="where the cluster keeps runs: a path every node mounts, or for a run a "
                                     "URI such as s3://bucket/runs (default: DISTGAN_STORAGE)")
    p.add_argument("--name", help="run or sweep name; submitting the same name again resumes it")
    p.add_argument("--tune", action="store_true", help="submit the config's sweep (distgan tune) instead")
    p.add_argument("--resume", action="store_true", help="with --tune: continue the named sweep")
    p.add_argument("--follow", action="store_true", help="stream the job's logs; exit with its status")
    p.add_argument("--package", choices=["local", "installed"], default="local",
                   help="upload this distgan with the job (local), or use the one in the cluster's image")
    _dry_run_argument(p)
    p.set_defaults(func=cmd_submit)

    p = command("config", "show a resolved config, every key, or a JSON Schema for editors", with_config=True)
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("show", help="print the config (file + overrides + defaults) as YAML, checked in full")
    q.add_argument("items", nargs="*", metavar="[CONFIG] [KEY=VALUE]", help="a YAML config and dotted overrides")
    q.add_argument("--tune", action="store_true", help="check its tune section too, as distgan tune does")
    q = actions.add_parser("keys", help="every dotted key with its type, default and description")
    q.add_argument("--markdown", action="store_true", help="as Markdown: the text of docs/config.md")
    q = actions.add_parser("schema", help="a JSON Schema (draft 2020-12) of config files, for YAML editors")
    q.add_argument("--out", help="write it to this file (default: standard output)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("jobs", help="list, follow or stop distgan jobs on a Ray cluster")
    p.add_argument("action", choices=["list", "logs", "stop"])
    p.add_argument("job_id", nargs="?", help="submission id (for logs and stop)")
    p.add_argument("--address", help="the cluster's Jobs API (default: RAY_API_SERVER_ADDRESS)")
    p.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("sample", help="generate samples from a run or an exported generator")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--out", required=True, help="FILE.png for a grid, FILE.npz for an array 'images'")
    p.add_argument("--seed", type=int, default=0, help="latent seed")
    p.add_argument("--zoom", type=int, default=1, help="enlarge a .png grid this many times (nearest pixel)")
    p.add_argument("--labels", help="conditional generators: 'all' (default, equal shares) or classes, "
                                    "e.g. 0,1,2 or class names; .npz output then holds 'labels'")
    p.add_argument("--truncation", type=float, metavar="PSI",
                   help="style-based generators: pull w toward its tracked mean, w_avg + PSI (w - w_avg); "
                        "1 leaves it, 0 gives the average image, 0.5-0.7 trades variety for quality")
    p.add_argument("--mix", nargs="?", const="4x4", metavar="ROWSxCOLS",
                   help="style-based generators: a style-mixing grid (default 4x4, .png): each cell takes the "
                        "coarse styles of its row's latent and the rest of its column's; --n is not used")
    p.add_argument("--crossover", type=int, metavar="K",
                   help="--mix: the first style taken from the columns (default: 4, the 4x4 and 8x8 styles, "
                        "at most half the styles)")
    p.add_argument("--interpolate", nargs="?", const="4x8", metavar="KxSTEPS",
                   help="a walk through K latents (default 4x8), STEPS images from each to the next: strips "
                        "(.png), a looping animation (.gif) or an array (.npz); in W for style-based "
                        "generators, along the sphere in z for others; --n is not used")
    p.add_argument("--fps", type=float, default=12.0, help="--interpolate's .gif: frames a second")
    p.add_argument("--noise-mode", choices=["const", "random", "none"],
                   help="style-based generators' per-pixel noise (default const: the same seed, the same images)")
    p.set_defaults(func=generator_command("sample"))

    p = sub.add_parser("evaluate", help="score a generator: FID, KID, precision/recall (and class accuracy); for "
                                        "super-resolution PSNR/SSIM, on its validation images or --hr-folder")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="eval.* or data.* overrides")
    p.add_argument("--metrics", help="comma-separated: fid, kid, pr, class_acc (default: the run's eval.metrics)")
    p.add_argument("--n", type=int, help="generated samples (default: the run's eval.n)")
    p.add_argument("--features", choices=["auto", "domain", "inception", "identity"], help="feature space")
    p.add_argument("--inception-weights", help="FID Inception-v3 weights file (for --features inception)")
    p.add_argument("--seed", type=int, help="latent seed")
    p.add_argument("--batch-size", type=int, help="samples per forward pass")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="alone: print one JSON object instead of the table; --json FILE: write it to FILE "
                        "and print the table")
    q = p.add_argument_group("super-resolution benchmarks (Set5, Set14, DIV2K-val, ...)")
    q.add_argument("--hr-folder", metavar="DIR", help="score PSNR/SSIM (Y, border = scale) per image and on "
                                                      "average, bicubic beside, on these high-resolution images")
    q.add_argument("--lr-folder", metavar="DIR", help="their low-resolution inputs, paired by name (default: "
                                                      "MATLAB bicubic downsampling of the HR)")
    q.add_argument("--out", metavar="DIR", help="also write the upscaled images there as PNGs")
    q.add_argument("--tile", type=int, default=0, help="tile side in LR pixels for big images (0: whole)")
    q.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where G runs")
    p.set_defaults(func=generator_command("evaluate"))

    p = sub.add_parser("import-weights", help="a released ESRGAN/Real-ESRGAN/BasicSR generator (.pth or "
                                              ".safetensors) as a distgan generator directory")
    p.add_argument("file", metavar="FILE", help="the weights: read as tensors only (never unpickling objects), "
                                                "bare or BasicSR's params_ema/params")
    p.add_argument("--family", required=True, choices=["rrdb", "srresnet"], help="the model family it is")
    p.add_argument("--scale", type=int, help="expected upscaling factor; an error if the file's differs")
    p.add_argument("--out", required=True, metavar="DIR", help="new directory for generator.safetensors + "
                                                               "generator.json (for upscale, evaluate, "
                                                               "train.init_from)")
    p.set_defaults(func=generator_command("import_published"))

    p = sub.add_parser("upscale", help="super-resolve an image, or a folder of them, with an SR generator")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help="a run, checkpoint or generator.safetensors "
                                                                 "of model.family srresnet or rrdb, or its URI")
    p.add_argument("input", metavar="INPUT", help="a PNG/JPEG file, or a folder of them (searched recursively)")
    p.add_argument("--out", help="output PNG for a file (default INPUT_x{scale}.png beside it) or output folder "
                                 "for a folder (default FOLDER_x{scale}/ beside it, tree mirrored)")
    p.add_argument("--tile", type=int, default=0, help="tile side in input pixels, bounding memory on big images "
                                                       "(e.g. 256); 0 runs the whole image at once")
    p.add_argument("--tile-overlap", type=int, default=16,
                   help="context in input pixels around each tile; exact when >= G's receptive-field radius, "
                        "otherwise the seams differ slightly (default 16)")
    p.add_argument("--scale", type=int, help="expected upscaling factor; an error if the generator's differs")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where G runs (auto: the GPU when there is one)")
    p.set_defaults(func=generator_command("upscale"))

    p = sub.add_parser("export", help="a generator as an ONNX or TorchScript file (dynamic batch, and image size "
                                      "for super-resolution), checked against PyTorch before it is written")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    # No argparse choices: the formats' registry (distgan.deploy.formats) names them, and torch loads late.
    p.add_argument("--format", required=True, metavar="onnx|torchscript",
                   help="onnx (ONNX Runtime and most deploy targets; needs the export extra) or torchscript "
                        "(torch.jit.load, LibTorch)")
    p.add_argument("--out", metavar="F", help="the file to write (default: beside the weights, generator.onnx or "
                                              "generator.torchscript.pt); its description goes to F.json")
    p.add_argument("--tolerance", type=float, help="largest max abs difference from PyTorch accepted "
                                                   "(default 1e-4)")
    p.set_defaults(func=generator_command("export"))

    p = sub.add_parser("serve", help="a generator behind HTTP on Ray Serve (samples, or upscaling), batched and "
                                     "replicated; loopback only unless given a host and a token")
    p.add_argument("source", metavar="RUN_DIR_OR_GENERATOR", help=SOURCE_HELP)
    p.add_argument("--address", help="a Ray cluster (HOST:6379, ray://HEAD:10001 or auto); default: an embedded Ray")
    p.add_argument("--host", default="127.0.0.1", help="address the HTTP proxy binds (default 127.0.0.1); any "
                                                       "other needs a token")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--route", default="/", help="path the app answers under, e.g. /digits (default /)")
    p.add_argument("--replicas", default="1", help="replicas, or auto: 1 to --max-replicas by queue length")
    p.add_argument("--max-replicas", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=64, help="samples or images per batch (default 64)")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="longest wait for a batch to fill (10)")
    p.add_argument("--tile", type=int, default=128, help="upscaling tile side in input pixels (0: whole images)")
    p.add_argument("--max-n", type=int, default=64, help="samples per request (default 64)")
    p.add_argument("--max-pixels", type=int, default=4_000_000, help="input pixels per image to upscale")
    p.add_argument("--max-body-mb", type=float, default=20.0, help="request body size (default 20 MiB)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request, end to end (default 60)")
    p.add_argument("--token-file", metavar="FILE", help="the bearer token clients must send (else $DISTGAN_SERVE_"
                                                        "TOKEN); required beyond loopback, never printed")
    p.add_argument("--detach", action="store_true", help="return once deployed and leave it running on the cluster")
    p.set_defaults(func=generator_command("serve"))

    p = sub.add_parser("data", help="pack an image folder into verified tar shards; check a folder or shard set")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("pack", help="write SRC's images as WebDataset-style tar shards + index.json at DEST")
    q.add_argument("src", metavar="SRC", help="a folder of PNG/JPEG images (recursive; sub-folders are classes): "
                                              "a directory, or a URI such as s3://bucket/photos")
    q.add_argument("dest", metavar="DEST", help="a new directory, or a URI such as s3://bucket/data")
    q.add_argument("--per-shard", type=int, default=1000, help="images per shard (default 1000)")
    q.add_argument("--skip-corrupt", action="store_true", help="leave unreadable images out (listed) instead of "
                                                                "failing")
    q = actions.add_parser("check", help="count, size and verify a folder or shard set; exit 1 on problems")
    q.add_argument("path", metavar="PATH", help="an image folder or a shard set: a directory, or a URI")
    q.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("ls", help="runs and sweeps under a storage: task, status, step, best score, checkpoint, "
                                  "wall time (read from the run directories; no Ray)")
    p.add_argument("storage", nargs="?", metavar="STORAGE",
                   help="a directory or URI holding runs (default ./runs, as train uses); a run or sweep "
                        "directory lists itself or its trials")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects with the same fields")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("report", help="a run or sweep as one self-contained HTML file: curves against step and "
                                      "wall time, findings, samples, restarts, start-up, config")
    p.add_argument("source", metavar="RUN_OR_SWEEP", help="a run or sweep directory, finished or not")
    p.add_argument("--out", metavar="FILE.html", help="where to write it (default RUN_OR_SWEEP/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("doctor", help="check this machine for a run: versions, GPUs, DeepSpeed ops, weights, "
                                      "W&B, Ray, storage; exit 1 when a default run cannot start")
    p.add_argument("items", nargs="*", metavar="[CONFIG] [KEY=VALUE]",
                   help="optionally a config whose weights paths, W&B setting and storage to check")
    p.add_argument("--address", help="a Ray cluster to probe (HOST:6379, ray://HEAD:10001, http://HEAD:8265 "
                                     "or auto); default: the embedded Ray a run starts")
    p.add_argument("--storage", help="where runs will be kept, probed with a file written and removed "
                                     "(default: the config's train.storage, else ./runs)")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"distgan: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from distgan.persist.export import GeneratorFileError
        from distgan.launch.submit import SubmitError
        from distgan.persist.rundir import RunFailed

        if isinstance(exc, RunFailed):  # the workers' tracebacks are in the log above
            print(f"distgan: error: {exc}", file=sys.stderr)
            return 1
        if not isinstance(exc, (SubmitError, GeneratorFileError)):
            raise
        print(f"distgan: error: {exc}", file=sys.stderr)
        return 2
