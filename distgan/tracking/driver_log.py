"""``train.log``: the driver's console, kept in the run directory with a timestamp on every line.

The console is where a user watches a run (the progress lines, the start and resume notices, the workers'
output that Ray forwards, warnings), and once the terminal is closed it is gone. ``driver_log`` tees
``sys.stdout`` and ``sys.stderr`` into the file line by line, and hands the ``distgan`` loggers' records to it
too: a handler configured before (``logging.basicConfig`` in the CLI) holds the console stream it was given,
so its lines never pass through the tee. The console output itself is unchanged; the file is appended to, so
a resumed run's log follows on from its earlier attempts'.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TextIO

FILE = "train.log"
LOGGER = "distgan"
# Terminal colour and cursor codes (Ray colours the prefix of every line it forwards from a worker, tty or
# not): the console keeps them, the file is read with less, grep and editors, where they are noise.
ESCAPE_CODE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def stamp(when: Optional[float] = None) -> str:
    """Local wall-clock time to the millisecond: what each line of the file begins with."""
    when = time.time() if when is None else when
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1000):03d}"


class LogFile:
    """The file, written a whole stamped line at a time by every thread that prints."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write_lines(self, text: str, when: Optional[float] = None, tag: str = "") -> None:
        prefix = f"{stamp(when)} {tag}" if tag else f"{stamp(when)} "
        lines = ESCAPE_CODE.sub("", text).split("\n")
        with self._lock:
            if not self._file.closed:
                self._file.write("".join(f"{prefix}{line.rstrip(chr(13))}\n" for line in lines))
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class Tee:
    """A text stream that writes through to ``console`` and sends each completed line to the log file."""

    def __init__(self, console: TextIO, log: LogFile, tag: str = ""):
        self.console, self.log, self.tag = console, log, tag
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self.console.write(text)
        with self._lock:
            self._partial += text
            *done, self._partial = self._partial.split("\n")
        if done:
            self.log.write_lines("\n".join(done), tag=self.tag)
        return written

    def flush(self) -> None:
        self.console.flush()

    def finish(self) -> None:
        """Log a last line that never got its newline."""
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            self.log.write_lines(rest, tag=self.tag)

    def __getattr__(self, name: str):
        return getattr(self.console, name)  # isatty, fileno, encoding, ...: the console's


class RecordsToFile(logging.Handler):
    """The ``distgan`` loggers' records, into the log file.

    With no handler anywhere else, Python would print a warning through its last-resort handler; this one
    counts as a handler and would silence that, so it prints it to the console itself, as that would have.
    """

    def __init__(self, log: LogFile, console: TextIO):
        super().__init__()
        self.log, self.console = log, console
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.write_lines(self.format(record), when=record.created)
            if record.levelno >= logging.lastResort.level and not self._others_handle(record):
                self.console.write(record.getMessage() + "\n")
        except Exception:  # noqa: BLE001 -- logging must never raise into the code that logged
            self.handleError(record)

    def _others_handle(self, record: logging.LogRecord) -> bool:
        logger: Optional[logging.Logger] = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


@contextlib.contextmanager
def driver_log(path: Path, earlier: Sequence[tuple[float, str]] = (),
               on_close: Optional[Callable[[Path], None]] = None) -> Iterator[Path]:
    """Keep what this process prints, and what the ``distgan`` loggers log, in ``path`` while inside.

    ``earlier``: (epoch seconds, line) pairs printed before the file could exist (the start notice, printed
    before the run directory is made). ``on_close`` gets the path once the file is closed (a run under a URI
    uploads its staging copy). An exception leaving the block is noted in the file before it goes on.
    """
    log = LogFile(path)
    for when, line in earlier:
        log.write_lines(line, when=when)
    out, err = sys.stdout, sys.stderr
    tees = (Tee(out, log), Tee(err, log))
    handler = RecordsToFile(log, err)
    logger = logging.getLogger(LOGGER)
    sys.stdout, sys.stderr = tees
    logger.addHandler(handler)
    try:
        yield log.path
    except BaseException as exc:
        log.write_lines(f"stopped: {type(exc).__name__}: {exc}")
        raise
    finally:
        logger.removeHandler(handler)
        # Put back only what is still ours: code inside may have replaced the streams itself.
        if sys.stdout is tees[0]:
            sys.stdout = out
        if sys.stderr is tees[1]:
            sys.stderr = err
        for tee in tees:
            tee.finish()
        log.close()
        if on_close is not None:
            on_close(log.path)
