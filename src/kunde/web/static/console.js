// Progressive enhancement: pages work without this file.
// Elements with data-live="<url>" refresh their [data-field] children from a JSON endpoint.
(function () {
  "use strict";
  function refresh(box) {
    fetch(box.dataset.live, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        box.querySelectorAll("[data-field]").forEach(function (el) {
          var value = data[el.dataset.field];
          if (el.dataset.format === "health") { value = value ? "ready" : "not ready"; }
          if (el.dataset.format === "src") {  // e.g. a server-rendered SVG chart
            if (value !== undefined) { el.setAttribute("src", value); }
            return;
          }
          if (value !== undefined) { el.textContent = value; }
        });
      })
      .catch(function () { /* keep the last figures on a network error */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (box) {
      setInterval(function () { refresh(box); }, 5000);
    });
  });
})();
