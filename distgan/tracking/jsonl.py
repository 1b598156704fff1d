"""``metrics.jsonl``: one JSON object per logged step, appended by rank 0.

A non-finite number is written as ``null`` (JSON has no NaN): a logged key whose value is ``null`` held a
NaN or an infinity (``is_non_finite``).

Reading is strict but for the last line. A line is appended with one write, so a run killed mid-write (or a
file read while rank 0 writes it) ends in a line cut short, which is left out; any other line that is not a
JSON object was not cut short by a write and means the file was damaged: an error names its file and line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from distgan.config import ConfigError


class JsonlError(ConfigError):
    """A JSON-lines file with a line that is not a JSON object before its last line; the message names the
    file and the line. A ``ConfigError``: the CLI reports it as the bad input it is (exit 2), no traceback."""


def is_non_finite(record: dict, key: str) -> bool:
    """Whether ``record`` logged ``key`` as NaN or an infinity: ``null`` as ``MetricsLog`` writes it, or a
    float as a record not yet written (or a log of another writer, ``NaN`` in the file) holds it."""
    if key not in record:
        return False
    value = record[key]
    return value is None or (isinstance(value, float) and not math.isfinite(value))


class MetricsLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def rewind(self, step: int) -> None:
        """Drop records past ``step``: after a restart from a checkpoint at ``step``
        those steps are trained again, and the log must not hold them twice. A last line cut short by the
        crash goes too, so the next record does not run on from it."""
        if not self.path.is_file():
            return
        keep = [record for record in read_jsonl(self.path) if record.get("step", 0) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(record) + "\n" for record in keep))
        os.replace(tmp, self.path)

    def append(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")


def _record(line: str) -> dict | None:
    """The JSON object on ``line``, or None when it is not one."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file, a last line cut short left out (see the module's docstring)."""
    path = Path(path)
    # Bytes a write cut short may end inside a character; such a line fails to parse below.
    lines = [(n, line) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    records = []
    for i, (number, line) in enumerate(lines):
        record = _record(line)
        if record is not None:
            records.append(record)
        elif i < len(lines) - 1:
            raise JsonlError(f"{path}: line {number} is not a JSON object ({line[:60]!r}); only the last line "
                             f"may be cut short (by a write in progress): the file was damaged")
    return records


def read_metrics(path: Path) -> list[dict]:
    return read_jsonl(path)
