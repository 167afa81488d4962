// Bull Board's page asks Google for its web fonts, which an air-gapped deployment cannot reach;
// without them its CSS falls back to the system's own (system-ui, ui-monospace).
const WEB_FONTS_LINK = /<link\b[^>]*\bhref="https:\/\/fonts\.googleapis\.com\/[^"]*"[^>]*>\s*/g;

// Opened as http://user:token@host/admin/queues, the page's URL carries the credential, and
// fetch() refuses every URL resolved against it; Bull Board fetches its labels
// (static/locales/) and would show their keys (MENU.QUEUES) instead. The browser keeps the
// credential it opened the page with, so the page reopens itself at the same URL without one.
// (Chromium leaves the credential out of location.href, not out of document.URL.)
const DROP_URL_CREDENTIALS = `<script>(function () {
  var url = new URL(document.URL);
  if (url.username === "" && url.password === "") return;
  url.username = "";
  url.password = "";
  location.replace(url.href);
})();</script>`;

/** Bull Board's page as served: everything it loads comes from this service. */
export function selfContainedQueueUiPage(html: string): string {
  // Anywhere in the head runs before Bull Board's scripts, which are deferred.
  return html.replace(WEB_FONTS_LINK, "").replace("</head>", `${DROP_URL_CREDENTIALS}\n</head>`);
}
