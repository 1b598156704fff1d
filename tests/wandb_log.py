"""W&B's offline transaction log (``run-*.wandb``) read back with W&B's own record type, for tests of what a
run leaves there. Only W&B's protobuf is used: the framing is LevelDB's log format, parsed here."""

from __future__ import annotations

import time
from pathlib import Path

BLOCK = 32768


def chunks(data: bytes) -> list[bytes]:
    """The records of W&B's transaction log: after a 7-byte file header, LevelDB's log format (32 KiB blocks;
    each chunk a 4-byte checksum, a 2-byte length, a type: 1 whole, 2-4 first, middle and last parts)."""
    pos, found, pending = 7, [], b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if pos + 7 + length > len(data):  # read while W&B's service was still writing it: the tail is not whole
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            found.append(chunk)
        elif kind in (2, 3):
            pending += chunk
        elif kind == 4:
            found.append(pending + chunk)
            pending = b""
    return found


def read_log(path: Path) -> list:
    """Every whole record of one ``.wandb`` file, as far as it is written (a chunk cut short by a write still
    under way is left out, as is a record whose last part is not written yet)."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data.startswith(b":W&B"), f"{path}: not a W&B transaction log"
    found = []
    for chunk in chunks(data):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        found.append(record)
    return found


def records(run_dir: Path, wait_s: float = 60.0) -> list:
    """The records of the run's one offline log, once it is whole. ``run.finish()`` returns before W&B's
    service has written the log out (measured: under load, an empty log just after it and all 15 records 3 s
    later); the service writes the ``exit`` record last."""
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + wait_s
    while True:
        found = read_log(path)
        if (found and found[-1].HasField("exit")) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def logged_steps(found: list) -> list[int]:
    """The ``step`` metric of every history row (the loop logs its step as a metric, not as W&B's step)."""
    import json

    steps = []
    for record in found:
        if record.HasField("history"):
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if "step" in items:
                steps.append(int(json.loads(items["step"])))
    return steps
