"""Command line: ``distgan train | tune | submit | jobs | sample | evaluate | upscale | export | import-weights |
serve | config | data | ls | report | doctor``.

A thin face over the Python API (``distgan.api``) and the launchers (``distgan.launch``), taking the same
typed config. Its start imports neither torch nor Ray, so ``--help``, ``distgan config keys`` and a config
that fails its key, type or range checks (``distgan.config``) answer at once; torch comes with the full
check (``distgan.checks.validate``, and ``check_sweep`` for a sweep), Ray only when work starts.
``--dry-run`` on train, tune and submit makes every check and prints the plan (``distgan.launch.plan``)
without starting Ray or writing anything. ``distgan config`` shows a resolved config, every key
(``distgan.config.reference``, which also writes docs/config.md) and a JSON Schema for editors. The
commands that use or make a generator (sample, evaluate, upscale, export, import-weights, serve) have their
parsers in ``distgan.generator_cli`` and run in ``distgan.generator_commands``, imported when one of them runs.
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

from distgan import generator_cli  # noqa: E402  (argparse only: cheap)
from distgan.config import Config, ConfigError, load_config  # noqa: E402  (PyYAML only: cheap)

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def split_config_args(items: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """``[CONFIG] [KEY=VALUE ...]``: the config file, if any, comes first and has no '='."""
    items = list(items)
    config = None
    # A file's path may hold '=' (runs/lr=1e-3/best_config.yaml); a key never holds '/'.
    if items and ("=" not in items[0] or Path(items[0]).is_file()):
        if looks_like_key(items[0]) and not Path(items[0]).exists():
            raise bare_key_error(items[0])  # else it is reported as a config file that does not exist
        config = items.pop(0)
    stray = [i for i in items if "=" not in i or Path(i).is_file()]
    if stray and (stray[0].endswith(CONFIG_SUFFIXES) or Path(stray[0]).is_file()):
        raise ConfigError(f"{stray[0]!r}: the config file comes first, before any KEY=VALUE override "
                          f"(distgan train CONFIG KEY=VALUE ...)" if config is None else
                          f"{stray[0]!r}: one config file ({config!r} is given); the rest are KEY=VALUE overrides")
    if stray:
        raise bare_key_error(stray[0])
    pathlike = next((i for i in items if "/" in i.partition("=")[0]), None)
    if pathlike is not None:
        raise ConfigError(f"{pathlike!r}: not a KEY=VALUE override (a key has no '/') and no such file")
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
    if sweep:  # the base as its trials run it, with the space's keys set (check_space)
        from distgan.sweeps.checks import check_sweep

        return check_sweep(cfg)
    from distgan.checks import validate

    return validate(cfg)


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


def cmd_data(args: argparse.Namespace) -> int:
    from distgan.data import commands

    if args.action == "pack":
        return commands.pack_command(args.src, args.dest, args.per_shard, args.skip_corrupt)
    return commands.check_command(args.path, args.json)


def cmd_ls(args: argparse.Namespace) -> int:
    from distgan.api import list_runs
    from distgan.persist.catalog import format_table

    try:
        entries = list_runs(args.storage)
    except FileNotFoundError:
        if args.storage is not None:  # a path the user named and mistyped
            raise
        entries = []  # ./runs is made by the first `distgan train`: nothing has been trained here yet
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

    generator_cli.add_commands(sub)

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


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Options may come between a config and its overrides (``train CFG --name x KEY=VALUE``): argparse ends
    a ``nargs='*'`` positional at the first option and calls what follows unrecognized, so those words are
    given back to the command's config words. Anything that looks like an option is still refused."""
    args, extras = parser.parse_known_args(argv)
    words = next((name for name in ("items", "overrides") if hasattr(args, name)), None)
    first_option = next((i for i, extra in enumerate(extras) if extra.startswith("-")), len(extras))
    if words is None:
        first_option = 0
    if first_option < len(extras):
        parser.error(f"unrecognized arguments: {' '.join(extras[first_option:])}")
    if words is not None:
        setattr(args, words, [*getattr(args, words), *extras])
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(build_parser(), argv)
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
