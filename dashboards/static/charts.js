// The instance page: draw the figures embedded in the page, then refresh them in place.
(function () {
  "use strict";
  var config = {displaylogo: false, responsive: true,
                modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"]};
  var root = document.getElementById("charts");
  var drawn = {};

  function draw(figs) {
    Object.keys(figs).forEach(function (key) {
      var el = document.getElementById("chart-" + key);
      if (!el) return;
      var f = figs[key];
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
          stamp.textContent = "updated " + new Date(body.generated_at * 1000).toISOString().slice(11, 19) + " UTC";
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
