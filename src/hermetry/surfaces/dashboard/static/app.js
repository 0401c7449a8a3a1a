/* hermetry dashboard — views over the analytics JSON (docs/json.md).
 *
 * Plain script, no build step: the same file runs in `hermetry dashboard` and in the Telemetry
 * tab of `hermes dashboard`. Every number shown is a number the server's analytics call
 * returned; this file only formats, lays out, sorts and charts them. A figure that was not
 * captured is shown as "—" (never 0), and every panel says what it covers.
 *
 *   HermetryDashboard.mount(element, {apiBase, fetchJSON, live})
 *
 * State (view, window, filters) lives in the URL fragment: #/overview?days=7&source=cli
 */
(function () {
  "use strict";

  var VIEWS = [["overview", "Overview"], ["breakdowns", "Breakdowns"], ["tools", "Tools"],
               ["sessions", "Sessions"], ["compare", "Compare"]];
  var FILTERS = ["source", "model", "provider", "session_type", "profile", "host", "tool", "toolset"];
  var DIMS = ["source", "model", "provider", "toolset", "tool", "session_type", "profile", "host"];
  var WINDOW_KEYS = ["days", "since", "until"];
  var TOKEN_KINDS = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"];
  var COLORS = ["#1f5fbf", "#b3261e", "#2e7d32", "#8e24aa", "#e65100", "#00695c"];

  // ----------------------------------------------------------------------------------------
  // DOM and formatting helpers
  // ----------------------------------------------------------------------------------------

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === "text") el.textContent = v;
        else if (k === "class") el.className = v;
        else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
    return el;
  }
  function add(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { add(el, c); }); return; }
    el.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  function get(obj, path) {
    var parts = path.split(".");
    for (var i = 0; i < parts.length; i++) {
      if (obj === null || obj === undefined) return undefined;
      obj = obj[parts[i]];
    }
    return obj;
  }
  var NF = new Intl.NumberFormat("en-US");
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmtInt(v) { return isNum(v) ? NF.format(v) : "—"; }
  function fmtMs(v) {
    if (!isNum(v)) return "—";
    if (Math.abs(v) >= 10000) return NF.format(Math.round(v / 100) / 10) + " s";
    return NF.format(Math.round(v)) + " ms";
  }
  function fmtUsd(v) {
    if (!isNum(v)) return "—";
    if (v === 0) return "$0";
    var a = Math.abs(v);
    if (a < 0.01) return "$" + v.toPrecision(3);  // sub-cent costs are never shown as $0.00
    return "$" + v.toFixed(a < 100 ? 4 : 2);
  }
  function plural(n, one, many) { return fmtInt(n) + " " + (n === 1 ? one : (many || one + "s")); }
  function fmtPct(v) { return isNum(v) ? (v * 100).toFixed(1) + "%" : "—"; }
  function fmtRate(r) {
    if (!r || !isNum(r.value)) return "—";
    return fmtPct(r.value) + " (" + fmtPct(r.ci95_low) + "–" + fmtPct(r.ci95_high) + ", n=" + fmtInt(r.n) + ")";
  }
  function fmtCoverage(c) {
    if (!c) return "";
    return fmtInt(c.captured) + " of " + fmtInt(c.of);
  }
  function label(s) { return String(s).replace(/_/g, " "); }
  function keyText(v) { return v === null || v === undefined ? "(none)" : String(v); }

  var PRUNED_TITLE = "pruned: hermetry prune deleted these rows; the rollups keep the window's totals";
  /** A figure with its raw value kept for tests and screen readers: data-metric/data-value.
   *  ``pruned``: the figure is unknown because its rows were pruned (not because never captured). */
  function figure(metric, raw, text, pruned) {
    var unknown = raw === null || raw === undefined;
    return h("span", {"class": "fig" + (unknown ? " unknown" : ""), "data-metric": metric,
                      "data-value": raw === undefined ? "null" : JSON.stringify(raw),
                      title: unknown ? (pruned ? PRUNED_TITLE : "not captured") : null}, unknown && pruned ? "pruned" : text);
  }

  // ----------------------------------------------------------------------------------------
  // URL state
  // ----------------------------------------------------------------------------------------

  function parseHash() {
    var raw = (location.hash || "").replace(/^#\/?/, "");
    var q = raw.indexOf("?");
    var view = (q >= 0 ? raw.slice(0, q) : raw) || "overview";
    var params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
    return {view: view, params: params};
  }
  function hashFor(view, params) {
    var s = params.toString();
    return "#/" + view + (s ? "?" + s : "");
  }
  function pick(params, keys) {
    var out = new URLSearchParams();
    keys.forEach(function (k) { if (params.get(k)) out.set(k, params.get(k)); });
    return out;
  }

  // ----------------------------------------------------------------------------------------
  // Charts (uPlot) — every chart is followed by a table holding the same numbers
  // ----------------------------------------------------------------------------------------

  function dayTs(day) { return Date.parse(day + "T00:00:00Z") / 1000; }

  function chart(container, title, xs, series, opts) {
    opts = opts || {};
    var U = window.uPlot;
    var fig = h("figure", {"class": "chart"}, h("figcaption", {text: title}));
    var canvasBox = h("div", {"class": "chart-canvas", "aria-hidden": "true"});
    fig.appendChild(canvasBox);
    container.appendChild(fig);
    if (!U || !xs.length) {
      canvasBox.appendChild(h("p", {"class": "muted", text: xs.length ? "(chart unavailable; see the table)" : "no data in this window"}));
      return fig;
    }
    // drawn once the view is in the page, so the chart knows its width
    PENDING.push(function () { draw(U, container, canvasBox, series, xs, opts); });
    return fig;
  }
  var PENDING = [];
  function drawPending() {
    var todo = PENDING; PENDING = [];
    todo.forEach(function (f) { f(); });
  }

  function draw(U, container, canvasBox, series, xs, opts) {
    var width = Math.max(240, Math.min(canvasBox.clientWidth || container.clientWidth || 600, 1100));
    var data = [xs].concat(series.map(function (s) {
      return s.values.map(function (v) { return isNum(v) ? v : null; });
    }));
    var fmt = opts.format || fmtInt;
    var uSeries = [{}].concat(series.map(function (s, i) {
      var spec = {label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
                  value: function (u, v) { return v === null ? "—" : fmt(v); }};
      spec.points = {show: true, size: 5};
      return spec;
    }));
    try {
      new U({
        width: width, height: opts.height || 200, series: uSeries,
        scales: {x: {time: true}},
        axes: [{stroke: "#333", grid: {stroke: "#e3e3e3"}},
               {stroke: "#333", grid: {stroke: "#e3e3e3"}, size: 70,
                values: function (u, vals) { return vals.map(function (v) { return fmt(v); }); }}],
        legend: {show: true},
        cursor: {drag: {x: false, y: false}},
      }, data, canvasBox);
    } catch (err) {
      canvasBox.appendChild(h("p", {"class": "muted", text: "(chart unavailable: " + err.message + ")"}));
    }
  }

  /** A plain table; columns: [{label, value(row) -> node|string, sort(row) -> number|string, numeric}]. */
  function table(caption, columns, rows, opts) {
    opts = opts || {};
    var state = {col: opts.sortBy === undefined ? -1 : opts.sortBy, dir: opts.sortDir || -1};
    var wrap = h("div", {"class": "table-wrap", tabindex: "0", role: "region", "aria-label": caption});
    var tbl = h("table", {"class": "data", "data-table": opts.id || null});
    wrap.appendChild(tbl);
    function render() {
      tbl.textContent = "";
      tbl.appendChild(h("caption", {text: caption}));
      var headRow = h("tr");
      columns.forEach(function (c, i) {
        var sortable = opts.sortable && c.sort;
        var sortState = state.col === i ? (state.dir > 0 ? "ascending" : "descending") : (sortable ? "none" : null);
        var content = sortable ? h("button", {type: "button", "class": "sort", "data-sort": c.label,
                                              onclick: function () {
          state.dir = state.col === i ? -state.dir : (c.numeric ? -1 : 1);
          state.col = i;
          render();
          var again = tbl.querySelector("button[data-sort='" + c.label.replace(/'/g, "") + "']");
          if (again) again.focus();
        }}, c.label, h("span", {"class": "arrow", "aria-hidden": "true",
                                text: state.col === i ? (state.dir > 0 ? " ▲" : " ▼") : ""})) : c.label;
        headRow.appendChild(h("th", {scope: "col", "class": c.numeric ? "num" : null, "aria-sort": sortState}, content));
      });
      tbl.appendChild(h("thead", null, headRow));
      var body = h("tbody");
      var sorted = rows.slice();
      if (state.col >= 0 && columns[state.col].sort) {
        var key = columns[state.col].sort;
        sorted.sort(function (a, b) {
          var x = key(a), y = key(b);
          var xn = x === null || x === undefined, yn = y === null || y === undefined;
          if (xn || yn) return xn === yn ? 0 : (xn ? 1 : -1);  // unknown last, either way
          return (x < y ? -1 : x > y ? 1 : 0) * state.dir;
        });
      }
      if (!sorted.length) {
        body.appendChild(h("tr", null, h("td", {colspan: columns.length, "class": "muted", text: opts.empty || "nothing in this window"})));
      }
      sorted.forEach(function (r) {
        var tr = h("tr", {"data-key": opts.rowKey ? keyText(opts.rowKey(r)) : null});
        columns.forEach(function (c, i) {
          var cell = c.value(r);
          tr.appendChild(i === 0 && opts.rowHeader !== false ? h("th", {scope: "row"}, cell) : h("td", {"class": c.numeric ? "num" : null}, cell));
        });
        body.appendChild(tr);
      });
      tbl.appendChild(body);
    }
    render();
    return wrap;
  }

  function details(summary, content, open) {
    return h("details", {"class": "equiv", open: open || null}, h("summary", {text: summary}), content);
  }

  function panel(title, coverageText) {
    var sec = h("section", {"class": "panel", "aria-label": title});
    sec.appendChild(h("h2", {text: title}));
    if (coverageText) sec.appendChild(h("p", {"class": "coverage", text: coverageText}));
    return sec;
  }

  // ----------------------------------------------------------------------------------------
  // Views
  // ----------------------------------------------------------------------------------------

  function distCols(prefix, path, fmt) {
    fmt = fmt || fmtMs;
    return ["p50", "p95", "p99"].map(function (p) {
      return {label: prefix + p, numeric: true, sort: function (r) { return get(r, path + "." + p); },
              value: function (r) { return figure(path + "." + p, get(r, path + "." + p), fmt(get(r, path + "." + p))); }};
    });
  }

  function distSummary(metric, d) {
    if (!d) return h("p", {text: "—"});
    return h("dl", {"class": "dist"},
      ["count", "avg", "p50", "p95", "p99", "max"].map(function (k) {
        return h("div", null, h("dt", {text: k}),
                 h("dd", null, figure(metric + "." + k, d[k], k === "count" ? fmtInt(d[k]) : fmtMs(d[k]))));
      }));
  }

  function coverageLine(what, d, unit) {
    if (!d || !d.coverage) return "";
    var s = what + " captured for " + fmtCoverage(d.coverage) + " " + (unit || "rows");
    if (d.session_coverage) s += ", in " + fmtCoverage(d.session_coverage) + " sessions";
    return s;
  }

  // How percentiles were computed, from the JSON's own "method" / "relative_error" on each summary
  // (exact: every stored value; approximate: the rollups' sketches). Said once per panel or card.
  function methodOf(summaries) {
    var seen = summaries.filter(function (d) { return d && d.count && d.method; });
    if (!seen.length) return null;
    var approx = seen.filter(function (d) { return d.method !== "exact"; });
    if (!approx.length) return {method: "exact", text: "exact"};
    var err = Math.max.apply(null, approx.map(function (d) { return isNum(d.relative_error) ? d.relative_error : 0; }));
    var bound = err ? "≤" + (+(err * 100).toPrecision(2)) + " % rel. err" : "approximate";
    if (approx.length === seen.length) return {method: "approximate", text: bound};
    return {method: "mixed", text: "mixed: some " + bound + ", others exact"};
  }
  function methodBadge(key, summaries) {
    var m = methodOf(summaries);
    if (!m) return null;
    return h("span", {"class": "method", "data-method-for": key, "data-method": m.method,
                      title: m.method === "exact" ? "percentiles computed from every stored value" :
                        "percentiles merged from hourly rollups (log-bucket sketches), within the relative error shown"},
             m.text);
  }

  function card(title, metric, raw, text, sub, badge) {
    return h("div", {"class": "card"}, h("div", {"class": "card-title"}, title, badge ? [" ", badge] : null),
             h("div", {"class": "card-value"}, figure(metric, raw, text)), sub ? h("div", {"class": "card-sub"}, sub) : null);
  }

  function overview(ctx, report, hourly) {
    var out = h("div", {"class": "view"});
    var cov = report.coverage || {};
    var turns = report.turns || {}, api = report.api_calls || {}, tools = report.tool_calls || {};
    var tokens = api.tokens || {}, cost = api.cost || {}, sessions = report.sessions || {};
    out.appendChild(h("p", {"class": "coverage"}, "Window " + report.window.since + " → " + report.window.until +
      " · covers ", figure("coverage.sessions", cov.sessions, fmtInt(cov.sessions)), cov.sessions === 1 ? " session, " : " sessions, ",
      figure("coverage.turns", cov.turns, fmtInt(cov.turns)), cov.turns === 1 ? " turn, " : " turns, ",
      figure("coverage.api_calls", cov.api_calls, fmtInt(cov.api_calls)), cov.api_calls === 1 ? " API call, " : " API calls, ",
      figure("coverage.tool_calls", cov.tool_calls, fmtInt(cov.tool_calls)), cov.tool_calls === 1 ? " tool call" : " tool calls",
      cov.events_dropped ? h("strong", {"class": "warn"}, " · " + fmtInt(cov.events_dropped) + " events dropped by the recorder (in no figure)") : null));

    out.appendChild(h("div", {"class": "cards"},
      card("Turns", "turns.count", turns.count, fmtInt(turns.count),
           ["completed ", figure("turns.completion_rate.value", get(turns, "completion_rate.value"), fmtRate(turns.completion_rate))]),
      card("Turn wall time p95", "turns.wall_ms.p95", get(turns, "wall_ms.p95"), fmtMs(get(turns, "wall_ms.p95")),
           coverageLine("", turns.wall_ms, "ended turns").trim(), methodBadge("turns.wall_ms", [turns.wall_ms])),
      card("Model call latency p95", "api_calls.latency_ms.p95", get(api, "latency_ms.p95"), fmtMs(get(api, "latency_ms.p95")),
           fmtInt(api.count) + " calls, " + fmtInt(api.errors) + " errors", methodBadge("api_calls.latency_ms", [api.latency_ms])),
      card("Time to first token p95", "api_calls.ttft_ms.p95", get(api, "ttft_ms.p95"), fmtMs(get(api, "ttft_ms.p95")),
           coverageLine("", api.ttft_ms, "successful calls").trim(), methodBadge("api_calls.ttft_ms", [api.ttft_ms])),
      card("Tokens", "api_calls.tokens.total_tokens", tokens.total_tokens, fmtInt(tokens.total_tokens),
           "usage reported by " + fmtCoverage(tokens.coverage) + " successful calls"),
      card("Cost (known)", "api_calls.cost.known_usd", cost.known_usd, fmtUsd(cost.known_usd),
           cost.complete === false ? h("span", {"class": "warn"}, fmtInt(get(cost, "calls.unknown")) + (get(cost, "calls.unknown") === 1 ? " call" : " calls") + " could not be priced: not included") :
           "priced " + fmtCoverage(cost.coverage) + " billable calls"),
      card("Tool calls", "tool_calls.count", tools.count, fmtInt(tools.count),
           ["failed ", figure("tool_calls.failure_rate.value", get(tools, "failure_rate.value"), fmtRate(tools.failure_rate))]),
      card("Sessions started", "sessions.count", sessions.count, fmtInt(sessions.count), fmtInt(sessions.open) + " still open")));

    // over time: per hour for a window of up to 3 days (series.hourly), else per UTC day (the breakdown)
    var per = hourly ? "hour" : "day";
    var days = hourly ? (hourly.hours || []) : (get(report, "breakdowns.day") || []);
    var keyOf = hourly ? function (d) { return d.hour; } : function (d) { return d.day; };
    var shownKey = hourly ? function (d) { return d.hour.slice(0, 13).replace("T", " ") + "h"; } : keyOf;
    var dayNames = days.map(hourly ? function (d) { return Date.parse(d.hour) / 1000; } : function (d) { return dayTs(d.day); });
    
    // latency over time
    var lat = panel("Latency over time (per UTC " + per + ")", "");
    [["Model call latency", "api_calls.latency_ms", "all attempts"], ["Time to first token", "api_calls.ttft_ms", "successful streamed calls"],
     ["Turn wall time", "turns.wall_ms", "ended turns"]].forEach(function (spec) {
      var whole = get(report, spec[1]);
      var box = h("div", {"class": "subpanel", "data-panel": spec[1]});
      box.appendChild(h("h3", null, spec[0], " ", methodBadge("series:" + spec[1],
        [whole].concat(days.map(function (d) { return get(d, spec[1]); })))));
      box.appendChild(h("p", {"class": "coverage", text: coverageLine(spec[0], whole, spec[2])}));
      box.appendChild(distSummary(spec[1], whole));
      lat.appendChild(box);
      chart(box, spec[0] + " p50 / p95 / p99 per " + per, dayNames, ["p50", "p95", "p99"].map(function (p) {
        return {label: p, values: days.map(function (d) { return get(d, spec[1] + "." + p); })};
      }), {format: fmtMs});
      box.appendChild(details("Table: " + spec[0] + " per " + per, table(spec[0] + " per " + per,
        [{label: per, value: shownKey}].concat(distCols("", spec[1]),
        [{label: "captured", numeric: true, value: function (d) { return fmtCoverage(get(d, spec[1] + ".coverage")); }}]), days,
        {id: "series-" + spec[1], rowKey: keyOf})));
    });
    out.appendChild(lat);

    // tokens
    var tok = panel("Tokens by kind per " + per, coverageLine("Usage", tokens, "successful calls") +
                    ". Input excludes cache reads and writes; output includes reasoning; total = input + cache read + cache write + output.");
    chart(tok, "Tokens per " + per + " by kind", dayNames, TOKEN_KINDS.map(function (k) {
      return {label: label(k), values: days.map(function (d) { return get(d, "api_calls.tokens." + k); })};
    }));
    tok.appendChild(details("Table: tokens per " + per, table("Tokens per " + per, [{label: per, value: shownKey}].concat(
      TOKEN_KINDS.concat(["total_tokens"]).map(function (k) {
        return {label: label(k), numeric: true, value: function (d) { return figure("api_calls.tokens." + k, get(d, "api_calls.tokens." + k), fmtInt(get(d, "api_calls.tokens." + k))); }};
      })), days, {id: "series-tokens", rowKey: keyOf}), true));
    out.appendChild(tok);

    // cost
    var cst = panel("Cost by status per " + per, "Priced " + fmtCoverage(cost.coverage) + " billable calls. Actual = provider-reported; estimated = from a price list; included = paid by a subscription; unknown calls are counted, never summed as $0.");
    chart(cst, "Cost per " + per + " (USD) by status", dayNames, [
      {label: "actual", values: days.map(function (d) { return get(d, "api_calls.cost.actual_usd"); })},
      {label: "estimated", values: days.map(function (d) { return get(d, "api_calls.cost.estimated_usd"); })}], {format: fmtUsd});
    var costCols = [{label: per, value: shownKey}].concat(
      [["actual_usd", fmtUsd], ["estimated_usd", fmtUsd], ["known_usd", fmtUsd]].map(function (s) {
        return {label: label(s[0]), numeric: true, value: function (d) { return figure("api_calls.cost." + s[0], get(d, "api_calls.cost." + s[0]), s[1](get(d, "api_calls.cost." + s[0]))); }};
      }),
      ["actual", "estimated", "included", "unknown"].map(function (k) {
        return {label: k + " calls", numeric: true, value: function (d) { return figure("api_calls.cost.calls." + k, get(d, "api_calls.cost.calls." + k), fmtInt(get(d, "api_calls.cost.calls." + k))); }};
      }));
    cst.appendChild(details("Table: cost per " + per, table("Cost per " + per, costCols, days, {id: "series-cost", rowKey: keyOf}), true));
    out.appendChild(cst);

    // rates
    var rates = panel("Completion and failure rates", "Turn rates over ended turns, with 95% Wilson intervals. Failure = timed out, errored or abandoned.");
    ["source", "model"].forEach(function (dim) {
      var rows = get(report, "breakdowns." + dim) || [];
      rates.appendChild(table("Turns by " + label(dim), [
        {label: dim, value: function (r) { return keyText(r[dim]); }},
        {label: "turns", numeric: true, value: function (r) { return figure("turns.count", get(r, "turns.count"), fmtInt(get(r, "turns.count"))); }},
        {label: "completion rate", numeric: true, value: function (r) { return rateCell("turns.completion_rate", get(r, "turns.completion_rate")); }},
        {label: "failure rate", numeric: true, value: function (r) { return rateCell("turns.failure_rate", get(r, "turns.failure_rate")); }},
        {label: "API error rate", numeric: true, value: function (r) { return rateCell("api_calls.error_rate", get(r, "api_calls.error_rate")); }},
      ], rows, {id: "rates-" + dim, rowKey: function (r) { return r[dim]; }}));
    });
    var outcomes = turns.by_outcome || {};
    rates.appendChild(h("p", {"class": "outcomes"}, "Turn outcomes: ", Object.keys(outcomes).map(function (k, i) {
      return [i ? ", " : "", label(k) + " ", figure("turns.by_outcome." + k, outcomes[k], fmtInt(outcomes[k]))];
    })));
    out.appendChild(rates);
    return out;
  }

  function rateCell(metric, r) {
    var box = h("span", {"class": "rate"});
    box.appendChild(figure(metric + ".value", r ? r.value : null, fmtRate(r)));
    if (r && isNum(r.value)) {
      var bar = h("span", {"class": "ratebar", "aria-hidden": "true"});
      bar.appendChild(h("span", {"class": "ci", style: "left:" + (r.ci95_low * 100) + "%;width:" + ((r.ci95_high - r.ci95_low) * 100) + "%"}));
      bar.appendChild(h("span", {"class": "pt", style: "left:" + (r.value * 100) + "%"}));
      box.appendChild(bar);
    }
    return box;
  }

  function breakdowns(ctx, report, dim) {
    var out = h("div", {"class": "view"});
    var tabs = h("div", {"class": "dimtabs", role: "group", "aria-label": "Break down by"});
    DIMS.forEach(function (d) {
      var p = pick(ctx.params, WINDOW_KEYS.concat(FILTERS));
      p.set("by", d);
      tabs.appendChild(h("a", {href: hashFor("breakdowns", p), "aria-current": d === dim ? "true" : null, text: label(d)}));
    });
    out.appendChild(tabs);
    if (report.error) { out.appendChild(h("p", {"class": "error", role: "alert", text: report.error})); return out; }
    var rows = get(report, "breakdowns." + dim) || [];
    var toolDim = dim === "tool" || dim === "toolset";
    var cols = [{label: dim, sort: function (r) { return keyText(r[dim]); }, value: function (r) { return keyText(r[dim]); }}];
    if (!toolDim) {
      cols = cols.concat([
        num("sessions", "sessions", fmtInt),
        num("turns", "turns.count", fmtInt),
        rateCol("completion", "turns.completion_rate"),
        rateCol("failure", "turns.failure_rate"),
      ], distCols("wall ", "turns.wall_ms").slice(0, 2), [
        num("API calls", "api_calls.count", fmtInt),
        rateCol("API errors", "api_calls.error_rate"),
      ], distCols("latency ", "api_calls.latency_ms").slice(0, 2), distCols("TTFT ", "api_calls.ttft_ms").slice(1, 2), [
        num("tokens", "api_calls.tokens.total_tokens", fmtInt),
        num("cost (known)", "api_calls.cost.known_usd", fmtUsd),
        num("unpriced calls", "api_calls.cost.calls.unknown", fmtInt),
      ]);
    }
    cols = cols.concat([num("tool calls", "tool_calls.count", fmtInt), rateCol("tool failures", "tool_calls.failure_rate"),
                        distCols("tool ", "tool_calls.latency_ms").slice(1, 2)[0]]);
    var bp = panel("By " + label(dim), toolDim ? "Tools classify tool calls only: no turn or API-call figures." :
      "Turns and tool calls take their session's " + label(dim) + (dim === "model" || dim === "provider" ? "; API calls their own." : ".") +
      " Click a column to sort.");
    var badge = methodBadge("breakdown:" + dim, rows.map(function (r) { return [get(r, "turns.wall_ms"), get(r, "api_calls.latency_ms"),
      get(r, "api_calls.ttft_ms"), get(r, "tool_calls.latency_ms")]; }).reduce(function (a, b) { return a.concat(b); }, []));
    if (badge) bp.querySelector("h2").append(" · percentiles ", badge);
    out.appendChild(bp).appendChild(
      table("By " + label(dim), cols, rows, {sortable: true, id: "breakdown-" + dim, rowKey: function (r) { return r[dim]; }, sortBy: toolDim ? undefined : 2}));
    return out;
  }
  function num(lbl, path, fmt) {
    return {label: lbl, numeric: true, sort: function (r) { return get(r, path); },
            value: function (r) { return figure(path, get(r, path), fmt(get(r, path)), r.pruned === true); }};
  }
  function rateCol(lbl, path) {
    return {label: lbl, numeric: true, sort: function (r) { return get(r, path + ".value"); },
            value: function (r) { return rateCell(path, get(r, path)); }};
  }

  function toolsView(ctx, report, daily) {
    var out = h("div", {"class": "view"});
    var tc = report.tool_calls || {};
    var p = panel("Tools", plural(tc.count, "tool call") + ", " + fmtInt(tc.failures) + " failed (status not ok); latency captured for " + fmtCoverage(get(tc, "latency_ms.coverage")) + ".");
    var toolBadge = methodBadge("tools", (report.tools || []).map(function (t) { return t.latency_ms; }));
    if (toolBadge) p.querySelector("h2").append(" · latency percentiles ", toolBadge);
    p.appendChild(table("Per tool", [
      {label: "tool", sort: function (t) { return keyText(t.tool_name); }, value: function (t) { return keyText(t.tool_name); }},
      {label: "toolset", sort: function (t) { return keyText(t.toolset); }, value: function (t) { return keyText(t.toolset); }},
      num("calls", "calls", fmtInt), num("failures", "failures", fmtInt), rateCol("failure rate", "failure_rate"),
    ].concat(distCols("latency ", "latency_ms")), report.tools || [], {sortable: true, sortBy: 2, id: "tools", rowKey: function (t) { return t.tool_name; }}));
    out.appendChild(p);

    var hp = panel("Failures over time", "Each cell: failed / calls with a known status of that tool that day (UTC); darker = higher failure rate; ? = status unknown (e.g. imported calls), not counted as failed.");
    var days = daily.days || [];
    var grid = h("table", {"class": "heatmap", "data-table": "heatmap"});
    grid.appendChild(h("caption", {text: "Tool failures per day"}));
    var head = h("tr", null, h("th", {scope: "col", text: "tool"}));
    days.forEach(function (d) { head.appendChild(h("th", {scope: "col", text: d.slice(5)})); });
    grid.appendChild(h("thead", null, head));
    var body = h("tbody");
    (daily.tools || []).forEach(function (t) {
      var tr = h("tr", {"data-key": keyText(t.tool_name)}, h("th", {scope: "row", text: keyText(t.tool_name)}));
      t.days.forEach(function (d) {
        var r = get(d, "failure_rate.value");
        var shade = isNum(r) ? Math.round(r * 100) : null;
        var known = get(d, "status_coverage.captured");
        if (!isNum(known)) known = d.calls;
        var unknown = d.calls - known;
        tr.appendChild(h("td", {"class": "cell" + (d.calls ? "" : " empty"), "data-day": d.day, "data-calls": d.calls, "data-failures": d.failures,
                                "data-known": known,
                                style: shade === null ? null : "background-color:rgba(179,38,30," + (0.08 + 0.92 * r).toFixed(3) + ");color:" + (r > 0.5 ? "#fff" : "#111"),
                                title: d.day + ": " + d.failures + " failed of " + known + " with a known status" + (isNum(r) ? " (" + fmtPct(r) + ")" : "") +
                                       (unknown ? "; " + unknown + " of " + d.calls + " status unknown" : "")},
                           !d.calls ? "·" : known ? d.failures + "/" + known + (unknown ? " ?" + unknown : "") : "?" + unknown));
      });
      body.appendChild(tr);
    });
    if (!(daily.tools || []).length) body.appendChild(h("tr", null, h("td", {colspan: days.length + 1, "class": "muted", text: "no tool calls in this window"})));
    grid.appendChild(body);
    hp.appendChild(h("div", {"class": "table-wrap", tabindex: "0", role: "region", "aria-label": "Tool failures per day"}, grid));
    out.appendChild(hp);
    return out;
  }

  function sessionsView(ctx, result) {
    var out = h("div", {"class": "view"});
    var p = panel("Sessions", (result.rolled_up ? plural(result.count, "conversation") : plural(result.count, "session")) + " started in the window; the newest " +
                  fmtInt((result.sessions || []).length) + " shown" + (result.rolled_up ? " (subagents and continuations rolled into their conversation)." : "."));
    var flat = ctx.params.get("flat") === "1";
    var tp = pick(ctx.params, WINDOW_KEYS.concat(["limit"]));
    if (!flat) tp.set("flat", "1");
    var more = null;
    if ((result.sessions || []).length < result.count && result.limit < 500) {
      var mp = pick(ctx.params, WINDOW_KEYS.concat(["flat"]));
      mp.set("limit", String(Math.min(500, result.limit * 4)));
      more = [" · ", h("a", {href: hashFor("sessions", mp), text: "Show the newest " + Math.min(500, result.limit * 4)})];
    }
    p.appendChild(h("p", null, h("a", {href: hashFor("sessions", tp), text: flat ? "Roll up conversations" : "One row per session"}), more));
    var search = h("input", {type: "search", id: "session-search", placeholder: "source, model, outcome, id…", "aria-describedby": "session-search-help"});
    p.appendChild(h("label", {"for": "session-search", text: "Show rows containing "}));
    p.appendChild(search);
    p.appendChild(h("span", {id: "session-search-help", "class": "muted", text: " (narrows the rows shown; the counts above are the window's)"}));
    var rows = result.sessions || [];
    var wrap = table("Sessions", [
      {label: "started", sort: function (s) { return s.started_at_ms; }, value: function (s) {
        var q = pick(ctx.params, WINDOW_KEYS); q.set("id", s.session_id);
        return h("a", {href: hashFor("session", q), text: (s.started_at || "").replace("T", " ").replace("+00:00", "Z")});
      }},
      {label: "session", sort: function (s) { return s.session_id; }, value: function (s) { return h("code", {text: s.session_id}); }},
      {label: "source", sort: function (s) { return keyText(s.source); }, value: function (s) { return keyText(s.source); }},
      {label: "model", sort: function (s) { return keyText(s.model); }, value: function (s) { return keyText(s.model); }},
      {label: "outcome", sort: function (s) { return keyText(s.outcome); }, value: function (s) { return h("span", {"class": "outcome " + s.outcome, text: keyText(s.outcome)}); }},
      num("turns", "turns", fmtInt), num("API calls", "api_calls", fmtInt), num("errors", "api_errors", fmtInt),
      num("tool calls", "tool_calls", fmtInt), num("tokens", "tokens.total_tokens", fmtInt), num("cost (known)", "cost.known_usd", fmtUsd),
      num("duration", "duration_ms", fmtMs),
      {label: "sessions", numeric: true, sort: function (s) { return s.sessions_in_conversation; }, value: function (s) { return fmtInt(s.sessions_in_conversation); }},
    ], rows, {sortable: true, id: "sessions", rowKey: function (s) { return s.session_id; }});
    search.addEventListener("input", function () {
      var needle = search.value.toLowerCase();
      wrap.querySelectorAll("tbody tr").forEach(function (tr) { tr.hidden = needle && tr.textContent.toLowerCase().indexOf(needle) < 0; });
    });
    p.appendChild(wrap);
    out.appendChild(p);
    return out;
  }

  function waterfallBar(turn) {
    var wall = turn.wall_ms;
    var span = isNum(wall) && wall > 0 ? wall : Math.max.apply(null, [1].concat(
      (turn.api_calls || []).concat(turn.tool_calls || []).map(function (c) { return (c.offset_ms || 0) + (c.latency_ms || 0); })));
    var box = h("div", {"class": "wf", "aria-hidden": "true"});
    function bar(kind, offset, len, text) {
      if (!isNum(offset) || !isNum(len)) return;
      var left = Math.max(0, Math.min(100, offset / span * 100));
      var width = Math.max(0.4, Math.min(100 - left, len / span * 100));
      box.appendChild(h("div", {"class": "wf-row"}, h("span", {"class": "wf-label", text: text}),
        h("span", {"class": "wf-track"}, h("span", {"class": "wf-bar " + kind, style: "left:" + left + "%;width:" + width + "%"}))));
    }
    (turn.api_calls || []).forEach(function (c) {
      bar("model" + (c.status === "ok" ? "" : " err"), c.offset_ms, c.latency_ms, "model " + (c.attempt ? "retry " + c.attempt : "") );
      if (isNum(c.ttft_ms)) box.lastChild && box.lastChild.querySelector(".wf-track").appendChild(
        h("span", {"class": "wf-ttft", style: "left:" + Math.min(100, (c.offset_ms + c.ttft_ms) / span * 100) + "%"}));
    });
    (turn.tool_calls || []).forEach(function (c) { bar("tool" + (c.status === "ok" ? "" : " err"), c.offset_ms, c.latency_ms, keyText(c.tool_name)); });
    return box;
  }

  function sessionView(ctx, d) {
    var out = h("div", {"class": "view"});
    var s = d.session || {};
    var back = pick(ctx.params, WINDOW_KEYS);
    out.appendChild(h("p", null, h("a", {href: hashFor("sessions", back), text: "← Sessions"})));
    var info = panel("Session " + s.session_id, "");
    info.appendChild(h("dl", {"class": "kv"}, ["source", "session_type", "model", "provider", "profile", "outcome", "end_reason", "started_at", "ended_at", "runtime_version", "origin"].map(function (k) {
      return h("div", null, h("dt", {text: label(k)}), h("dd", null, figure("session." + k, s[k], s[k] === null || s[k] === undefined ? "—" : String(s[k]))));
    }).concat([h("div", null, h("dt", {text: "duration"}), h("dd", null, figure("session.duration_ms", s.duration_ms, fmtMs(s.duration_ms))))])));
    out.appendChild(info);

    var lin = d.lineage || {};
    var lp = panel("Lineage", "A conversation = the root session, its subagents and its compression continuations (" + fmtInt((lin.conversation_sessions || []).length || lin.conversation_sessions) + " sessions).");
    function link(x) {
      var q = pick(ctx.params, WINDOW_KEYS); q.set("id", x.session_id);
      return h("li", null, x.recorded === false ? h("code", {text: x.session_id}) : h("a", {href: hashFor("session", q)}, h("code", {text: x.session_id})),
               " — " + [x.lineage, x.source, x.model, x.outcome].filter(Boolean).join(", ") + (x.recorded === false ? " (not recorded)" : ""));
    }
    lp.appendChild(h("h3", {text: "Parents (nearest first)"}));
    lp.appendChild((lin.parents || []).length ? h("ol", null, lin.parents.map(link)) : h("p", {"class": "muted", text: "none: this is a root session"}));
    lp.appendChild(h("h3", {text: "Children"}));
    lp.appendChild((lin.children || []).length ? h("ul", null, lin.children.map(link)) : h("p", {"class": "muted", text: "none"}));
    out.appendChild(lp);

    var tp = panel("Turns: where the time went", "wall = model + tools − overlap + other (Hermes' own time between calls). Queue wait happened before the turn started. Bars: model calls (blue, TTFT tick), tool calls (green), failures (red).");
    (d.turns || []).forEach(function (t) {
      var w = t.waterfall || {};
      var box = h("div", {"class": "turn", "data-turn": t.turn_id});
      box.appendChild(h("h3", {text: "Turn " + t.index + " · " + keyText(t.outcome) + (t.outcome_reason ? " (" + t.outcome_reason + ")" : "") + " · " + fmtMs(t.wall_ms)}));
      box.appendChild(h("dl", {"class": "dist"}, ["queue_wait_ms", "wall_ms", "model_ms", "tools_ms", "overlap_ms", "other_ms"].map(function (k) {
        return h("div", null, h("dt", {text: label(k.replace("_ms", ""))}), h("dd", null, figure("waterfall." + k, w[k], fmtMs(w[k]))));
      })));
      box.appendChild(waterfallBar(t));
      var calls = (t.api_calls || []).map(function (c) { return {kind: "model", name: (c.model || "") + (c.attempt ? " (attempt " + c.attempt + ")" : ""), c: c}; })
        .concat((t.tool_calls || []).map(function (c) { return {kind: "tool", name: keyText(c.tool_name), c: c}; }))
        .sort(function (a, b) { return (a.c.offset_ms || 0) - (b.c.offset_ms || 0); });
      box.appendChild(details("Table: calls of turn " + t.index, table("Calls of turn " + t.index, [
        {label: "call", value: function (r) { return r.kind + ": " + r.name; }},
        {label: "start", numeric: true, value: function (r) { return "+" + fmtMs(r.c.offset_ms); }},
        {label: "duration", numeric: true, value: function (r) { return figure("call.latency_ms", r.c.latency_ms, fmtMs(r.c.latency_ms)); }},
        {label: "TTFT", numeric: true, value: function (r) { return r.kind === "model" ? figure("call.ttft_ms", r.c.ttft_ms, fmtMs(r.c.ttft_ms)) : ""; }},
        {label: "status", value: function (r) { return r.c.status + (r.c.error_type ? " (" + r.c.error_type + ")" : ""); }},
        {label: "tokens in · cache read · cache write · out", numeric: true, value: function (r) {
          return r.kind === "model" ? ["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"].map(function (k) { return fmtInt(r.c[k]); }).join(" · ") : ""; }},
        {label: "cost", numeric: true, value: function (r) { return r.kind === "model" ? fmtUsd(r.c.cost_usd) + " " + (r.c.cost_status || "") : ""; }},
      ], calls, {empty: "no calls recorded"}), true));
      tp.appendChild(box);
    });
    if (!(d.turns || []).length) tp.appendChild(h("p", {"class": "muted", text: "no turns recorded"}));
    out.appendChild(tp);

    var tot = d.totals || {};
    var totp = panel("Totals", "This session" + (d.conversation_totals ? "; the conversation's totals count each API call once." : "."));
    totp.appendChild(table("Totals", [
      {label: "", value: function (r) { return r[0]; }},
      {label: "turns", numeric: true, value: function (r) { return figure(r[1] + ".turns", r[2].turns, fmtInt(r[2].turns), r[2].pruned === true); }},
      {label: "API calls", numeric: true, value: function (r) { return figure(r[1] + ".api_calls", r[2].api_calls, fmtInt(r[2].api_calls), r[2].pruned === true); }},
      {label: "tokens", numeric: true, value: function (r) { return figure(r[1] + ".tokens.total_tokens", get(r[2], "tokens.total_tokens"), fmtInt(get(r[2], "tokens.total_tokens")), r[2].pruned === true); }},
      {label: "cost (known)", numeric: true, value: function (r) { return figure(r[1] + ".cost.known_usd", get(r[2], "cost.known_usd"), fmtUsd(get(r[2], "cost.known_usd")), r[2].pruned === true); }},
    ], [["session", "totals", tot], ["conversation", "conversation_totals", d.conversation_totals || {}]], {id: "totals"}));
    out.appendChild(totp);
    return out;
  }

  function compareView(ctx, c) {
    var out = h("div", {"class": "view"});
    var a = c.baseline || {}, b = c.current || {};
    out.appendChild(h("p", {"class": "coverage"}, "Baseline " + a.since + " → " + a.until + " (" + fmtInt(get(a, "coverage.turns")) + " turns) against current " +
      b.since + " → " + b.until + " (" + fmtInt(get(b, "coverage.turns")) + " turns). A change is a regression only when it is significant (α = " +
      get(c, "method.alpha") + ") and large enough to matter; fewer than " + get(c, "method.min_samples") + " samples: insufficient data."));
    var regs = c.regressions || [];
    var tested = (c.metrics || []).filter(function (m) { return m.verdict !== "insufficient data"; });
    out.appendChild(h("p", {"class": regs.length ? "warn" : tested.length ? "ok" : "muted", role: "status", "data-summary": "1"},
      regs.length ? "Significant regressions: " + regs.map(label).join(", ") :
      tested.length ? "No significant regression" + (tested.length < (c.metrics || []).length ? " (some metrics had too little data to test)." : ".") :
      "Not enough data to tell: every metric needs " + get(c, "method.min_samples") + " samples in each window."));
    var sides = [["turns", "turns.count", fmtInt], ["completion rate", "turns.completion_rate.value", fmtPct],
                 ["failure rate", "turns.failure_rate.value", fmtPct], ["turn wall p95", "turn_wall_ms.p95", fmtMs],
                 ["model call latency p95", "api_latency_ms.p95", fmtMs], ["TTFT p95", "ttft_ms.p95", fmtMs],
                 ["API calls", "coverage.api_calls", fmtInt], ["cost (known)", "cost.known_usd", fmtUsd]];
    out.appendChild(panel("The two windows", "The figures insights gives for each window.").appendChild(table("Windows", [
      {label: "", value: function (r) { return r[0]; }},
      {label: "baseline", numeric: true, value: function (r) { return figure("baseline." + r[1], get(a, r[1]), r[2](get(a, r[1]))); }},
      {label: "current", numeric: true, value: function (r) { return figure("current." + r[1], get(b, r[1]), r[2](get(b, r[1]))); }},
    ], sides, {id: "compare-windows", rowKey: function (r) { return r[1]; }})).parentNode);
    var fmtFor = function (m) { return m.unit === "ms" ? fmtMs : m.unit === "fraction" ? fmtPct : m.unit === "USD" ? fmtUsd : String; };
    out.appendChild(panel("Metrics, tested", "").appendChild(table("Compare", [
      {label: "metric", value: function (m) { return label(m.metric); }},
      {label: "baseline", numeric: true, value: function (m) { return figure("baseline", m.baseline, fmtFor(m)(m.baseline)); }},
      {label: "current", numeric: true, value: function (m) { return figure("current", m.current, fmtFor(m)(m.current)); }},
      {label: "change", numeric: true, value: function (m) { return isNum(m.relative_change) ? (m.relative_change > 0 ? "+" : "") + fmtPct(m.relative_change) : "—"; }},
      {label: "n (base / cur)", numeric: true, value: function (m) { return fmtInt(m.n_baseline) + " / " + fmtInt(m.n_current); }},
      {label: "p-value", numeric: true, value: function (m) { return isNum(m.p_value) ? m.p_value.toPrecision(2) : "—"; }},
      {label: "verdict", value: function (m) { return h("span", {"class": "verdict " + m.verdict.replace(/ /g, "-"), "data-verdict": m.verdict},
                                                        (m.verdict === "regression" ? "▲ " : m.verdict === "improvement" ? "▼ " : "") + m.verdict); }},
    ], c.metrics || [], {id: "compare", rowKey: function (m) { return m.metric; }})).parentNode);
    return out;
  }

  // ----------------------------------------------------------------------------------------
  // The shell: navigation, window and filter form, live refresh
  // ----------------------------------------------------------------------------------------

  function mount(root, opts) {
    opts = opts || {};
    var apiBase = (opts.apiBase || "api").replace(/\/$/, "");
    var fetchJSON = opts.fetchJSON || function (url) {
      return fetch(url, {credentials: "same-origin"}).then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error(body && body.error ? body.error : "HTTP " + r.status);
          return body;
        });
      });
    };
    var knownValues = {};
    var lastVersion = null, lastRender = null, live = opts.live !== false, timer = null, rendering = 0;

    root.classList.add("hermetry");
    root.textContent = "";
    var skip = h("a", {"class": "skip", href: "#hermetry-main", text: "Skip to content", onclick: function (e) {
      e.preventDefault(); main.focus();
    }});
    var nav = h("nav", {"aria-label": "Dashboard views"});
    var form = h("form", {"class": "controls", "aria-label": "Window and filters"});
    var status = h("p", {"class": "status", role: "status", "aria-live": "polite"});
    var main = h("main", {id: "hermetry-main", tabindex: "-1"});
    root.appendChild(skip);
    root.appendChild(h("header", null, h("h1", {text: "hermetry"}), nav));
    root.appendChild(form);
    root.appendChild(status);
    root.appendChild(main);

    function api(endpoint, params) {
      var s = params.toString();
      return fetchJSON(apiBase + "/" + endpoint + (s ? "?" + s : ""));
    }

    function renderNav(state) {
      nav.textContent = "";
      var keep = pick(state.params, WINDOW_KEYS.concat(FILTERS));
      var ul = h("ul");
      VIEWS.forEach(function (v) {
        var current = state.view === v[0] || (state.view === "session" && v[0] === "sessions");
        ul.appendChild(h("li", null, h("a", {href: hashFor(v[0], keep), "aria-current": current ? "page" : null, "data-view": v[0], text: v[1]})));
      });
      nav.appendChild(ul);
    }

    function renderForm(state) {
      form.textContent = "";
      var p = state.params;
      var isCompare = state.view === "compare";
      var days = p.get("days") || (p.get("since") ? "" : "7");
      var keys = isCompare ? ["a_since", "a_until", "since", "until"] : ["since", "until"];
      var sel = h("select", {id: "f-days", name: "days", onchange: function () {
        if (sel.value) keys.forEach(function (k) { var el = form.querySelector("#f-" + k); if (el) el.value = ""; });
      }});
      [["1", "last 24 hours"], ["7", "last 7 days"], ["30", "last 30 days"], ["90", "last 90 days"], ["", "custom (since/until)"]].forEach(function (o) {
        sel.appendChild(h("option", {value: o[0], selected: o[0] === days ? true : null, text: isCompare && o[0] ? o[1] + " vs the " + o[1].replace("last ", "") + " before" : o[1]}));
      });
      form.appendChild(h("div", {"class": "field"}, h("label", {"for": "f-days", text: isCompare ? "Windows" : "Window"}), sel));
      var names = {a_since: "baseline since", a_until: "baseline until", since: isCompare ? "current since" : "since",
                   until: isCompare ? "current until" : "until"};
      keys.forEach(function (k) {
        form.appendChild(h("div", {"class": "field"}, h("label", {"for": "f-" + k, text: names[k] + " (UTC)"}),
          h("input", {id: "f-" + k, name: k, type: "text", inputmode: "numeric", placeholder: "2025-01-31T14:00", value: p.get(k) || "", size: 16})));
      });
      if (state.view !== "sessions" && state.view !== "session") {
        var active = FILTERS.filter(function (f) { return p.get(f); }).length;
        // on a narrow screen the filters fold away unless one is in use
        var box = h("details", {"class": "filters", open: active || window.innerWidth > 600 ? true : null},
                    h("summary", {text: "Filters" + (active ? " (" + active + " in use)" : "")}));
        var fields = h("div", {"class": "filter-fields"});
        FILTERS.forEach(function (f) {
          var listId = "dl-" + f;
          var dl = h("datalist", {id: listId});
          (knownValues[f] || []).forEach(function (v) { dl.appendChild(h("option", {value: v})); });
          fields.appendChild(h("div", {"class": "field"}, h("label", {"for": "f-" + f, text: label(f)}),
            h("input", {id: "f-" + f, name: f, type: "text", list: listId, value: p.get(f) || "", size: 12}), dl));
        });
        box.appendChild(fields);
        form.appendChild(box);
      }
      form.appendChild(h("div", {"class": "field buttons"}, h("button", {type: "submit", text: "Apply"}),
        h("button", {type: "button", "class": "secondary", text: "Reset", onclick: function () { location.hash = hashFor(state.view, new URLSearchParams(state.view === "breakdowns" && p.get("by") ? "by=" + p.get("by") : "")); }}),
        h("label", {"class": "live"}, h("input", {type: "checkbox", id: "f-live", checked: live ? true : null, onchange: function (e) { live = e.target.checked; schedule(); }}), " live")));
      form.onsubmit = function (e) {
        e.preventDefault();
        var next = new URLSearchParams();
        if (p.get("by")) next.set("by", p.get("by"));
        if (p.get("id")) next.set("id", p.get("id"));
        new FormData(form).forEach(function (v, k) { if (v) next.set(k, String(v).trim()); });
        var custom = keys.some(function (k) { return next.get(k); });
        if (custom && !sel.value) next.delete("days");
        location.hash = hashFor(state.view, next);
      };
    }

    function remember(report) {
      var b = report.breakdowns || {};
      Object.keys(b).forEach(function (dim) {
        var vals = b[dim].map(function (r) { return r[dim]; }).filter(function (v) { return v !== null && v !== undefined; });
        knownValues[dim] = vals;
      });
      (report.tools || []).forEach(function (t) {
        knownValues.tool = knownValues.tool || [];
        if (t.tool_name && knownValues.tool.indexOf(t.tool_name) < 0) knownValues.tool.push(t.tool_name);
      });
    }

    function load(state) {
      var p = state.params;
      var win = pick(p, WINDOW_KEYS.concat(FILTERS));
      switch (state.view) {
        case "breakdowns": {
          var dim = DIMS.indexOf(p.get("by")) >= 0 ? p.get("by") : "source";
          var q = new URLSearchParams(win); q.set("by", dim);
          return api("insights", q).then(function (r) { remember(r); return breakdowns(state, r, dim); }, function (err) {
            return breakdowns(state, {error: err.message}, dim);
          });
        }
        case "tools": {
          var q2 = new URLSearchParams(win); q2.set("by", "");
          return Promise.all([api("insights", q2), api("tool-daily", win)]).then(function (r) { remember(r[0]); return toolsView(state, r[0], r[1]); });
        }
        case "sessions": {
          var q3 = pick(p, WINDOW_KEYS.concat(["limit", "flat"]));
          return api("sessions", q3).then(function (r) { return sessionsView(state, r); });
        }
        case "session":
          return api("session", pick(p, ["id"])).then(function (r) { return sessionView(state, r); });
        case "compare": {
          var q4 = pick(p, ["days", "since", "until", "a_since", "a_until", "b_since", "b_until"].concat(FILTERS));
          return api("compare", q4).then(function (r) { return compareView(state, r); });
        }
        default: {
          var q5 = new URLSearchParams(win); q5.set("by", "day,source,model");
          return api("insights", q5).then(function (r) {
            remember(r);
            if (!(r.window.days <= 3)) return overview(state, r, null);
            return api("hourly", win).then(function (hr) { return overview(state, r, hr); });
          });
        }
      }
    }

    function render(reason) {
      var state = parseHash();
      if (!VIEWS.some(function (v) { return v[0] === state.view; }) && state.view !== "session") state = {view: "overview", params: state.params};
      var n = ++rendering;
      if (reason !== "live") { renderNav(state); renderForm(state); }
      main.setAttribute("aria-busy", "true");
      status.textContent = reason === "live" ? "updating…" : "loading…";
      var t0 = performance.now();
      return load(state).then(function (view) {
        if (n !== rendering) return;
        var scroll = window.scrollY;
        main.textContent = "";
        main.appendChild(view);
        drawPending();
        if (reason === "live") window.scrollTo(0, scroll);
        if (reason !== "live") renderForm(state);  // datalists now know this report's values
        main.setAttribute("aria-busy", "false");
        main.setAttribute("data-view", state.view);
        main.setAttribute("data-loaded", String(n));
        lastRender = new Date();
        status.textContent = "updated " + lastRender.toISOString().slice(11, 19) + " UTC (" + Math.round(performance.now() - t0) + " ms)" + (live ? " · live" : "");
      }, function (err) {
        if (n !== rendering) return;
        main.textContent = "";
        main.appendChild(h("p", {"class": "error", role: "alert", text: "Could not load this view: " + err.message}));
        main.setAttribute("aria-busy", "false");
        main.setAttribute("data-view", state.view);
        main.setAttribute("data-loaded", String(n));
        status.textContent = "error";
      });
    }

    var refreshMs = 5000;
    function poll() {
      timer = null;
      if (!live || !root.isConnected) { schedule(); return; }
      api("version", new URLSearchParams()).then(function (v) {
        if (v.refresh_s) refreshMs = v.refresh_s * 1000;
        if (v.computing && !/computing/.test(status.textContent)) status.textContent += " · newer figures are being computed…";
        if (lastVersion !== null && v.version !== lastVersion && !document.hidden) render("live");
        lastVersion = v.version;
      }, function () { /* a missed poll is retried at the next tick */ }).then(schedule);
    }
    function schedule() {
      if (timer !== null) { clearTimeout(timer); timer = null; }
      if (live && root.isConnected !== false) timer = setTimeout(poll, refreshMs);
    }
    function onHash() { render("nav").then(function () { main.focus({preventScroll: true}); }); }
    window.addEventListener("hashchange", onHash);
    var resizeTimer = null;
    function onResize() {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () { if (root.querySelector(".chart")) render("live"); }, 300);
    }
    window.addEventListener("resize", onResize);
    render("first");
    poll();
    return {
      refresh: function () { return render("live"); },
      destroy: function () {
        window.removeEventListener("hashchange", onHash);
        window.removeEventListener("resize", onResize);
        live = false;
        if (timer) clearTimeout(timer);
      },
    };
  }

  window.HermetryDashboard = {mount: mount};
})();
