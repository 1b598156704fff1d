"""The report as one HTML file: inline CSS, SVG charts, sample grids as data URIs, no network and no server.

Charts come in pairs, against step and against wall time (a toggle at the top
shows one set); wall time is the seconds since the run's first logged record, read
from each record's ``time`` (runs logged before it was recorded get step charts
only). Sample grids are re-encoded as JPEG at most ``SAMPLE_SIDE`` px and at most
``MAX_SAMPLES`` of them, evenly spaced and always the last, so a 100k-step run's
report stays a few MB. A short script marks in the DOM what the browser drew
(``body[data-rendered]``): how many curves have a non-empty box and each sample's
decoded width, which is what the browser test reads.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Iterable, Optional

import yaml
from PIL import Image

from distgan.metrics.registry import objectives
from distgan.tracking.report.findings import Finding, findings
from distgan.tracking.report.load import RunData, SweepData
from distgan.tracking.report.svg import line_chart

MAX_SAMPLES, SAMPLE_SIDE = 40, 512

CHARTS = (
    ("Losses", lambda k: k.startswith(("loss_", "reg_")), ""),
    ("D health", lambda k: k in ("d_acc_real", "d_acc_fake", "d_real_sign", "ada_p"), "fraction"),
    ("D outputs", lambda k: k in ("d_real", "d_fake"), "logit"),
    ("Path length", lambda k: k == "pl_mean", "running mean of |J_w^T y|"),  # StyleGAN2's Greg target
    ("Gradient norms", lambda k: k.startswith("grad_norm_"), "L2 norm"),
    ("Learning rates", lambda k: k.startswith("lr_"), "lr"),
    ("Throughput", lambda k: k == "images_per_s", "images/s"),
    ("Data wait", lambda k: k in ("data_wait_s", "data_skipped"), "s per window"),
    ("Memory", lambda k: k.endswith("_mb"), "MiB"),
)
"""``(title, which record keys, y label)``: one chart each, when the run logged any of those keys."""

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd}.meta{color:#555}
.grid{display:flex;flex-wrap:wrap;gap:12px}svg.chart{background:#fff;border:1px solid #e3e3e3}
svg .grid{stroke:#eee}svg .tick{font-size:10px;fill:#666}svg .axis{font-size:11px;fill:#444}
svg .title{font-size:13px;font-weight:600;fill:#222}svg .legend{font-size:11px}svg .ref{stroke:#999;stroke-dasharray:4 3}
.finding{padding:6px 10px;margin:4px 0;border-left:4px solid #999;background:#f7f7f7}
.finding.warn{border-color:#d62728;background:#fff3f2}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}pre{background:#f6f8fa;padding:10px;
overflow:auto;max-height:480px}.wall{display:none}body.by-wall .wall{display:flex}body.by-wall .step{display:none}
#sample{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}
"""

SCRIPT = """
function axis(kind){document.body.classList.toggle('by-wall', kind==='wall');}
function showSample(i){const s=document.querySelectorAll('img.sample')[i];
document.getElementById('sample').src=s.src;document.getElementById('sample-step').textContent='step '+SAMPLES[i];}
window.addEventListener('load',()=>{
  if(SAMPLES.length){showSample(SAMPLES.length-1);}
  const imgs=[...document.querySelectorAll('img.sample')];
  Promise.all(imgs.map(i=>i.decode().then(()=>i.naturalWidth,()=>0))).then(widths=>{
    const lines=[...document.querySelectorAll('polyline')].filter(p=>{const b=p.getBBox();return b.width>0;});
    document.body.dataset.rendered=JSON.stringify({charts:document.querySelectorAll('svg.chart').length,
      drawn:lines.length, series:lines.map(p=>p.dataset.series), images:widths});
  });
});
"""


def _series(records: list[dict], key: str, wall: bool) -> list[tuple[float, float]]:
    t0 = next((r["time"] for r in records if "time" in r), None)
    if wall and t0 is None:
        return []
    return [((r["time"] - t0) if wall else r["step"], float(r[key])) for r in records
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) and "step" in r
            and (not wall or "time" in r)]


def run_charts(records: list[dict], wall: bool) -> list[str]:
    keys = list(dict.fromkeys(k for r in records for k in r))
    x_label = "wall time (s)" if wall else "step"
    charts = []
    for title, wanted, unit in CHARTS:
        chosen = [k for k in keys if wanted(k)]
        charts.append(line_chart(title, {k: _series(records, k, wall) for k in chosen}, x_label, unit))
    for score in (s for s in objectives() if s in keys):  # evaluation, each with its baseline where logged
        series = {score: _series(records, score, wall)}
        if f"{score}_bicubic" in keys:
            series["bicubic"] = _series(records, f"{score}_bicubic", wall)
        charts.append(line_chart(f"Evaluation: {score}", series, x_label, score))
    return [c for c in charts if c]


def _sample_uris(run: RunData) -> list[tuple[int, str]]:
    chosen = run.samples
    if len(chosen) > MAX_SAMPLES:
        stride = len(chosen) / MAX_SAMPLES
        chosen = [chosen[int(i * stride)] for i in range(MAX_SAMPLES - 1)] + [chosen[-1]]
    uris = []
    for step, path in chosen:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE), Image.NEAREST)  # grids of small images: keep the pixels
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=88)
        uris.append((step, "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()))
    return uris


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def _findings_html(found: list[Finding]) -> str:
    if not found:
        return '<p class="meta">No findings: nothing in the logged metrics tripped a rule.</p>'
    return "".join(f'<div class="finding {f.level}"><b>{html.escape(f.title)}.</b> {html.escape(f.detail)}</div>'
                   for f in found)


def _charts_html(step_charts: list[str], wall_charts: list[str]) -> str:
    toggle = ('<p>x axis: <label><input type="radio" name="axis" checked onclick="axis(\'step\')"> step</label> '
              '<label><input type="radio" name="axis" onclick="axis(\'wall\')"> wall time</label></p>'
              if wall_charts else "")
    return (toggle + f'<div class="grid step">{"".join(step_charts)}</div>'
            + (f'<div class="grid wall">{"".join(wall_charts)}</div>' if wall_charts else ""))


def _samples_html(run: RunData) -> tuple[str, list[int]]:
    uris = _sample_uris(run)
    if not uris:
        return '<p class="meta">No sample grids were saved (train.sample_every).</p>', []
    strip = "".join(f'<img class="sample" alt="step {s}" src="{u}" hidden>' for s, u in uris)
    return (f'<p><input type="range" min="0" max="{len(uris) - 1}" value="{len(uris) - 1}" '
            f'oninput="showSample(this.value)" style="width:420px"> <span id="sample-step"></span> '
            f'({len(uris)} of {len(run.samples)} saved grids)</p><img id="sample" alt="samples">{strip}',
            [s for s, _ in uris])


def _document(title: str, body: str, samples: list[int]) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body>{body}<script>const SAMPLES={json.dumps(samples)};{SCRIPT}'
            f'</script></body></html>\n')


def run_page(run: RunData) -> str:
    last = run.records[-1] if run.records else {}
    finished = (run.events[-1].get("event") == "finished" if run.events
                else bool(run.steps) and last.get("step", 0) >= run.steps)
    wall = [r["time"] for r in run.records if "time" in r]
    meta = (f"{run.family or '?'} · step {last.get('step', 0)} of {run.steps or '?'} · "
            f"{'finished' if finished else 'not finished'} · {len(run.records)} logged records"
            + (f" · {wall[-1] - wall[0]:.0f} s of logged training" if len(wall) > 1 else ""))
    samples_html, samples = _samples_html(run)
    events = _table(("step", "event", "workers", "why"),
                    ((e.get("step"), e.get("event"), e.get("world_size"), e.get("why")) for e in run.events))
    startup = _table(("phase", "seconds"), ((k, v) for k, v in run.startup.items()))
    body = (f"<h1>{html.escape(run.name)}</h1><p class=\"meta\">{html.escape(meta)}</p>"
            f"<h2>Findings</h2>{_findings_html(findings(run))}"
            f"<h2>Curves</h2>{_charts_html(run_charts(run.records, False), run_charts(run.records, True))}"
            f"<h2>Samples</h2>{samples_html}"
            f"<h2>Starts, restarts and resizes</h2>{events if run.events else '<p class=meta>none recorded</p>'}"
            f"<h2>Start-up</h2>{startup if run.startup else '<p class=meta>not recorded</p>'}"
            f"<h2>Config</h2><pre>{html.escape(yaml.safe_dump(run.config, sort_keys=False))}</pre>")
    return _document(f"distgan report: {run.name}", body, samples)


def sweep_page(sweep: SweepData, metric: Optional[str] = None) -> str:
    metric = metric or sweep.results.get("metric") or next(
        (s for s in objectives() for t in sweep.trials.values() for r in t.records if s in r), None)
    overlays = []
    for key in (metric, "loss_g", "loss_d"):
        if key:
            chart = line_chart(f"{key}, every trial", {name: _series(t.records, key, False)
                                                        for name, t in sweep.trials.items()}, "step", key)
            overlays.append(chart)
    rows = sweep.results.get("rows", [])
    results = _table(("trial", "status", "step", metric or "score", "values"),
                     ((r.get("trial"), r.get("status"), r.get("step"), r.get(metric) if metric else r.get("objective"),
                       r.get("values")) for r in rows)) if rows else '<p class="meta">no results.json yet: running</p>'
    best = (sweep.results.get("best") or {}).get("trial")
    best_findings = findings(sweep.trials[best]) if best in sweep.trials else []
    body = (f"<h1>{html.escape(sweep.name)}</h1><p class=\"meta\">sweep · {len(sweep.trials)} trials · metric "
            f"{html.escape(str(metric))} ({html.escape(str(sweep.results.get('mode', '?')))})</p>"
            f"<h2>Findings for the best trial{f' ({html.escape(best)})' if best else ''}</h2>"
            f"{_findings_html(best_findings)}<h2>Trials</h2>{results}"
            f"<h2>Curves</h2><div class=\"grid\">{''.join(c for c in overlays if c)}</div>"
            f"<h2>Best trial's config</h2><pre>{html.escape(sweep.best_config or 'not written yet')}</pre>")
    return _document(f"distgan report: {sweep.name}", body, [])
