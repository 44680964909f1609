/**
 * The web UI's page: HTML, CSS and the browser script, kept as strings so that the
 * TypeScript build ships them in dist/ with no copy step (`npm pack` and the install
 * test take exactly what tsc emits). uPlot, the one library the page uses, is served
 * from node_modules by the server: nothing is fetched from a CDN.
 *
 * The script applies the server-sent events of runtime/ui/app-monitor.ts (a
 * `snapshot` first, then one event per change) to a local copy of the model and
 * redraws. It avoids template literals so that it can live in one here.
 */

/** The HTML document; `/app.css`, `/app.js` and uPlot come from the same server. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tributary</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/vendor/uPlot.min.css">
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <h1><span class="brand">Tributary</span> <span id="app-name">…</span></h1>
  <span id="status" class="pill">connecting</span>
  <span id="batch-duration" class="muted"></span>
  <span id="connection" class="muted"></span>
</header>
<main>
  <section class="cards">
    <div class="card"><div class="label">Batches completed</div><div class="value" id="batches-completed">0</div></div>
    <div class="card"><div class="label">Last batch records</div><div class="value" id="last-records">–</div></div>
    <div class="card"><div class="label">Records processed</div><div class="value" id="records-processed">0</div></div>
    <div class="card"><div class="label">Last processing time</div><div class="value" id="last-processing">–</div></div>
    <div class="card"><div class="label">Last scheduling delay</div><div class="value" id="last-scheduling">–</div></div>
    <div class="card"><div class="label">Checkpoints</div><div class="value" id="checkpoints-total">0</div></div>
    <div class="card"><div class="label">Recoveries</div><div class="value" id="recoveries-total">0</div></div>
    <div class="card"><div class="label">Dead letters</div><div class="value" id="dead-letters-total">0</div></div>
  </section>
  <div id="error" class="error" hidden></div>
  <section class="charts">
    <div class="chart" id="chart-input-rate"><h2>Input rate <span class="unit">records/s</span></h2></div>
    <div class="chart" id="chart-scheduling-delay"><h2>Scheduling delay <span class="unit">ms</span></h2></div>
    <div class="chart" id="chart-processing-time"><h2>Processing time <span class="unit">ms</span></h2></div>
    <div class="chart" id="chart-total-delay"><h2>Total delay <span class="unit">ms</span></h2></div>
  </section>
  <section class="tables">
    <div class="panel wide">
      <h2>Last batches</h2>
      <table id="batches"><thead><tr><th>Batch time</th><th>Records</th><th>Input rate</th><th>Scheduling delay</th><th>Processing</th><th>Total delay</th><th>Queued</th></tr></thead><tbody></tbody></table>
    </div>
    <div class="panel">
      <h2>State per operator</h2>
      <table id="operators"><thead><tr><th>Operator</th><th>Keys</th><th>State bytes</th><th>Last snapshot</th></tr></thead><tbody></tbody></table>
      <p class="note">Keys after the last batch; bytes of the last full snapshot; the last checkpoint's bytes and kind.</p>
    </div>
    <div class="panel">
      <h2>Input streams</h2>
      <table id="inputs"><thead><tr><th>Stream</th><th>Records in batches</th><th>Accepted by receiver</th></tr></thead><tbody></tbody></table>
    </div>
    <div class="panel">
      <h2>Checkpoints</h2>
      <table id="checkpoints"><thead><tr><th>Batch time</th><th>Duration</th><th>Size</th><th>Entries</th><th>Kind</th></tr></thead><tbody></tbody></table>
    </div>
    <div class="panel">
      <h2>Recoveries</h2>
      <table id="recoveries"><thead><tr><th>At</th><th>Kind</th><th>Replayed</th><th>Took</th><th class="text">Detail</th></tr></thead><tbody></tbody></table>
    </div>
    <div class="panel wide">
      <h2>Dead letters</h2>
      <table id="dead-letters"><thead><tr><th>At</th><th>Stream or operator</th><th class="text">Error</th><th class="text">Written to</th></tr></thead><tbody></tbody></table>
    </div>
    <div class="panel">
      <h2>Workers</h2>
      <table id="workers"><thead><tr><th>Worker</th><th>Partitions</th></tr></thead><tbody></tbody></table>
      <p class="note" id="workers-note"></p>
    </div>
  </section>
</main>
<script src="/vendor/uPlot.iife.min.js"></script>
<script src="/app.js"></script>
</body>
</html>
`;

/** The page's styles (uPlot's own come from its package). */
export const PAGE_CSS = `
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f9fafb; --card: #fff; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 20px; font-weight: 600; }
.brand { color: var(--accent); }
h2 { margin: 0 0 8px; font-size: 14px; font-weight: 600; }
.unit, .muted, .note { color: var(--muted); font-weight: 400; }
.note { font-size: 12px; margin: 6px 0 0; }
.pill { padding: 2px 10px; border-radius: 999px; background: var(--line); font-size: 12px; }
.pill.running { background: #dcfce7; color: #166534; }
.pill.stopped { background: #e5e7eb; color: #374151; }
.pill.failed { background: #fee2e2; color: #991b1b; }
main { padding: 16px 20px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 12px; margin-bottom: 16px; }
.card, .chart, .panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
.card .label { color: var(--muted); font-size: 12px; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 12px; margin-bottom: 16px; }
.tables { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
.panel.wide { grid-column: 1 / -1; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td.text, th.text { text-align: left; white-space: normal; overflow-wrap: anywhere; min-width: 140px; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
.error { background: #fee2e2; color: #991b1b; border-radius: 8px; padding: 8px 12px; margin-bottom: 16px; }
.empty td { color: var(--muted); text-align: left; }
`;

/** The browser script: keeps the model from server-sent events and draws it. */
export const PAGE_SCRIPT = `'use strict';
(function () {
  var TABLE_ROWS = 20;
  var model = null;
  var charts = {};
  var CHARTS = [
    { id: 'chart-input-rate', field: 'inputRate', label: 'records/s', stroke: '#2563eb', fill: 'rgba(37,99,235,0.10)' },
    { id: 'chart-scheduling-delay', field: 'schedulingDelayMs', label: 'ms', stroke: '#d97706', fill: 'rgba(217,119,6,0.10)' },
    { id: 'chart-processing-time', field: 'processingMs', label: 'ms', stroke: '#059669', fill: 'rgba(5,150,105,0.10)' },
    { id: 'chart-total-delay', field: 'totalDelayMs', label: 'ms', stroke: '#7c3aed', fill: 'rgba(124,58,237,0.10)' }
  ];

  function byId(id) { return document.getElementById(id); }
  function int(n) { return n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US'); }
  function ms(n) { return n === null || n === undefined ? '–' : (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US')) + ' ms'; }
  function bytes(n) {
    if (n === null || n === undefined) return '–';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(1) + ' MiB';
  }
  function clock(t) { return new Date(t).toISOString().slice(11, 23); }
  function setText(id, text) { var el = byId(id); if (el.textContent !== text) el.textContent = text; }

  function cell(text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function fillTable(id, rows, toCells, empty) {
    var body = byId(id).tBodies[0];
    var out = document.createDocumentFragment();
    if (rows.length === 0) {
      var tr = document.createElement('tr');
      tr.className = 'empty';
      var td = cell(empty);
      td.colSpan = byId(id).tHead.rows[0].cells.length;
      tr.appendChild(td);
      out.appendChild(tr);
    }
    rows.forEach(function (row) {
      var tr = document.createElement('tr');
      toCells(row).forEach(function (c) { tr.appendChild(typeof c === 'string' ? cell(c) : c); });
      out.appendChild(tr);
    });
    body.replaceChildren(out);
  }
  function newestFirst(rows) { return rows.slice(-TABLE_ROWS).reverse(); }
  function append(rows, row, max) { rows.push(row); if (rows.length > max) rows.splice(0, rows.length - max); }

  function makeChart(spec) {
    var el = byId(spec.id);
    var opts = {
      width: Math.max(300, el.clientWidth - 24),
      height: 180,
      legend: { show: false },
      cursor: { show: true },
      scales: { x: { time: true } },
      axes: [{ stroke: '#6b7280' }, { stroke: '#6b7280', size: 60 }],
      series: [{}, { label: spec.label, stroke: spec.stroke, fill: spec.fill, width: 2, points: { show: true, size: 4 } }]
    };
    return new uPlot(opts, [[], []], el);
  }

  function drawCharts() {
    var rows = model.batches;
    var xs = rows.map(function (b) { return b.time / 1000; });
    CHARTS.forEach(function (spec) {
      if (!charts[spec.id]) charts[spec.id] = makeChart(spec);
      charts[spec.id].setData([xs, rows.map(function (b) { return b[spec.field]; })]);
    });
  }

  function drawTotals() {
    var t = model.totals;
    var last = model.batches[model.batches.length - 1];
    setText('batches-completed', int(t.batchesCompleted));
    setText('records-processed', int(t.recordsProcessed));
    setText('last-records', last ? int(last.records) : '–');
    setText('last-processing', last ? ms(last.processingMs) : '–');
    setText('last-scheduling', last ? ms(last.schedulingDelayMs) : '–');
    setText('checkpoints-total', int(t.checkpoints));
    setText('recoveries-total', int(t.recoveries));
    setText('dead-letters-total', int(t.deadLetters));
    document.body.dataset.batches = String(t.batchesCompleted);
  }

  function drawStatus() {
    var s = byId('status');
    s.textContent = model.status;
    s.className = 'pill ' + model.status;
    var e = byId('error');
    e.hidden = model.error === null;
    e.textContent = model.error || '';
  }

  function drawTables() {
    fillTable('batches', newestFirst(model.batches), function (b) {
      return [clock(b.time), int(b.records), int(b.inputRate) + '/s', ms(b.schedulingDelayMs), ms(b.processingMs), ms(b.totalDelayMs), int(b.queuedBatches)];
    }, 'no batch completed yet');
    fillTable('operators', model.operators, function (o) {
      var last = o.lastSnapshotBytes === null ? '–' : bytes(o.lastSnapshotBytes) + ' (' + o.lastSnapshotKind + ')';
      return [o.operator, int(o.keys), bytes(o.stateBytes), last];
    }, 'no stateful operator');
    var streams = Object.keys(model.totals.inputRecords);
    Object.keys(model.totals.recordsAccepted).forEach(function (s) { if (streams.indexOf(s) < 0) streams.push(s); });
    fillTable('inputs', streams, function (s) {
      var accepted = model.totals.recordsAccepted[s];
      return [s, int(model.totals.inputRecords[s] || 0), accepted === undefined ? '–' : int(accepted)];
    }, 'no input stream');
    fillTable('checkpoints', newestFirst(model.checkpoints), function (c) {
      return [clock(c.time), ms(c.durationMs), bytes(c.bytes), int(c.entries), c.kind];
    }, 'no checkpoint yet');
    fillTable('recoveries', newestFirst(model.recoveries), function (r) {
      var detail = r.kind === 'restart' ? (r.checkpoint === null ? 'from the journal' : 'from checkpoint ' + clock(r.checkpoint)) : r.workers.join(', ');
      return [clock(r.at), r.kind, int(r.replayed) + ' batches', ms(r.ms), cell(detail, 'text')];
    }, 'none');
    fillTable('dead-letters', newestFirst(model.deadLetters), function (d) {
      return [clock(d.at), d.stream, cell(d.error, 'text'), cell(d.where, 'text')];
    }, 'none');
    fillTable('workers', model.workers, function (w) {
      return [w.id, w.slots.join(', ')];
    }, model.app.cluster ? 'waiting for the assignment' : 'runs in one process');
    setText('workers-note', model.app.cluster ? 'Partition slots each worker owns.' : '');
  }

  function drawAll() {
    setText('app-name', model.app.appName);
    setText('batch-duration', 'batch ' + model.app.batchDurationMs + ' ms · ' + model.app.partitions + ' partitions');
    drawStatus();
    drawTotals();
    drawTables();
    drawCharts();
  }

  function apply(event) {
    if (event.type === 'snapshot') {
      model = JSON.parse(JSON.stringify(event.snapshot));
      drawAll();
      return;
    }
    if (model === null) return;
    switch (event.type) {
      case 'batch.completed':
        append(model.batches, event.batch, 300);
        model.totals = event.totals;
        model.operators = event.operators;
        break;
      case 'checkpoint.completed':
        append(model.checkpoints, event.checkpoint, 50);
        model.totals = event.totals;
        model.operators = event.operators;
        break;
      case 'records.accepted':
        model.totals = event.totals;
        break;
      case 'dead-letter':
        append(model.deadLetters, event.deadLetter, 50);
        model.totals = event.totals;
        break;
      case 'recovery':
        append(model.recoveries, event.recovery, 50);
        model.totals = event.totals;
        break;
      case 'workers.assigned':
        model.workers = event.workers;
        break;
      case 'status':
        model.status = event.status;
        model.error = event.error;
        break;
      default:
        console.warn('unknown event', event.type);
        return;
    }
    drawAll();
  }

  var source = new EventSource('/events');
  source.onopen = function () { setText('connection', 'live'); };
  source.onerror = function () { setText('connection', source.readyState === 2 ? 'disconnected' : 'reconnecting…'); };
  source.onmessage = function (m) { apply(JSON.parse(m.data)); };
  window.addEventListener('resize', function () {
    Object.keys(charts).forEach(function (id) {
      charts[id].setSize({ width: Math.max(300, byId(id).clientWidth - 24), height: 180 });
    });
  });
  window.tributaryCharts = charts;
})();
`;
