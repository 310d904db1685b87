"""The status page's routes: `/` (the page), `/ui/status` (its live HTML), `/ui/data` (the same as JSON),
`/ui/page.js` (the dozen lines that refresh it).

Authentication follows `/status`: when `EMPIRE_HTTP__PROTECT_STATUS` is on, `/ui/status` and
`/ui/data` need a `read` token (the daemon adds them to the gate's protected paths). `/` itself
carries no data, so it stays open: it asks for a token (typed in, or `/#token=...`), keeps it in
the tab's sessionStorage and sends it as `Authorization: Bearer` with every refresh. The page loads
nothing from elsewhere: its Content-Security-Policy allows only this origin.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from empire.agent.statuspage.data import PageSources, gather
from empire.agent.statuspage.render import fragment

__all__ = ["DATA_PATHS", "page_routes"]

DATA_PATHS = ("/ui/status", "/ui/data")
"""What holds data: protected like `/status`."""

REFRESH_MS = 3000
CSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src data:"
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline}
header h1{font-size:18px;margin:0} #stamp{color:#aab;font-size:12px}
main{padding:10px 20px;max-width:1500px} h2{font-size:16px;margin:18px 0 8px} h3{margin:0 0 4px} h4{margin:10px 0 4px}
section{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;margin-bottom:12px}
#targets{display:grid;grid-template-columns:repeat(auto-fit,minmax(620px,1fr));gap:12px}
#targets h2{grid-column:1/-1;margin:0} .target{border-top:1px solid #eef;padding-top:8px}
.facts{display:flex;flex-wrap:wrap;gap:6px 24px;margin:0} .facts dt{font-size:11px;color:#667} .facts dd{margin:0}
table{border-collapse:collapse;margin:4px 0} td,th{padding:3px 10px 3px 0;text-align:left;border-bottom:1px solid #eef}
th{font-size:12px;color:#556} .empty{color:#778} .error{color:#b00020}
pre.decision{background:#f3f4f8;padding:6px;font-size:12px;white-space:pre-wrap;margin:4px 0}
.chart{width:100%;max-width:720px;height:auto;display:block} .chart text{font-size:11px;fill:#667}
.grid{stroke:#e4e6ee} .demand{fill:none;stroke:#2b6cb0;stroke-width:1.5} .capacity{fill:none;stroke:#2f855a;stroke-width:2}
.forecast{fill:none;stroke:#dd6b20;stroke-width:1.5;stroke-dasharray:4 3} .band{fill:#dd6b20;fill-opacity:.18;stroke:none}
.legend{font-size:12px;color:#556} .legend .k{display:inline-block;width:14px;height:3px;margin:0 4px 3px 12px}
.k.demand{background:#2b6cb0} .k.capacity{background:#2f855a} .k.forecast{background:#dd6b20} .k.band{background:#f6d5bd;height:8px}
.sev{padding:1px 6px;border-radius:3px;background:#eee} .sev.critical{background:#fed7d7} .sev.warning{background:#feebc8}
.firing{color:#b00020;font-weight:600} .resolved{color:#2f855a} .state.cooling{color:#b7791f} .state.key_rejected,.state.disabled{color:#b00020}
.bar{display:inline-block;width:120px;height:8px;background:#e4e6ee;vertical-align:middle}
.bar span{display:block;height:8px;background:#2b6cb0} #login{display:none} #login.show{display:block}
"""

SHELL = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>empire status</title><link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><header><h1>empire</h1><span id="stamp">loading&hellip;</span></header>
<main><form id="login"><p>This agent needs a <code>read</code> token for its status
(<code>empire tokens create NAME --scope read</code>).</p>
<input id="token" type="password" size="50" autocomplete="off" placeholder="token"> <button>Show</button></form>
<div id="live" data-refresh-ms="{REFRESH_MS}"></div></main>
<script src="ui/page.js"></script></body></html>
"""

SCRIPT = """(function () {
  var live = document.getElementById("live"), stamp = document.getElementById("stamp"),
      login = document.getElementById("login"), key = "empire-token",
      token = sessionStorage.getItem(key) || "", m = location.hash.match(/token=([^&]+)/);
  if (m) { token = decodeURIComponent(m[1]); sessionStorage.setItem(key, token); history.replaceState(null, "", location.pathname); }
  function refresh() {
    var headers = token ? {Authorization: "Bearer " + token} : {};
    fetch("ui/status", {headers: headers, cache: "no-store"}).then(function (r) {
      if (r.status === 401 || r.status === 403) { login.className = "show"; stamp.textContent = "token needed"; return null; }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (html) {
      if (html === null) { return; }
      login.className = ""; live.innerHTML = html; stamp.textContent = "updated " + new Date().toLocaleTimeString();
    }).catch(function (e) { stamp.textContent = "agent not reachable (" + e.message + "); retrying"; });
  }
  login.addEventListener("submit", function (ev) {
    ev.preventDefault(); token = document.getElementById("token").value.trim();
    sessionStorage.setItem(key, token); refresh();
  });
  refresh();
  setInterval(function () { if (!document.hidden) { refresh(); } }, Number(live.dataset.refreshMs) || 3000);
})();
"""


def page_routes(sources: PageSources) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        return HTMLResponse(SHELL, headers=HEADERS)

    async def script(request: Request) -> Response:
        return Response(SCRIPT, media_type="text/javascript", headers=HEADERS)

    async def live(request: Request) -> Response:
        return HTMLResponse(fragment(await gather(sources)), headers=HEADERS)

    async def data(request: Request) -> Response:
        return JSONResponse(await gather(sources), headers={"Cache-Control": "no-store"})

    return [Route("/", page), Route("/ui/page.js", script), Route("/ui/status", live), Route("/ui/data", data)]
