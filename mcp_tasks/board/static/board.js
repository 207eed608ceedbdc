// mcp-tasks board: local times, and live updates of the parts of the page marked data-live.
// The page works without this script; with it, a change anywhere in the registry refreshes those
// parts within a second, without a reload.
(function () {
  "use strict";
  var status = document.getElementById("live-status");

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.title = el.textContent;
        el.textContent = d.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric",
          hour: "2-digit", minute: "2-digit", second: "2-digit"});
      }
    });
  }

  function busy(region) {
    // Keep what the person is doing: a focused field or a ticked box in this part of the page.
    var active = document.activeElement;
    if (active && active !== document.body && region.contains(active) &&
        /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) { return true; }
    return region.querySelector("input[type=checkbox]:checked") !== null;
  }

  var fetching = false, again = false;
  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(window.location.href, {headers: {"Accept": "text/html"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (region) {
          var fresh = doc.getElementById(region.id);
          if (fresh && !busy(region) && fresh.innerHTML !== region.innerHTML) {
            region.innerHTML = fresh.innerHTML;
            localTimes(region);
            region.classList.remove("flash");
            void region.offsetWidth;
            region.classList.add("flash");
          }
        });
        var seq = doc.body.getAttribute("data-last-seq");
        if (seq) { document.body.setAttribute("data-last-seq", seq); }
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () {
        fetching = false;
        if (again) { again = false; refresh(); }
      });
  }

  function follow() {
    if (!window.EventSource || !document.querySelector("[data-live]")) {
      if (status) { status.hidden = true; }
      return;
    }
    var since = document.body.getAttribute("data-last-seq") || "";
    var source = new EventSource("/live" + (since ? "?since=" + encodeURIComponent(since) : ""));
    source.addEventListener("open", function () { if (status) { status.className = "live on"; } });
    source.addEventListener("change", refresh);
    source.addEventListener("error", function () { if (status) { status.className = "live off"; } });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    follow();
  });
})();
