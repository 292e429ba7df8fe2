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
