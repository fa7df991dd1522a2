// The experiment page's charts, drawn with uPlot from the console's JSON (streams/console/
// charts.py): the running estimates over time with their intervals and the verdict's
// changes, a price ladder's demand and profit curves, the assignments heatmap, the product
// search and the Health section's traffic over time. Glue only: every figure comes from the API. Redrawn when htmx has redrawn
// the page's live parts after a look.
(function () {
  "use strict";
  var ARM_COLOURS = ["#1f5fa8", "#c2571a", "#2e7d32", "#7b3fa0", "#8d6e00", "#00838f", "#ad1457", "#455a64"];
  var CONTROL_COLOUR = "#d9d9d9";

  function getJSON(url) {
    return fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then(function (r) {
        return r.json().then(function (doc) {
          if (!r.ok) { throw new Error(doc.error || ("HTTP " + r.status)); }
          return doc;
        });
      });
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function fmt(v, digits) {
    return v === null || v === undefined ? "-" : Number(v).toPrecision(digits || 4);
  }

  function width(box) { return Math.max(320, Math.min(box.clientWidth || 900, 1100)); }

  // a vertical line at x (in data units) with a label, drawn on the plot (verdict changes,
  // the recommended price)
  function mark(u, x, label, dash) {
    var ctx = u.ctx, px = u.valToPos(x, "x", true), top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    ctx.strokeStyle = "#222"; ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash(dash || [6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + h); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#222"; ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
    var right = px > u.bbox.left + 0.6 * u.bbox.width;  // near the right edge: its label to the left
    ctx.textAlign = right ? "right" : "left";
    ctx.fillText(label, px + (right ? -4 : 4) * devicePixelRatio, top + 12 * devicePixelRatio);
    ctx.restore();
  }

  function zeroLine(u) {
    var y = u.valToPos(0, "y", true), ctx = u.ctx;
    if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) { return; }
    ctx.save(); ctx.strokeStyle = "#888"; ctx.lineWidth = devicePixelRatio;
    ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke(); ctx.restore();
  }

  // ---------------------------------------------------------------- over time
  function overTime(box, doc) {
    box.textContent = "";
    var byMetric = {};
    var metrics = [];
    doc.series.forEach(function (s) {
      if (!byMetric[s.metric]) { byMetric[s.metric] = []; metrics.push(s.metric); }
      byMetric[s.metric].push(s);
    });
    var changes = doc.verdicts.filter(function (v) { return v.changed; });
    var looks = {};
    var grid = el("div", {"class": "chart-grid"});
    box.appendChild(grid);
    metrics.forEach(function (metric) {
      var group = byMetric[metric];
      var times = {};
      group.forEach(function (s) { s.looks.forEach(function (p) { times[p.as_of] = Date.parse(p.as_of) / 1000; }); });
      var keys = Object.keys(times).sort(function (a, b) { return times[a] - times[b]; });
      keys.forEach(function (k) { looks[k] = true; });
      var data = [keys.map(function (k) { return times[k]; })];
      var series = [{label: "look"}];
      var bands = [];
      group.forEach(function (s, i) {
        var at = {};
        s.looks.forEach(function (p) { at[p.as_of] = p; });
        var col = ARM_COLOURS[i % ARM_COLOURS.length];
        var name = s.arm || "treatment";
        function pick(f) { return keys.map(function (k) { var p = at[k]; return p && p[f] !== null && p[f] !== undefined ? p[f] : null; }); }
        var first = data.length;
        data.push(pick("effect"), pick("cs_low"), pick("cs_high"), pick("ci_low"), pick("ci_high"));
        series.push(
          {label: name + " effect (" + s.estimator + ")", stroke: col, width: 2, points: {show: true}},
          {label: name + " anytime-valid low", stroke: col, width: 1, dash: [2, 3]},
          {label: name + " anytime-valid high", stroke: col, width: 1, dash: [2, 3]},
          {label: name + " 95% low", stroke: col, width: 1, dash: [8, 4]},
          {label: name + " 95% high", stroke: col, width: 1, dash: [8, 4]}
        );
        bands.push({series: [first + 2, first + 1], fill: col + "22"});
      });
      var fig = el("figure", {"class": "chart", "data-metric": metric,
                               "data-looks": String(keys.length), "data-series": String(group.length)});
      var title = metric + (metric === doc.decision_metric ? " (decision metric)" : "") +
        ": effect against the control by look; 95% interval long dashes, anytime-valid " +
        "sequence short dashes and shaded";
      fig.appendChild(el("figcaption", {}, title));
      grid.appendChild(fig);
      new uPlot({
        width: Math.min(width(box), 620), height: 200, series: series, bands: bands, legend: {live: false},
        scales: {x: {time: true}},
        axes: [{}, {label: metric}],
        hooks: {draw: [function (u) {
          zeroLine(u);
          changes.forEach(function (v) { mark(u, Date.parse(v.as_of) / 1000, "verdict: " + v.word); });
        }]}
      }, data, fig);
    });
    var list = el("ul", {"class": "verdict-changes", id: "verdict-changes"});
    if (!changes.length) {
      list.appendChild(el("li", {}, doc.verdicts.length ? "The verdict has not changed: " +
        doc.verdicts[doc.verdicts.length - 1].word + "." : "No verdict yet."));
    }
    changes.forEach(function (v) {
      list.appendChild(el("li", {"data-as-of": v.as_of}, "Look of " + v.as_of + " (after " +
        v.n_periods + " periods): the verdict changed to " + v.word + "."));
    });
    box.appendChild(el("p", {}, "Where the verdict changed (the dashed marks on the charts):"));
    box.appendChild(list);
    box.setAttribute("data-looks", String(Object.keys(looks).length));
    box.setAttribute("data-drawn", String(metrics.length));
  }

  // ---------------------------------------------------------------- price ladder
  function ladder(box, doc) {
    box.textContent = "";
    if (!doc) { box.appendChild(el("p", {}, "Not a price ladder.")); return; }
    var xs = {};
    doc.curve.forEach(function (c) { xs[c.price_ratio] = true; });
    doc.points.forEach(function (p) { xs[p.price_ratio] = true; });
    var x = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    function along(rows, key, field) {
      var at = {};
      rows.forEach(function (r) { at[r[key]] = r[field]; });
      return x.map(function (v) { return at[v] === undefined ? null : at[v]; });
    }
    var best = doc.optimal_price_ratio;
    var lo = doc.optimal_price_ratio_ci_low, hi = doc.optimal_price_ratio_ci_high;
    function whiskers(u, low, high) {
      var ctx = u.ctx;
      ctx.save(); ctx.strokeStyle = "#222"; ctx.lineWidth = 1.5 * devicePixelRatio;
      doc.points.forEach(function (p) {
        if (p[low] === null || p[high] === null || p[low] === undefined) { return; }
        var px = u.valToPos(p.price_ratio, "x", true);
        ctx.beginPath(); ctx.moveTo(px, u.valToPos(p[low], "y", true));
        ctx.lineTo(px, u.valToPos(p[high], "y", true)); ctx.stroke();
      });
      ctx.restore();
    }
    function recommended(u) {
      if (best === null || best === undefined) { return; }
      if (lo !== null && hi !== null && lo !== undefined) {
        var a = u.valToPos(lo, "x", true), b = u.valToPos(hi, "x", true);
        u.ctx.save(); u.ctx.fillStyle = "rgba(0,0,0,0.08)";
        u.ctx.fillRect(a, u.bbox.top, Math.max(b - a, 1), u.bbox.height); u.ctx.restore();
      }
      mark(u, best, "recommended x" + Number(best).toFixed(3) +
        (lo !== null && lo !== undefined ? " [" + Number(lo).toFixed(3) + ", " + Number(hi).toFixed(3) + "]" : ""));
    }
    var figs = [
      {name: "demand", caption: "Demand: units against the control's, by listed price ratio: the fitted curve and each arm's point with its interval",
       curve: "units_ratio", point: "units_ratio", low: "units_ratio_ci_low", high: "units_ratio_ci_high", y: "units ratio"},
      {name: "profit", caption: "Profit per product-period by listed price ratio: the fitted curve, each arm's point with its interval, and the recommended price with its interval (shaded)",
       curve: "profit", point: "profit_per_cell", low: "profit_per_cell_ci_low", high: "profit_per_cell_ci_high", y: "profit"}
    ];
    var grid = el("div", {"class": "chart-grid"});
    box.appendChild(grid);
    figs.forEach(function (f) {
      var curve = along(doc.curve, "price_ratio", f.curve);
      if (!curve.some(function (v) { return v !== null; })) { return; }  // no costs: no profit curve
      var fig = el("figure", {"class": "chart", "data-curve": f.name});
      fig.appendChild(el("figcaption", {}, f.caption));
      grid.appendChild(fig);
      var ends = [];  // the y range holds the arms' intervals too
      doc.points.forEach(function (p) { [p[f.low], p[f.high], p[f.point]].forEach(function (v) { if (v !== null && v !== undefined) { ends.push(v); } }); });
      var u = new uPlot({
        width: Math.min(width(box), 620), height: 240, legend: {live: false},
        scales: {x: {time: false}, y: {range: function (u, min, max) {
          var lo = Math.min.apply(null, ends.concat([min])), hi = Math.max.apply(null, ends.concat([max]));
          var pad = 0.05 * (hi - lo || Math.abs(hi) || 1);
          return [lo - pad, hi + pad];
        }}},
        axes: [{label: "price ratio (control = 1)"}, {label: f.y}],
        series: [{label: "price ratio"},
                 {label: "fitted " + f.name + " curve", stroke: ARM_COLOURS[0], width: 2, spanGaps: true, points: {show: false}},
                 {label: "arms' " + f.name + " points", stroke: "#222", width: 0, paths: function () { return null; },
                  points: {show: true, size: 9, fill: "#222"}}],
        hooks: {draw: [function (u) { whiskers(u, f.low, f.high); if (f.name === "profit") { recommended(u); } }]}
      }, [x, curve, along(doc.points, "price_ratio", f.point)], fig);
      fig.setAttribute("data-points", String(u.data[1].filter(function (v) { return v !== null; }).length));
    });
    box.appendChild(el("p", {"class": "ladder-reading"}, doc.headline + ": " + doc.text));
    box.setAttribute("data-drawn", String(box.querySelectorAll("figure[data-curve]").length));
  }

  // ---------------------------------------------------------------- assignments heatmap
  function rgb(hex) { return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); }); }

  // lines over a cell, as dark as its share: slope 1 ("/"), -1 ("\\") or 0 ("-")
  function hatch(ctx, x, y, w, h, share, slope) {
    if (!(share > 0)) { return; }
    ctx.save(); ctx.strokeStyle = "rgba(0,0,0," + Math.min(1, 0.25 + 0.75 * share) + ")";
    ctx.beginPath(); ctx.rect(x, y, w, h); ctx.clip(); ctx.beginPath();
    if (slope === 0) {
      for (var e = 1; e < h; e += 3) { ctx.moveTo(x, y + e); ctx.lineTo(x + w, y + e); }
    } else {
      for (var d = -h; d < w; d += 4) {
        if (slope > 0) { ctx.moveTo(x + d, y + h); ctx.lineTo(x + d + h, y); } else { ctx.moveTo(x + d, y); ctx.lineTo(x + d + h, y + h); }
      }
    }
    ctx.stroke(); ctx.restore();
  }

  function heatmap(box, doc) {
    box.textContent = "";
    var R = doc.rows.length, C = doc.cols.length;
    var cw = Math.max(2, Math.min(40, Math.floor(1000 / Math.max(C, 1)))), ch = Math.max(2, Math.min(22, Math.floor(600 / Math.max(R, 1))));
    var colours = doc.arms.map(function (a, i) {
      return a === doc.control ? rgb(CONTROL_COLOUR) : rgb(ARM_COLOURS[i % ARM_COLOURS.length]);
    });
    var canvas = el("canvas", {width: String(C * cw), height: String(R * ch), role: "img",
      "aria-label": "Assignments: " + doc.products + " products in " + R + " rows by " + doc.periods +
        " periods in " + C + " columns; colour by arm mix, hatched where a share starts in blackout"});
    var ctx = canvas.getContext("2d");
    var paused = doc.paused || doc.cols.map(function () { return 0; });
    for (var r = 0; r < R; r++) {
      for (var c = 0; c < C; c++) {
        var mix = [0, 0, 0];
        doc.arms.forEach(function (_, a) {
          var s = doc.arm_share[a][r][c];
          for (var k = 0; k < 3; k++) { mix[k] += s * colours[a][k]; }
        });
        ctx.fillStyle = "rgb(" + mix.map(Math.round).join(",") + ")";
        ctx.fillRect(c * cw, r * ch, cw, ch);
        var dark = 0, frozen = 0;
        doc.reasons.forEach(function (b, i) {
          if (b === "freeze") { frozen += doc.blackout_share[i][r][c]; } else { dark += doc.blackout_share[i][r][c]; }
        });
        // hatched, as dense as the share in blackout: "/" the design's blackouts, "\" a freeze,
        // "-" a pause or stop (a layer over every product of the period)
        hatch(ctx, c * cw, r * ch, cw, ch, dark, 1);
        hatch(ctx, c * cw, r * ch, cw, ch, frozen, -1);
        hatch(ctx, c * cw, r * ch, cw, ch, paused[c], 0);
      }
    }
    if (doc.period !== null && doc.period !== undefined) {  // the period in force
      var at = doc.cols.findIndex(function (col) { return doc.period >= col.first && doc.period <= col.last; });
      if (at >= 0) { ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.strokeRect(at * cw + 1, 1, cw - 2, R * ch - 2); }
    }
    // how many cells hold some of each blackout kind, for a reader (and the browser test)
    var held = doc.reasons.map(function (b, i) {
      var n = 0;
      doc.blackout_share[i].forEach(function (row) { row.forEach(function (v) { if (v > 0) { n++; } }); });
      return b + "=" + n;
    });
    held.push("pause=" + paused.filter(function (v) { return v > 0; }).length * R);
    var fig = el("figure", {"class": "heatmap", "data-rows": String(R), "data-cols": String(C),
                            "data-blackouts": held.join(";")});
    var per = doc.rows.every(function (r) { return r.n === 1; }) ? "one a row" : "about " + doc.rows[0].n + " a row";
    fig.appendChild(el("figcaption", {}, "Products (rows, " + per + ") by periods (columns" +
      (C < doc.periods ? ", binned" : "") + "): each cell's colour mixes its arms' shares; hatched: the share " +
      "that starts its period in blackout (" + doc.reasons.join(", ") + "): hatched / the design's blackouts, " +
      "hatched \\ an operator freeze, lined - a pause or stop (the control on every product); the framed column is the period in force."));
    fig.appendChild(canvas);
    var legend = el("ul", {"class": "legend"});
    doc.arms.forEach(function (a, i) {
      var li = el("li");
      var sw = el("span", {"class": "swatch", style: "background: rgb(" + colours[i].join(",") + ")"});
      li.appendChild(sw); li.appendChild(document.createTextNode(" " + a + (a === doc.control ? " (control)" : "")));
      legend.appendChild(li);
    });
    fig.appendChild(legend);
    var pauses = el("ul", {"class": "pauses", id: "heatmap-pauses"});
    (doc.pauses || []).forEach(function (p) {
      var span = p.first_period === null ? "no period yet" : (p.first_period === p.last_period ?
        "period " + p.first_period : "periods " + p.first_period + " to " + p.last_period);
      pauses.appendChild(el("li", {"data-first": String(p.first_period)}, "Paused or stopped from " + p.start +
        (p.end ? " to " + p.end : ", still") + " (" + span + ")" + (p.reason ? ": " + p.reason : "")));
    });
    if ((doc.pauses || []).length) { fig.appendChild(pauses); }
    var cell = el("p", {id: "heatmap-cell", "aria-live": "polite"}, "Point at a cell for its figures.");
    fig.appendChild(cell);
    canvas.addEventListener("mousemove", function (e) {
      // the canvas as drawn may be narrower than its pixels (max-width: 100% in a narrow
      // window): a pointer's place is scaled back to the canvas's own before it names a cell
      var rect = canvas.getBoundingClientRect();
      var x = (e.clientX - rect.left) * canvas.width / rect.width;
      var y = (e.clientY - rect.top) * canvas.height / rect.height;
      var c = Math.floor(x / cw), r = Math.floor(y / ch);
      if (r < 0 || r >= R || c < 0 || c >= C) { return; }
      var row = doc.rows[r], col = doc.cols[c];
      var parts = doc.arms.map(function (a, i) { return a + " " + Math.round(100 * doc.arm_share[i][r][c]) + "%"; });
      doc.reasons.forEach(function (b, i) {
        var s = doc.blackout_share[i][r][c];
        if (s > 0) { parts.push(b + " " + Math.round(100 * s) + "%"); }
      });
      if (paused[c] > 0) { parts.push("paused or stopped " + Math.round(100 * paused[c]) + "% of the periods"); }
      cell.textContent = "Products " + row.first + " to " + row.last + " (" + row.n + "), period" +
        (col.first === col.last ? " " + col.first : "s " + col.first + " to " + col.last) + ": " + parts.join(", ");
    });
    box.appendChild(fig);
    box.setAttribute("data-drawn", "1");
  }

  // ---------------------------------------------------------------- traffic over time
  // the Health section's units per completed period, a line per arm (its table below it)
  function traffic(box, doc) {
    box.textContent = "";
    var periods = doc.traffic.map(function (t) { return t.period; });
    var data = [periods], series = [{label: "period"}];
    doc.arms.forEach(function (a, i) {
      data.push(doc.traffic.map(function (t) { return t.arms[a] ? t.arms[a].units : null; }));
      series.push({label: a + " units", stroke: ARM_COLOURS[i % ARM_COLOURS.length], width: 2,
                   dash: i ? undefined : [6, 3], points: {show: true}});
    });
    var fig = el("figure", {"class": "chart", "data-periods": String(periods.length),
                            "data-arms": String(doc.arms.length)});
    fig.appendChild(el("figcaption", {}, "Units sold in each completed period, a line per arm " +
      "(the first arm dashed); the table below gives each figure."));
    box.appendChild(fig);
    new uPlot({
      width: Math.min(width(box), 620), height: 180, series: series, legend: {live: false},
      scales: {x: {time: false}}, axes: [{label: "period"}, {label: "units"}]
    }, data, fig);
    box.setAttribute("data-drawn", "1");
  }

  function drawTraffic() {
    var box = document.getElementById("traffic-chart");
    if (!box || box.hasAttribute("data-drawn")) { return; }
    try { traffic(box, JSON.parse(box.dataset.traffic)); } catch (err) { box.textContent = err.message; }
  }

  // ---------------------------------------------------------------- product search
  function product(form) {
    var out = document.getElementById("product-result");
    var name = form.querySelector("input[name=product]").value.trim();
    if (!name) { return; }
    out.textContent = "";
    getJSON(form.dataset.api + "/" + encodeURIComponent(name)).then(function (doc) {
      out.appendChild(el("h3", {}, "Product " + doc.product));
      var m = doc.in_force;
      out.appendChild(el("p", {id: "product-in-force"}, m ? "In force (experiment " + m.experiment + "): " +
        (m.arm_name || m.arm || "-") + ", policy " + (m.policy || "-") + ", status " + (m.status || m.state) +
        " - " + m.reason : "No message in force."));
      var pre = el("details"); pre.appendChild(el("summary", {}, "The message in force, as pricelab assignments prints it"));
      pre.appendChild(el("pre", {}, JSON.stringify(m, null, 2))); out.appendChild(pre);
      var table = el("table", {id: "product-history"});
      var head = el("tr");
      ["Period", "Starts", "Arm", "Policy", "P(not control)", "Blackout until", "Why"].forEach(function (h) { head.appendChild(el("th", {}, h)); });
      table.appendChild(el("thead")).appendChild(head);
      var body = table.appendChild(el("tbody"));
      doc.history.forEach(function (h) {
        var tr = el("tr", {"data-period": String(h.period)});
        if (h.period === doc.period) { tr.setAttribute("class", "in-force"); }
        [h.period + (h.period === doc.period ? " (in force)" : ""), h.period_start, h.arm, h.policy,
         fmt(h.probability, 3), h.blackout_until || "", h.blackout_reason || ""].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
        body.appendChild(tr);
      });
      out.appendChild(table);
    }).catch(function (err) { out.appendChild(el("p", {"class": "error", role: "alert"}, err.message)); });
  }

  // the charts of the live parts: drawn once per container the server sent (htmx puts fresh,
  // empty ones in after each look), from one fetch of the series document
  function drawCharts() {
    var over = document.getElementById("over-time-chart");
    if (!over || over.hasAttribute("data-drawn") || over.hasAttribute("data-loading")) { return; }
    over.setAttribute("data-loading", "1");
    getJSON(over.dataset.charts).then(function (doc) {
      overTime(over, doc);
      var lad = document.getElementById("ladder-chart");
      if (lad) { ladder(lad, doc.ladder); }
    }).catch(function (err) {
      over.textContent = err.message;
    }).finally(function () { over.removeAttribute("data-loading"); });
  }

  function drawHeatmap() {
    var box = document.getElementById("heatmap");
    if (!box) { return; }
    getJSON(box.dataset.heatmap).then(function (doc) {
      var text = JSON.stringify(doc);
      if (text !== box.dataset.shown) { heatmap(box, doc); box.dataset.shown = text; }  // changed only
    }).catch(function (err) { box.textContent = err.message; delete box.dataset.shown; });
  }

  window.pricelabCharts = {overTime: overTime, ladder: ladder, heatmap: heatmap, traffic: traffic};
  document.addEventListener("submit", function (e) {
    if (e.target.id === "product-search") { e.preventDefault(); product(e.target); }
  });
  document.addEventListener("DOMContentLoaded", function () { drawCharts(); drawHeatmap(); });
  document.addEventListener("htmx:afterSettle", drawCharts);
  document.addEventListener("htmx:afterSettle", drawTraffic);  // the Health section, fetched
  // a look or a status change (a freeze lays blackouts over the schedule, a pause or stop its
  // layer over the periods): the heatmap again
  document.addEventListener("look", drawHeatmap);
  document.addEventListener("status", drawHeatmap);
}());
