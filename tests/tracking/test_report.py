"""``distgan report`` from run and sweep directories written here (in-process, no Ray): the charts and series a
run logged, findings that cite their numbers, the sample timeline thinned to a bounded size, and a 100k-step
log that still makes a file of a few MB."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import yaml
from PIL import Image

import distgan.tasks  # noqa: F401  (registers the evaluation scores, as the API and the loop have)
from distgan.cli import main as cli_main
from distgan.config import ConfigError
from distgan.tracking.jsonl import JsonlError, MetricsLog
from distgan.tracking.report import write_report
from distgan.tracking.report.findings import findings
from distgan.tracking.report.load import load_run
from distgan.tracking.report.page import MAX_SAMPLES
from distgan.tracking.report.svg import MAX_POINTS, nice_ticks, thin

T0 = 1_796_000_000.0


def make_run(path, steps: int = 400, every: int = 10, samples: int = 60, sign: float = 0.95, fids=None):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"model": {"family": "dcgan"}, "train": {"steps": steps}}))
    fids = fids or {100: 80.0, 150: 60.0, 200: 59.9, 300: 59.8, 400: 60.1}
    with (path / "metrics.jsonl").open("w") as f:
        for step in range(every, steps + 1, every):
            record = {"step": step, "time": T0 + 2 * step, "loss_d": 1.0 + 0.1 * math.sin(step), "loss_g": 0.8,
                      "d_acc_real": 0.7, "d_acc_fake": 0.6, "d_real_sign": sign, "grad_norm_g": 1.0,
                      "grad_norm_d": 2.0, "lr_g": 2e-4, "lr_d": 2e-4, "images_per_s": 500.0, "rss_mb": 900.0,
                      "skipped_g": 1 if step == 50 else 0, "skipped_d": 0}
            if step in fids:
                record.update(fid=fids[step], kid=fids[step] / 1000)
            f.write(json.dumps(record) + "\n")
    (path / "history.jsonl").write_text("\n".join(json.dumps(r) for r in (
        {"time": T0, "event": "started", "step": 0, "world_size": 2, "why": "new run on 2 workers"},
        {"time": T0 + 300, "event": "resized", "step": 150, "world_size": 1, "why": "shrunk from 2 to 1 worker"},
        {"time": T0 + 900, "event": "finished", "step": steps, "world_size": 1, "why": "reached the end"})) + "\n")
    (path / "startup.json").write_text(json.dumps({"phases": {"ray_ready": 3.2, "engine_g": 1.5}}))
    (path / "samples").mkdir()
    rng = np.random.default_rng(0)
    for i in range(samples):
        Image.fromarray(rng.integers(0, 256, (66, 66, 3), dtype=np.uint8)).save(
            path / "samples" / f"step_{(i + 1) * 5:06d}.png")
    return path


def series_in(page: str) -> list[str]:
    return re.findall(r'<polyline [^>]*data-series="([^"]+)"', page)


def test_a_run_report_draws_what_the_run_logged_and_says_what_is_wrong(tmp_path):
    run = make_run(tmp_path / "digits")
    page = write_report(run).read_text()
    assert (run / "report.html").is_file()
    drawn = series_in(page)
    for key in ("loss_d", "loss_g", "d_acc_real", "d_real_sign", "grad_norm_g", "lr_g", "images_per_s", "rss_mb",
                "fid", "kid"):
        assert drawn.count(key) == 2, f"{key}: one curve against step, one against wall time"
    assert 'data-title="Evaluation: fid"' in page and "wall time (s)" in page
    # Findings cite their numbers.
    assert "D is overfitting the reals" in page and "d_real_sign stayed above 0.9 for 3 logged windows by step 30" \
        in page
    assert "FID has stalled" in page and "(steps 200-400: 59.90, 59.80, 60.10) did not beat 60.00" in page
    assert "Non-finite steps skipped" in page and "1 optimizer steps skipped" in page
    assert "shrunk from 2 to 1 worker" in page and "ray_ready" in page and "family: dcgan" in page
    # 60 saved grids -> the last MAX_SAMPLES, evenly spaced, always the newest.
    steps = json.loads(re.search(r"const SAMPLES=(\[[^\]]*\])", page).group(1))
    assert len(steps) == MAX_SAMPLES and steps[0] == 5 and steps[-1] == 300
    assert page.count('<img class="sample"') == MAX_SAMPLES and "(40 of 60 saved grids)" in page


def test_a_stylegan2_run_s_regularizers_and_ada_are_drawn(tmp_path):
    run = make_run(tmp_path / "sg2", samples=0)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({**r, "ada_p": r["step"] / 1000, "pl_mean": 0.5,
                                                            **({"reg_g": 2.0} if i % 4 == 0 else {})}) + "\n"
                                               for i, r in enumerate(lines)))
    page = write_report(run).read_text()
    drawn = series_in(page)
    assert all(drawn.count(key) == 2 for key in ("ada_p", "pl_mean", "reg_g")), drawn
    assert 'data-title="Path length"' in page


def test_a_healthy_run_has_no_findings_and_no_wall_time_without_times(tmp_path):
    run = make_run(tmp_path / "calm", sign=0.3, fids={100: 80.0, 200: 50.0, 300: 40.0, 400: 30.0}, samples=2)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("time",
                                       "skipped_g")}) + "\n" for r in lines))
    (run / "history.jsonl").unlink()
    page = write_report(run, tmp_path / "out" / "calm.html").read_text()
    assert "No findings" in page and "wall time" not in page
    assert series_in(page).count("loss_g") == 1


def test_a_100k_step_log_makes_a_report_of_a_few_mb(tmp_path):
    run = make_run(tmp_path / "long", steps=100_000, every=10, samples=200,
                   fids={s: 100.0 / (1 + s / 1000) for s in range(1000, 100_001, 1000)})
    started = time.perf_counter()
    page = write_report(run)
    took = time.perf_counter() - started
    size = page.stat().st_size
    print(f"report of 10,000 records and 200 sample grids: {size / 1e6:.2f} MB in {took:.1f} s")
    assert size < 3e6
    counts = [int(n) for n in re.findall(r'data-points="(\d+)"', page.read_text())]
    assert max(counts) <= MAX_POINTS


def test_a_sweep_report_overlays_its_trials(tmp_path):
    sweep = tmp_path / "lr-sweep"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text("name: lr-sweep\n")
    for i, fid in enumerate((30.0, 50.0, 70.0)):
        make_run(sweep / "trials" / f"t{i}", samples=0, fids={100: fid + 10, 200: fid})
    (sweep / "results.json").write_text(json.dumps({"metric": "fid", "mode": "min", "best": {"trial": "t0"}, "rows": [
        {"trial": f"t{i}", "status": s, "step": 400, "fid": f, "values": {"optim.g.lr": lr}}
        for i, (s, f, lr) in enumerate((("finished", 30.0, 1e-3), ("stopped early", 50.0, 1e-4),
                                         ("stopped early", 70.0, 1e-5)))]}))
    (sweep / "best_config.yaml").write_text("optim:\n  g:\n    lr: 0.001\n")
    page = write_report(sweep).read_text()
    assert series_in(page).count("t0") == 3 and set(series_in(page)) == {"t0", "t1", "t2"}
    assert "stopped early" in page and "lr: 0.001" in page and "Findings for the best trial (t0)" in page


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no metrics.jsonl"):
        write_report(tmp_path / "empty")
    with pytest.raises(ConfigError, match="a report is an .html file"):
        write_report(make_run(tmp_path / "r", samples=0), tmp_path / "report.pdf")


def test_a_non_finite_loss_the_metrics_log_wrote_is_a_finding(tmp_path):
    run = tmp_path / "diverged"
    run.mkdir()
    log = MetricsLog(run / "metrics.jsonl")
    log.append({"step": 10, "loss_g": 0.8, "loss_d": 1.2})
    log.append({"step": 20, "loss_g": float("nan"), "loss_d": 1.1})
    log.append({"step": 30, "loss_g": float("inf"), "loss_d": float("-inf")})
    found = [f for f in findings(load_run(run)) if f.title == "A loss went non-finite"]
    assert len(found) == 1 and found[0].level == "warn"
    assert found[0].detail == "at step 20: loss_g non-finite, loss_d 1.1"
    assert "A loss went non-finite" in write_report(run).read_text()


def test_a_loss_not_logged_is_not_a_non_finite_one(tmp_path):
    run = tmp_path / "psnr-stage"
    run.mkdir()
    MetricsLog(run / "metrics.jsonl").append({"step": 10, "loss_g": 0.5, "psnr_bicubic": None})
    assert not [f for f in findings(load_run(run)) if f.title == "A loss went non-finite"]


def test_a_report_leaves_out_a_last_line_cut_short_by_a_write(tmp_path, capsys):
    run = make_run(tmp_path / "killed", samples=0)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 410, "loss_d": 0.5, "loss_1')  # the run died inside this write
    assert max(r["step"] for r in load_run(run).records) == 400
    assert cli_main(["report", str(run)]) == 0
    assert "killed/report.html" in capsys.readouterr().out


def test_a_damaged_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, capsys):
    run = make_run(tmp_path / "damaged", samples=0)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[4] = lines[4][:30]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(JsonlError, match=r"damaged/metrics.jsonl: line 5 is not a JSON object"):
        load_run(run)
    assert cli_main(["report", str(run)]) == 2
    assert "metrics.jsonl: line 5 is not a JSON object" in capsys.readouterr().err


def test_a_file_given_as_the_run_is_named_as_not_a_directory(tmp_path, capsys):
    run = make_run(tmp_path / "r", samples=0)
    with pytest.raises(ConfigError, match=r"r/config.yaml is a file, not a run or sweep directory"):
        write_report(run / "config.yaml")
    assert cli_main(["report", str(run / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a run or sweep directory" in err and "does not exist" not in err


def test_thinning_keeps_spikes_and_ticks_are_round():
    points = [(float(i), 0.0) for i in range(10_000)]
    points[5_000] = (5000.0, 9.0)
    kept = thin(points)
    assert len(kept) <= MAX_POINTS and (5000.0, 9.0) in kept and kept == sorted(kept)
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0.31, 0.33)[0] <= 0.31 and nice_ticks(0.31, 0.33)[-1] >= 0.33


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path, *flags: str) -> str:
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'profile'}", *flags], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed here (apt-get install chromium; "
                                             ".ci/run installs it)")
def test_a_real_browser_draws_every_curve_and_decodes_every_sample(tmp_path):
    run = make_run(tmp_path / "browser", samples=5)
    report = write_report(run)
    page = report.read_text()
    visible = series_in(page[page.index('<div class="grid step">'):page.index('<div class="grid wall">')])
    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", report.as_uri())
    rendered = json.loads(html.unescape(re.search(r'data-rendered="([^"]*)"', dom).group(1)))
    assert rendered["charts"] == page.count('<svg class="chart"')
    assert rendered["series"] == visible and rendered["drawn"] == len(visible) > 10, "every step curve has a box"
    assert rendered["images"] == [66] * 5, "each sample grid decoded at its size"
    # And on screen: the first chart's curves are in the screenshot, in the first series' colour.
    chromium(tmp_path, "--window-size=1400,900", f"--screenshot={tmp_path / 'shot.png'}", report.as_uri())
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(int)
    blue = (np.abs(shot - np.array([0x1F, 0x77, 0xB4])).sum(axis=2) < 40).sum()
    assert blue > 500, f"only {blue} pixels of the first series' colour on screen"
