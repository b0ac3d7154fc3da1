// tracker.js: counts a page view on load and on single-page-app
// navigations. No cookies, no storage, no visitor id: the server derives one.
// <script defer src="https://TRACKER/tracker.js"></script>
// data-api="https://TRACKER/events" sends elsewhere.
(function () {
  var d = document, s = d.currentScript, n = navigator, l = location, last;
  var api = (s && s.getAttribute("data-api")) || new URL("/events", s ? s.src : l.href).href;
  // No fragment: no part of a page, it may hold a token or pass the URL limit.
  function here() { return l.href.split("#")[0]; }
  function send(ref) {
    var url = here();
    if (url === last) return;
    var body = JSON.stringify({ url: url, referrer: ref || null });
    last = url;
    if (!(n.sendBeacon && n.sendBeacon(api, body))) {
      fetch(api, { method: "POST", body: body, keepalive: true, headers: { "Content-Type": "text/plain" } });
    }
  }
  var push = history.pushState;
  history.pushState = function () {
    var from = here();
    push.apply(this, arguments);
    send(from);
  };
  addEventListener("popstate", function () { send(last); });
  send(d.referrer);
})();
