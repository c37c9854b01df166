// minisv: optional extras for the status and tail pages (both work without this file).
"use strict";
(function () {
  // Status page: auto-refresh replaces the table every 5 s unless focus is inside it.
  var box = document.getElementById("autorefresh");
  if (box) {
    box.parentNode.hidden = false;
    box.checked = localStorage.getItem("minisv.autorefresh") === "1";
    box.addEventListener("change", function () { localStorage.setItem("minisv.autorefresh", box.checked ? "1" : "0"); });
    setInterval(function () {
      var table = document.getElementById("procs");
      if (!box.checked || document.hidden || (table && table.contains(document.activeElement))) return;
      fetch("/index.html", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; }).then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        ["procs", "summary"].forEach(function (id) {
          var now = document.getElementById(id), next = doc.getElementById(id);
          if (now && next) now.replaceWith(document.adoptNode(next));
        });
      }).catch(function () {});
    }, 5000);
  }
  // Tail page: Follow streams /logtail into the log view.
  var follow = document.getElementById("follow"), log = document.getElementById("log");
  if (follow && log && window.ReadableStream) {
    follow.hidden = false;
    var ctrl = null;
    follow.addEventListener("click", function () {
      if (ctrl) { ctrl.abort(); ctrl = null; follow.setAttribute("aria-pressed", "false"); follow.textContent = "Follow"; return; }
      ctrl = new AbortController();
      follow.setAttribute("aria-pressed", "true");
      follow.textContent = "Stop following";
      log.textContent = "";
      var dec = new TextDecoder();
      fetch(follow.dataset.src, { credentials: "same-origin", signal: ctrl.signal }).then(function (r) {
        var reader = r.body.getReader();
        function pump() {
          return reader.read().then(function (c) {
            if (c.done) return;
            var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
            log.textContent = (log.textContent + dec.decode(c.value, { stream: true })).slice(-262144);
            if (atEnd) log.scrollTop = log.scrollHeight;
            return pump();
          });
        }
        return pump();
      }).catch(function () {});
    });
  }
})();
