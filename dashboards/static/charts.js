// The instance page: draw the figures embedded in the page, then refresh them in place.
(function () {
  "use strict";
  var config = {displaylogo: false, responsive: true,
                modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"]};
  var root = document.getElementById("charts");
  var drawn = {};

  // Plotly has no time zones: its date axis shows UTC. To show the zone chosen in the
  // header, every time on the axis is moved by that zone's offset at that time.
  function inZone(f) {
    var z = window.diagZone;
    var shift = function (t) { return typeof t === "number" ? t + z.offset(t) : t; };
    if (f.layout.xaxis) f.layout.xaxis.hoverformat = "%Y-%m-%d %H:%M:%S";
    if (!z || z.name === "UTC") return f;
    f.data.forEach(function (tr) { if (tr.x) tr.x = tr.x.map(shift); });
    if (f.layout.xaxis && f.layout.xaxis.range) f.layout.xaxis.range = f.layout.xaxis.range.map(shift);
    (f.layout.shapes || []).forEach(function (s) {
      if (s.xref === "x") { s.x0 = shift(s.x0); s.x1 = shift(s.x1); }
    });
    return f;
  }

  function draw(figs) {
    Object.keys(figs).forEach(function (key) {
      var el = document.getElementById("chart-" + key);
      if (!el) return;
      var f = inZone(figs[key]);
      if (drawn[key]) Plotly.react(el, f.data, f.layout, config);
      else { Plotly.newPlot(el, f.data, f.layout, config); drawn[key] = true; }
    });
    root.dataset.drawn = String(Date.now());
  }

  function refresh() {
    var box = document.getElementById("autorefresh");
    if (!box || !box.checked || document.hidden) return;
    fetch(root.dataset.src, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) {
        draw(body.figures);
        document.getElementById("health").innerHTML = body.health_html;  // rendered (escaped) by the server
        var stamp = document.getElementById("refreshed");
        if (stamp) {  // says the data is fresh, so a stalled refresh is visible
          stamp.dataset.at = String(body.generated_at);
          stamp.textContent = "updated " + body.generated_text;  // in the header's zone, written by the server
        }
        var stale = document.getElementById("stale");
        if (stale) stale.remove();
      })
      .catch(function (err) {
        if (document.getElementById("stale")) return;
        var p = document.createElement("p");
        p.id = "stale"; p.className = "notice bad";
        p.textContent = "Could not refresh the charts (" + err.message + "); showing the last data received.";
        root.parentNode.insertBefore(p, root);
      });
  }

  draw(JSON.parse(document.getElementById("figures").textContent));
  setInterval(refresh, 1000 * Number(root.dataset.every || 10));
})();
