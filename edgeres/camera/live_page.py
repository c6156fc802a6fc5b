"""The live view's page: one card per stream (annotated MJPEG frames, latest predictions, FPS, per-stage
latency), kept current by the ``/results`` Server-Sent Events. Self-contained: no script or style is loaded
from anywhere else, so it works on a device with no internet."""

from __future__ import annotations

import html
import json

from edgeres.camera.overlays import PANEL_STAGES

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{padding:8px 14px;background:#222;display:flex;gap:18px;align-items:baseline}
header h1{font-size:18px;margin:0} header span{color:#aaa;font-size:13px}
main{display:flex;flex-wrap:wrap;gap:12px;padding:12px}
.card{background:#1c1c1c;border:1px solid #333;border-radius:6px;padding:8px;width:min(100%,660px)}
.card h2{font-size:15px;margin:0 0 6px} .card img{display:block;width:100%;height:auto;background:#000}
.pred td{padding-right:10px} table{align-self:flex-start}
.row{display:flex;gap:12px;font-size:13px;margin-top:6px}
table{border-collapse:collapse;font-size:13px} td{padding:1px 8px 1px 0}
.pred td:first-child{color:#7d7} .num{text-align:right;font-variant-numeric:tabular-nums}
.stale{color:#f77}
"""

_SCRIPT = """
const token = new URLSearchParams(location.search).get('token');
const q = token ? ('?token=' + encodeURIComponent(token)) : '';
const stages = STAGES;
let received = 0;
function fmt(v, d) { return (v === null || v === undefined) ? '--' : Number(v).toFixed(d); }
// Generic over tasks: a prediction's label and score, then whatever else it carries (a box, ...), by key.
function predCells(p) {
  const cells = [p.label ?? String(p.index ?? ''), fmt(p.score, 3)];
  for (const [key, v] of Object.entries(p)) {
    if (key === 'label' || key === 'index' || key === 'score') continue;
    cells.push(key + ' ' + (Array.isArray(v) ? '[' + v.map(x => Math.round(x)).join(', ') + ']' : String(v)));
  }
  return cells;
}
function showRecord(r) {
  const card = document.getElementById('card-' + r.stream); if (!card) return;
  received += 1;
  document.getElementById('received').textContent = received;
  if (r.schema) document.getElementById('schema').textContent = r.schema;
  card.querySelector('.frame').textContent = r.frame;
  card.querySelector('.batch').textContent = r.batch;
  const body = card.querySelector('.pred tbody'); body.innerHTML = '';
  for (const p of r.predictions.slice(0, 5)) {
    const tr = document.createElement('tr');
    for (const t of predCells(p)) {
      const td = document.createElement('td'); td.textContent = t; tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  card.querySelector('.count').textContent = r.predictions.length + ' predictions';
}
function showStats(s) {
  for (const [name, st] of Object.entries(s.streams)) {
    const card = document.getElementById('card-' + name); if (!card) continue;
    card.querySelector('.fps').textContent = fmt(st.fps, 1);
    card.querySelector('.results').textContent = st.results;
    const age = card.querySelector('.age');
    age.textContent = st.age_s === null ? 'no result yet' : (fmt(st.age_s, 1) + ' s ago');
    age.className = 'age' + ((st.age_s === null || st.age_s > 5) ? ' stale' : '');
    for (const [stage, label] of stages) {
      card.querySelector('.lat-' + stage).textContent = fmt(st.latency_ms[stage], 1);
    }
  }
}
for (const img of document.querySelectorAll('img[data-src]')) img.src = img.dataset.src + q;
const events = new EventSource('results' + q);
events.onmessage = e => showRecord(JSON.parse(e.data));
events.addEventListener('stats', e => showStats(JSON.parse(e.data)));
events.onopen = () => { document.getElementById('conn').textContent = 'live'; };
events.onerror = () => { document.getElementById('conn').textContent = 'reconnecting'; };
"""


def render_page(names: list[str], task: str | None = None) -> str:
    """The HTML of the live view for these streams; ``task`` is shown until the first record names its schema."""
    cards = []
    for name in names:
        n = html.escape(name)
        lat_rows = "".join(
            f'<tr><td>{html.escape(label)}</td><td class="num lat-{stage}">--</td><td>ms</td></tr>'
            for stage, label in PANEL_STAGES
        )
        cards.append(f"""
<section class="card" id="card-{n}"><h2>{n}</h2>
<img alt="annotated frames of {n}" data-src="stream/{n}.mjpg">
<div class="row"><span>FPS <b class="fps num">--</b></span><span>results <b class="results num">0</b></span>
<span>frame <b class="frame num">--</b></span><span>batch <b class="batch num">--</b></span>
<span class="age">no result yet</span><span class="count"></span></div>
<div class="row"><table class="pred"><thead><tr><td colspan="3">latest predictions</td></tr></thead><tbody></tbody>
</table><table class="lat"><thead><tr><td colspan="3">latency (median of 30)</td></tr></thead><tbody>{lat_rows}
</tbody></table></div></section>""")
    script = _SCRIPT.replace("STAGES", json.dumps([[s, label] for s, label in PANEL_STAGES]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeres camera: live view</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><header><h1>edgeres camera</h1><span>{len(names)} stream{"s" * (len(names) != 1)} ·
<span id="schema">{html.escape(task or "")}</span></span>
<span>results <b id="received">0</b></span><span id="conn">connecting</span></header>
<main>{"".join(cards)}</main><script>{script}</script></body></html>
"""
