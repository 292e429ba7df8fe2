// The instance page: draw the figures embedded in the page, refresh them in place, switch
// ranges without a reload, share one zoom across the charts and the range picker, and
// write each chart's legend as a table (last, min, max) under it.
(function () {
  "use strict";
  var config = {displaylogo: false, responsive: true,
                modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"]};
  var root = document.getElementById("charts");
  var bar = document.querySelector(".rangebar");
  var drawn = {};   // key -> the figure last drawn (its times moved into the chosen zone)
  var hidden = {};  // "key/series" -> true for a series switched off in its legend
  var zoom = null;  // [start, end] on the charts' axis (ms), or null for the whole range
  var syncing = false;
  var liveSpan = 0;   // the picked range's width on the axis (ms)
  // A zoom much narrower than the range asks for its own window's data (a finer step: a
  // 31 d range has a point every 6 h), and auto-refresh then asks for that window too.
  var detail = null;
  var asked = 0;    // the latest request: an older answer that arrives later is dropped
  // On a touch screen a drag on a chart would zoom it and the page could not be scrolled
  // past the charts: a finger scrolls there, a tap shows values, the picker sets the range.
  var touch = window.matchMedia && window.matchMedia("(pointer: coarse)").matches;

  // Plotly has no time zones: its date axis shows UTC. To show the zone chosen in the
  // header, every time on the axis is moved by that zone's offset at that time.
  function offset(t) { return window.diagZone ? window.diagZone.offset(t) : 0; }
  function inZone(f) {
    var shift = function (t) { return typeof t === "number" ? t + offset(t) : t; };
    if (f.layout.xaxis) f.layout.xaxis.hoverformat = "%Y-%m-%d %H:%M:%S";
    if (!window.diagZone || window.diagZone.name === "UTC") return f;
    f.data.forEach(function (tr) { if (tr.x) tr.x = tr.x.map(shift); });
    if (f.layout.xaxis && f.layout.xaxis.range) f.layout.xaxis.range = f.layout.xaxis.range.map(shift);
    return f;
  }

  function plotOf(key) { return document.getElementById("chart-" + key); }

  function colourOf(tr) {
    var c = (tr.line && tr.line.color) || (tr.marker && tr.marker.color);
    return Array.isArray(c) ? c[0] : c || "#616161";
  }

  function legend(key, f) {
    var table = document.getElementById("legend-" + key);
    if (!table) return;
    var body = table.tBodies[0];
    body.textContent = "";
    f.data.forEach(function (tr) {
      var row = body.insertRow();
      row.className = hidden[key + "/" + tr.name] ? "off" : "";
      row.title = "show or hide " + tr.name;
      var name = row.insertCell();
      var swatch = document.createElement("span");
      swatch.className = "swatch" + (tr.name === "events" ? " diamond" : "");
      swatch.style.background = colourOf(tr);
      name.appendChild(swatch);
      name.appendChild(document.createTextNode(tr.name));
      var m = tr.meta || {};
      if (tr.name === "events") {
        var count = row.insertCell();
        count.colSpan = 3;
        count.textContent = m.count + " in range";
      } else {
        [m.last, m.min, m.max].forEach(function (v) { row.insertCell().textContent = v || ""; });
      }
      var toggle = function () {
        hidden[key + "/" + tr.name] = !hidden[key + "/" + tr.name];
        draw(null, key);
      };
      row.tabIndex = 0;  // a keyboard reaches it too
      row.addEventListener("click", toggle);
      row.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); toggle(); }
      });
    });
    table.hidden = f.data.length === 0;
  }

  // Keeps `figs` (new data from the server) and draws them, or draws again what it keeps
  // (`only`: one chart) after a zoom or a legend click.
  function draw(figs, only) {
    if (figs) {
      Object.keys(figs).forEach(function (key) {
        var f = inZone(figs[key]);
        drawn[key] = {data: f.data, layout: f.layout, whole: f.layout.xaxis.range};
      });
    }
    syncing = true;  // what plotly reports while it draws is not the user's zoom
    try {
      Object.keys(figs || drawn).forEach(function (key) { if (!only || key === only) render(key); });
    } finally { syncing = false; }
    root.dataset.drawn = String(Date.now());
  }

  function render(key) {
    var el = plotOf(key);
    if (!el) return;
    var f = drawn[key];
    var layout = Object.assign({}, f.layout, {xaxis: Object.assign({}, f.layout.xaxis, {
      range: (zoom || f.whole).slice(), autorange: false})});
    if (touch) layout.dragmode = false;
    // A phone-wide chart fits about four time labels: more and plotly tilts them, and the
    // first one runs off the left edge.
    if (window.innerWidth < 600) layout.xaxis.nticks = 4;
    var data = f.data.map(function (tr) {
      return Object.assign({}, tr, {visible: hidden[key + "/" + tr.name] ? "legendonly" : true});
    });
    if (el.dataset.plotted) Plotly.react(el, data, layout, config);
    else {
      Plotly.newPlot(el, data, layout, config);
      el.dataset.plotted = "yes";
      el.on("plotly_relayout", function (ev) { zoomed(ev); });
    }
    legend(key, f);
  }

  // -- zoom: one for every chart, shown in the picker and kept in the URL ------------------

  function axisMs(v) { return typeof v === "number" ? v : Date.parse(String(v).slice(0, 23).replace(" ", "T") + "Z"); }
  // axis ms as the zone's wall time, as the picker's inputs take it
  function wall(ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " "); }
  function utc(ms) { return new Date(ms - offset(ms)).toISOString().slice(0, 19) + "Z"; }

  function zoomed(ev) {
    if (syncing) return;
    if (ev["xaxis.range[0]"] !== undefined) zoom = [axisMs(ev["xaxis.range[0]"]), axisMs(ev["xaxis.range[1]"])];
    else if (Array.isArray(ev["xaxis.range"])) zoom = ev["xaxis.range"].map(axisMs);
    else if (ev["xaxis.autorange"]) zoom = null;  // a double click: the whole range again
    else return;
    zoomChanged();
  }

  function zoomQuery(z) {
    return "range=custom&start=" + encodeURIComponent(utc(z[0])) + "&end=" + encodeURIComponent(utc(z[1]));
  }

  function zoomChanged() {
    draw(null);
    showZoom();
    // (not under a minute: the finest step is 10 s, and a window narrower than two steps has no point)
    var want = zoom && zoom[1] - zoom[0] < liveSpan / 4 && zoom[1] - zoom[0] >= 60000 ? zoomQuery(zoom) : null;
    if (want !== detail) {
      detail = want;
      load(detail || root.dataset.query, false);
    }
  }

  function wholeSpan() {
    var f = drawn[Object.keys(drawn)[0]];
    return f ? f.whole[1] - f.whole[0] : 0;
  }

  function showZoom() {
    var info = document.getElementById("zoominfo");
    if (info) {
      info.hidden = !zoom;
      if (zoom) info.querySelector(".zoomtext").textContent = "zoomed to " + wall(zoom[0]) + " → " + wall(zoom[1]);
    }
    if (zoom) {
      bar.elements.start.value = wall(zoom[0]);
      bar.elements.end.value = wall(zoom[1]);
    }
    // a link to this page shows what it shows: the zoomed window as a custom range
    var q = zoom ? zoomQuery(zoom) : root.dataset.query;
    history.replaceState(null, "", location.pathname + (q ? "?" + q : ""));
  }

  // -- data: auto-refresh and range switches, one JSON endpoint ------------------------------

  function load(query, switched) {
    var mine = ++asked;
    return fetch(root.dataset.src + "?" + query, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) {
        if (mine !== asked) return;
        if (switched) {
          root.dataset.query = query;
          zoom = detail = null;
          showRange(body);
        }
        draw(body.figures);
        if (query === root.dataset.query) liveSpan = wholeSpan();
        if (switched) showZoom();
        document.getElementById("health").innerHTML = body.health_html;  // rendered (escaped) by the server
        var stamp = document.getElementById("refreshed");
        if (stamp) {  // says the data is fresh, so a stalled refresh is visible
          stamp.dataset.at = String(body.generated_at);
          stamp.textContent = "updated " + body.generated_text;  // in the header's zone, written by the server
        }
        var stale = document.getElementById("stale");
        if (stale) stale.remove();
        storeError(body.store_error);
      })
      .catch(function (err) {
        if (document.getElementById("stale")) return;
        var p = document.createElement("p");
        p.id = "stale"; p.className = "notice bad";
        p.textContent = "Could not load the charts (" + err.message + "); showing the last data received.";
        root.parentNode.insertBefore(p, root);
      });
  }

  // Why the charts are empty, while the store cannot answer (an engine that is down).
  function storeError(message) {
    var p = document.getElementById("store-error");
    if (!message) { if (p) p.remove(); return; }
    if (!p) {
      p = document.createElement("p");
      p.id = "store-error"; p.className = "notice bad";
      root.parentNode.insertBefore(p, root);
    }
    p.textContent = "The charts are empty: " + message +
      ". Events and health below come from this service's own database.";
  }

  // The picker as the server would have written it for this range.
  function showRange(body) {
    var rng = body.range;
    bar.querySelectorAll(".seg").forEach(function (s) {
      s.classList.toggle("on", s.classList.contains("custom") ? rng.key === "custom" : s.dataset.range === rng.key);
    });
    bar.elements.start.value = rng.start_input;
    bar.elements.end.value = rng.end_input;
    document.getElementById("rangeinfo").innerHTML = rng.info_html;  // rendered (escaped) by the server
    document.getElementById("range-events").innerHTML = body.events_html;
    var label = bar.querySelector("label.refresh");
    if (rng.live && !document.getElementById("autorefresh")) {
      var box = document.createElement("input");
      box.type = "checkbox"; box.id = "autorefresh"; box.checked = true;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" auto-refresh every " + label.dataset.every + " s"));
    } else if (!rng.live) label.textContent = "";
    var old = bar.nextElementSibling;  // the server writes a bad range's notice there
    if (old && old.matches("p.notice.bad:not([id])")) old.remove();
    if (rng.error) {
      var p = document.createElement("p");
      p.className = "notice bad";
      p.textContent = rng.error + "; showing the last 24 h.";
      bar.parentNode.insertBefore(p, bar.nextSibling);
    }
  }

  bar.querySelectorAll("a.seg[data-range]").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;  // a new tab: the link
      ev.preventDefault();
      load("range=" + encodeURIComponent(a.dataset.range), true);
    });
  });
  bar.addEventListener("submit", function (ev) {
    ev.preventDefault();
    load(new URLSearchParams(new FormData(bar)).toString(), true);
  });
  document.getElementById("zoomreset").addEventListener("click", function () {
    zoom = null;
    zoomChanged();
  });

  draw(JSON.parse(document.getElementById("figures").textContent));
  liveSpan = wholeSpan();
  setInterval(function () {
    var box = document.getElementById("autorefresh");
    if (box && box.checked && !document.hidden) load(detail || root.dataset.query, false);
  }, 1000 * Number(root.dataset.every || 10));
})();
