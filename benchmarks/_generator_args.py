"""The command line shared by the sample-quality scripts: which generator, how many samples, which seed."""

from __future__ import annotations

import argparse


def load_from_args(argv, description: str, data: str):
    """Parse ``SOURCE [--n N] [--seed S]``; returns (args, generator, metadata) for a ``data`` generator."""
    from distgan.persist.export import load_generator

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("source", help="run directory, checkpoint directory or generator.safetensors")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    module, meta = load_generator(args.source)
    if meta.get("data") != data:
        raise SystemExit(f"{args.source}: trained on {meta.get('data')!r}, not {data}")
    return args, module, meta
