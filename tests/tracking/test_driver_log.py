"""``train.log``: what the driver prints and the distgan loggers log, kept with a timestamp per line."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time

from distgan.tracking.driver_log import FILE, driver_log

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "


def test_printed_and_logged_lines_land_stamped_and_the_console_is_unchanged(tmp_path, capsys):
    path = tmp_path / "run" / FILE
    started = time.time() - 5
    with driver_log(path, earlier=[(started, "Starting run 'x' in /runs/x")]):
        print("step 10/100 loss_g 1.0")
        sys.stdout.write("partial ")
        sys.stdout.write("line\n")
        print("to stderr", file=sys.stderr)
        thread = threading.Thread(target=print, args=("from a thread",))
        thread.start()
        thread.join()
        logging.getLogger("distgan.launch.train").warning("data.cpus_per_task: the cluster has %d CPUs", 2)
        print("no newline at the end", end="")
    console = capsys.readouterr()
    assert console.out == "step 10/100 loss_g 1.0\npartial line\nfrom a thread\nno newline at the end"
    assert console.err.startswith("to stderr\n")
    lines = path.read_text().splitlines()
    assert all(re.match(STAMP, line) for line in lines), lines
    bodies = [re.sub(STAMP, "", line, count=1) for line in lines]
    assert bodies[0] == "Starting run 'x' in /runs/x"
    assert lines[0].startswith(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)))
    assert bodies[1:] == ["step 10/100 loss_g 1.0", "partial line", "to stderr", "from a thread",
                          "WARNING distgan.launch.train: data.cpus_per_task: the cluster has 2 CPUs",
                          "no newline at the end"]
    assert sys.stdout is not None and "Tee" not in type(sys.stdout).__name__
    assert not any(type(h).__name__ == "RecordsToFile" for h in logging.getLogger("distgan").handlers)


def test_the_file_has_no_terminal_colour_codes_the_console_keeps(tmp_path, capsys):
    coloured = "\x1b[36m(RayTrainWorker pid=6441)\x1b[0m finished at step 60 \x1b[32m [repeated 2x]\x1b[0m"
    with driver_log(tmp_path / FILE):
        print(coloured)
    assert capsys.readouterr().out == coloured + "\n"
    body = re.sub(STAMP, "", (tmp_path / FILE).read_text(), count=1)
    assert body == "(RayTrainWorker pid=6441) finished at step 60  [repeated 2x]\n"


def test_a_second_entry_appends_and_an_error_is_noted(tmp_path, capsys):
    path = tmp_path / FILE
    with driver_log(path):
        print("first attempt")
    try:
        with driver_log(path):
            print("second attempt")
            raise RuntimeError("workers lost")
    except RuntimeError:
        pass
    bodies = [re.sub(STAMP, "", line, count=1) for line in path.read_text().splitlines()]
    assert bodies == ["first attempt", "second attempt", "stopped: RuntimeError: workers lost"]
    assert capsys.readouterr().out == "first attempt\nsecond attempt\n"


def test_the_file_is_handed_over_when_closed(tmp_path):
    handed = []
    with driver_log(tmp_path / FILE, on_close=lambda p: handed.append((p, p.read_text()))):
        print("kept")
    assert handed and handed[0][0] == tmp_path / FILE and handed[0][1].endswith("kept\n")


def test_a_warning_with_no_logging_configured_still_reaches_the_console_once(tmp_path, capsys):
    logger = logging.getLogger("distgan.tracking.test")
    root_handlers = logging.root.handlers[:]
    logging.root.handlers.clear()  # as in a plain script: Python's last-resort handler prints warnings
    try:
        with driver_log(tmp_path / FILE):
            logger.warning("disk almost full")
    finally:
        logging.root.handlers[:] = root_handlers
    assert capsys.readouterr().err == "disk almost full\n"
    assert (tmp_path / FILE).read_text().count("disk almost full") == 1
