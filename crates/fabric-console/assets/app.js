// Fabric console: live updates. One server-sent-event stream per open page; on a change the
// page is fetched again and every element marked data-live is replaced in place (forms being
// typed into are outside those). The stream is closed while the tab is hidden and reopened,
// with a refresh, when it shows again.
(function () {
  "use strict";
  var live = document.querySelectorAll("[data-live]");
  var dot = document.getElementById("live-status");
  var source = null;
  var busy = false, again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = el.id && doc.getElementById(el.id);
          if (!fresh || fresh.innerHTML === el.innerHTML || inUse(el)) return;
          el.innerHTML = fresh.innerHTML;
        });
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  // A part holding the field being typed in, or one the user changed, is left alone until
  // they are done (the next change after that refreshes it).
  function inUse(el) {
    if (el.contains(document.activeElement) && document.activeElement !== document.body) return true;
    var fields = el.querySelectorAll("input:not([type=hidden]), select, textarea");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.tagName === "SELECT") {
        for (var j = 0; j < f.options.length; j++) {
          if (f.options[j].selected !== f.options[j].defaultSelected) return true;
        }
      } else if (f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function open() {
    if (source || live.length === 0) return;
    source = new EventSource("/ui/events");
    source.addEventListener("change", refresh);
    source.onopen = function () { if (dot) dot.classList.add("on"); };
    source.onerror = function () { if (dot) dot.classList.remove("on"); };
  }

  function close() {
    if (source) { source.close(); source = null; }
    if (dot) dot.classList.remove("on");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { close(); } else { open(); refresh(); }
  });
  if (!document.hidden) open();
})();
