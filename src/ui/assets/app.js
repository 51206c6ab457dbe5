// tollgate dashboard: the little JavaScript it has. Every page works
// without it; this only adds live progress to the audit page's
// "verify now" (the page shows the state on reload otherwise).
"use strict";

(function () {
  function verifyNow() {
    var form = document.getElementById("verify-now");
    var progress = document.getElementById("verify-progress");
    var result = document.getElementById("verify-result");
    if (!form || !progress) return;

    function show(s) {
      progress.textContent = s.checked + " / " + s.total + " entries checked";
      if (!result) return;
      if (s.state === "done") {
        if (s.ok) {
          result.textContent = "OK — verified up to seq " + s.head_seq;
        } else if (s.first_failure) {
          result.textContent = "FAILED at seq " + s.first_failure.seq + ": " + s.first_failure.kind;
        } else if (s.error) {
          result.textContent = "could not verify: " + s.error;
        }
      } else if (s.state === "running") {
        result.textContent = "running…";
      }
    }

    function poll() {
      fetch("/ui/audit/verify", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s) return;
          show(s);
          if (s.state === "running") setTimeout(poll, 500);
        })
        .catch(function () {});
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin" })
        .then(function () { poll(); })
        .catch(function () {});
    });
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    verifyNow();
  });
})();
