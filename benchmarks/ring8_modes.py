"""Mode coverage of a ring8 generator: how many of the 8 modes it covers, and how precisely.

    python benchmarks/ring8_modes.py runs/NAME [--n 2000] [--seed 0]

A sample is near a mode within 3 standard deviations of its centre; a mode is
covered when at least 1% of the samples are near it (see distgan/metrics/modes.py).
"""

from __future__ import annotations

import sys

from _generator_args import load_from_args


def main(argv=None) -> int:
    from distgan.data.builtin import RING_STD, ring8_modes
    from distgan.persist.export import generate
    from distgan.metrics.modes import mode_coverage

    args, module, meta = load_from_args(argv, __doc__.splitlines()[0], "ring8")
    result = mode_coverage(generate(module, args.n, args.seed), ring8_modes(), RING_STD)
    print(f"step {meta.get('step')}: {result.modes_covered}/8 modes covered, "
          f"{result.near_share:.1%} of {args.n} samples within 3 std of a mode; per mode {list(result.per_mode)}")
    return 0 if result.modes_covered >= 7 and result.near_share > 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
