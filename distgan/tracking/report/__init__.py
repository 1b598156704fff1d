"""``distgan report``: a run or a sweep as one self-contained HTML file, from its directory alone.

``load`` reads the run (or sweep) directory, ``findings`` applies the rules that
head the report, ``svg`` draws the charts, ``page`` assembles the file. A run
writes its own report at its end (``tracking.report``); ``distgan report`` writes
one for any run or sweep, finished or not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from distgan.config import ConfigError
from distgan.tracking.report.load import is_sweep, load_run, load_sweep
from distgan.tracking.report.page import run_page, sweep_page

FILE = "report.html"


def write_report(source: Union[str, os.PathLike], out: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Write the report of the run or sweep directory ``source`` to ``out`` (default ``source/report.html``),
    atomically (a temporary file, then a rename); returns its path."""
    source = Path(source)
    page = sweep_page(load_sweep(source)) if is_sweep(source) else run_page(load_run(source))
    target = Path(out) if out is not None else source / FILE
    if target.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {str(target)!r}: a report is an .html file")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


__all__ = ["FILE", "write_report"]
