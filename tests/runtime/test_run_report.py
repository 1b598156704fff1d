"""A run writes its own report when it finishes (in-process loop, DeepSpeed, world size 1), with the wall-time
axis from the metrics records' ``time``; ``tracking.report=false`` turns it off; ``distgan report`` writes one
for the same run from the command line."""

from __future__ import annotations

import re

import yaml

from distgan.cli import main as cli_main
from distgan.tracking.jsonl import read_metrics
from local_runs import make_trainer, small_config


def test_a_finished_run_writes_its_report_and_the_cli_writes_another(process_group, tmp_path, capsys):
    cfg = small_config(steps=4)
    trainer, _ = make_trainer(cfg, tmp_path, "reported")
    run = tmp_path / "reported"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))  # as the launcher writes it
    trainer.run()
    records = read_metrics(run / "metrics.jsonl")
    assert all(isinstance(r["time"], float) for r in records) and records[0]["time"] <= records[-1]["time"]
    page = (run / "report.html").read_text()
    drawn = re.findall(r'<polyline [^>]*data-series="([^"]+)"', page)
    assert drawn.count("loss_d") == 2 and drawn.count("grad_norm_g") == 2, "against step and wall time"
    assert "dcgan · step 4 of 4 · finished" in page and page.count('<img class="sample"') == 2  # steps 2 and 4

    assert cli_main(["report", str(run), "--out", str(tmp_path / "again.html")]) == 0
    assert "wrote " + str(tmp_path / "again.html") in capsys.readouterr().out
    assert re.findall(r'data-series="([^"]+)"', (tmp_path / "again.html").read_text()) == re.findall(
        r'data-series="([^"]+)"', page)
    assert cli_main(["report", str(tmp_path / "nothing")]) == 2
    assert "nothing does not exist" in capsys.readouterr().err


def test_tracking_report_false_writes_none(process_group, tmp_path):
    cfg = small_config(steps=2)
    cfg.tracking.report = False
    trainer, _ = make_trainer(cfg, tmp_path, "quiet")
    trainer.run()
    assert (tmp_path / "quiet" / "metrics.jsonl").is_file() and not (tmp_path / "quiet" / "report.html").exists()
