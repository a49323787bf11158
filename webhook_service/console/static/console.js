// SentinelOps console: keeps a live table current without reloading the page (a wall screen),
// pausing while the tab is hidden. Everything else works without script.
(function () {
  "use strict";
  var PERIOD_MS = Number(document.documentElement.dataset.refreshMs || 15000);
  function refresh(target) {
    if (document.hidden) return;
    fetch(target.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) return null;  // signed out: leave the page as is
        return response.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined) target.innerHTML = html;
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(function (target) {
      setInterval(function () { refresh(target); }, PERIOD_MS);
    });
  });
})();
