"""Mode coverage of a ring8 generator: how many of the 8 modes it covers, and how precisely.

    python benchmarks/ring8_modes.py runs/NAME [--n 2000] [--seed 0]

A sample is near a mode within 3 standard deviations of its centre; a mode is
covered when at least 1% of the samples are near it (see distgan/metrics/modes.py).
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from distgan.data.builtin import RING_STD, ring8_modes
    from distgan.export import generate, load_generator
    from distgan.metrics.modes import mode_coverage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="run directory, checkpoint directory or generator.safetensors")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    module, meta = load_generator(args.source)
    if meta.get("data") != "ring8":
        raise SystemExit(f"{args.source}: trained on {meta.get('data')!r}, not ring8")
    result = mode_coverage(generate(module, args.n, args.seed), ring8_modes(), RING_STD)
    print(f"step {meta.get('step')}: {result.modes_covered}/8 modes covered, "
          f"{result.near_share:.1%} of {args.n} samples within 3 std of a mode; per mode {list(result.per_mode)}")
    return 0 if result.modes_covered >= 7 and result.near_share > 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
