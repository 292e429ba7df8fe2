// Shared page behaviour: confirmations, busy buttons, the overview's auto-reload.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  });
  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var b = form.querySelector("button[type=submit], button:not([type])");
      if (b) { b.disabled = true; b.textContent = form.dataset.busy; }
    });
  });
  var auto = document.querySelector("input[data-autoreload]");
  if (auto) {
    var key = "diag-autoreload:" + location.pathname;
    if (localStorage.getItem(key) === "off") auto.checked = false;
    auto.addEventListener("change", function () { localStorage.setItem(key, auto.checked ? "on" : "off"); });
    setInterval(function () {
      if (auto.checked && !document.hidden && !document.activeElement.closest("form:not(.refresh)")) location.reload();
    }, 1000 * Number(auto.dataset.autoreload));
  }
})();
document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
  s.addEventListener("change", function () { s.form.submit(); });
});

// The header: on a narrow screen its links fold behind the Menu button (CSS decides when;
// without this script they stay open and wrap inside the header).
(function () {
  "use strict";
  var header = document.querySelector("header.top");
  var menu = header && header.querySelector("button.menu");
  if (!menu) return;
  menu.hidden = false;
  header.classList.add("foldable");
  menu.addEventListener("click", function () {
    var open = header.classList.toggle("open");
    menu.setAttribute("aria-expanded", String(open));
    menu.textContent = open ? "✕ Close" : "☰ Menu";
  });
})();

// Times: UTC or this browser's zone, chosen once in the header and kept in a cookie, since
// the server writes the pages' times. `diagZone` gives the charts the same zone's offset.
(function () {
  "use strict";
  var name = document.documentElement.dataset.tz || "UTC";
  var fmt = null;
  try {
    fmt = new Intl.DateTimeFormat("en-US", {timeZone: name, hourCycle: "h23", year: "numeric", month: "numeric",
                                            day: "numeric", hour: "numeric", minute: "numeric", second: "numeric"});
  } catch (e) { name = "UTC"; }
  var cache = {};
  window.diagZone = {
    name: name,
    // milliseconds to add to a UTC time to read it on a UTC axis as the zone's wall time
    offset: function (t) {
      if (name === "UTC" || !fmt) return 0;
      var key = Math.floor(t / 900000);  // offsets change on quarter hours at the finest
      if (!(key in cache)) {
        var p = {};
        fmt.formatToParts(new Date(key * 900000)).forEach(function (x) { p[x.type] = x.value; });
        cache[key] = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second) - key * 900000;
      }
      return cache[key];
    }
  };
  var select = document.getElementById("tz");
  if (!select) return;
  var mine = null;
  try { mine = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* an old browser: UTC only */ }
  if (mine && /^[A-Za-z0-9_+\-\/]+$/.test(mine) && mine !== "UTC" && mine !== "Etc/UTC") {
    var option = Array.prototype.filter.call(select.options, function (o) { return o.value === mine; })[0];
    if (!option) {
      option = document.createElement("option");
      option.value = mine;
      select.appendChild(option);
    }
    option.textContent = mine + " (this browser)";
  }
  select.addEventListener("change", function () {
    document.cookie = "diag_tz=" + select.value + "; path=/; max-age=" + 400 * 86400 + "; samesite=strict";
    location.replace(location.href);  // a GET again: never a form resubmitted
  });
})();
