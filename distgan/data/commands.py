"""``distgan data pack`` and ``distgan data check``: the command bodies (``distgan.cli`` parses, these print).

SRC and PATH may be a directory or a URI, as DEST may (``distgan.data.pack_sources``). Exit codes: 0 when
all is well; 1 when ``check`` finds unreadable images or damaged shards, or ``pack`` fails while writing (a
written shard fails its verification, the store stops answering); a bad argument (a missing folder, a URI
with credentials, a store that cannot be reached, a destination that already holds a shard set) is a
ConfigError, which the CLI prints and exits 2 on.
"""

from __future__ import annotations

import json
import sys

from distgan.data.pack_sources import check, pack


def _error(message: str) -> int:
    print(f"distgan: error: {message}", file=sys.stderr)
    return 1


def pack_command(src: str, dest: str, per_shard: int, skip_corrupt: bool) -> int:
    """Pack ``src`` into shards at ``dest``, a line per verified shard, then the report."""
    try:
        report = pack(src, dest, per_shard, skip_corrupt=skip_corrupt, progress=lambda line: print(line, flush=True))
    except OSError as exc:  # a shard read back wrong (ShardError), or a store that failed mid-way: all removed
        return _error(f"{exc}; nothing was kept")
    print(report.render())
    return 0


def check_command(path: str, as_json: bool) -> int:
    """Report on a folder or shard set; exit 1 when anything in it is unreadable or damaged."""
    report = check(path)
    print(json.dumps(report.to_dict()) if as_json else report.render())
    if report.ok:
        return 0
    found = [f"{n} {what}" for n, what in ((len(report.unreadable), "unreadable image(s)"),
                                          (len(report.problems), "damaged-shard problem(s)")) if n]
    first = report.problems[0] if report.problems else f"{report.unreadable[0][0]}: {report.unreadable[0][1]}"
    return _error(f"{report.location}: {' and '.join(found)}; first: {first}")
