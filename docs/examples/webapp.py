#!/usr/bin/env python3
"""An operator's own web backend next to shardcast: the third party of three.

    browser --(pages)--> this web app --(API, admin token)--> shardcast
    browser --(playlists and segments, signed URL)----------> shardcast's HLS port

The web app lists streams and, when a viewer picks one, asks shardcast for a signed HLS URL
(POST /api/v1/play) and hands the browser a page that plays it with hls.js. Media never
passes through here. Python 3 standard library only; copy it and put your own login and
entitlement checks where the comments say. See docs/examples/README.md.
"""

import argparse
import html
import json
import os
import secrets
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# shardcast's HTTP side serves the hls.js build it was tested with (src/http/page.rs).
HLS_JS_PATH = "/assets/hls-1.7.4.min.js"


class ApiError(Exception):
    """shardcast said no (status from its API) or could not be reached (status 502)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def call_api(args, method, path, body=None):
    """One JSON request to shardcast's API; the decoded answer, or ApiError."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(args.shardcast + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")  # shardcast answers 415 otherwise
    if args.admin_token:
        req.add_header("Authorization", "Bearer " + args.admin_token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        try:  # shardcast's errors are {"error": "..."}
            why = json.load(e).get("error", "")
        except (ValueError, AttributeError):
            why = e.reason
        raise ApiError(e.code, f"shardcast answered {e.code}: {why}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ApiError(502, f"shardcast is not reachable at {args.shardcast}: {e}") from None


def origin(url):
    """scheme://host:port of a URL, for the Content-Security-Policy."""
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def script_value(value):
    """A value as a JavaScript literal inside <script>: JSON, with <, > and & escaped so a
    stream name such as "</script>" cannot end the script element."""
    return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>{title}</title>
<style nonce="{nonce}">body{{font-family:sans-serif;max-width:56rem;margin:1rem auto;padding:0 1rem}}
video{{width:100%;background:#000}} li{{margin:.4rem 0}} .error{{color:#a00}}</style>
{head}</head><body>
{body}
</body></html>
"""

# The player: hls.js where Media Source Extensions work, else the browser's own HLS player
# (Safari on iOS). hls.js runs without its worker, so the policy needs no worker-src.
PLAYER = """<p><a href="/">All streams</a></p><h1>{title}</h1>
<video id="video" controls playsinline></video><p id="status"></p>
<script nonce="{nonce}">
const source = {source}, live = {live};
const video = document.getElementById("video"), note = document.getElementById("status");
window.playerErrors = [];  // every hls.js error, for whoever debugs (or tests) the page
if (window.Hls && Hls.isSupported()) {{
  const hls = new Hls({{ lowLatencyMode: live, enableWorker: false }});
  hls.on(Hls.Events.ERROR, (_, d) => {{
    window.playerErrors.push({{ type: d.type, details: d.details, fatal: d.fatal }});
    if (d.fatal) note.textContent = "Playback failed: " + d.details;
  }});
  hls.loadSource(source);
  hls.attachMedia(video);
}} else if (video.canPlayType("application/vnd.apple.mpegurl")) {{
  video.src = source;
}} else {{
  note.textContent = "This browser cannot play HLS.";
}}
video.play().catch(() => {{ note.textContent = "Press play to start."; }});
</script>"""


def error_page(status, title, message):
    body = (f'<h1>{html.escape(title)}</h1><p class="error">{status}: {html.escape(message)}</p>'
            '<p><a href="/">All streams</a></p>')
    return {"status": status, "title": title, "body": body}


class Handler(BaseHTTPRequestHandler):
    args = None  # set in main()

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/":
                page = self.index()
            elif path.startswith("/watch/"):
                page = self.watch(urllib.parse.unquote(path[len("/watch/"):]))
            else:
                page = error_page(404, "Not found", f"Nothing at {path}.")
        except ApiError as e:
            # A stream shardcast does not have is the viewer's 404; anything else is a
            # gateway error (shardcast down, or refusing our admin token).
            page = error_page(404 if e.status == 404 else 502, "Cannot play that", e.message)
        except (KeyError, TypeError, ValueError) as e:  # an odd answer: a page, no traceback
            page = error_page(500, "Something went wrong", f"{type(e).__name__}: {e}")
        self.send_page(**page)

    def index(self):
        # Your site would show only what this user may watch.
        items = []
        for s in call_api(self.args, "GET", "/api/v1/streams")["streams"]:
            what = "LIVE" if s.get("live") else f"{s.get('duration_secs') or 0:.1f} s"
            if s.get("width"):
                what += f", {s['width']}×{s['height']}"
            link = "/watch/" + urllib.parse.quote(s["name"], safe="/")
            items.append(f'<li><a class="play" href="{html.escape(link)}" '
                         f'data-stream="{html.escape(s["name"])}">{html.escape(s["name"])}'
                         f"</a> — {html.escape(what)}</li>")
        return {"status": 200, "title": "Streams",
                "body": "<h1>Streams</h1><ul>" + "".join(items) + "</ul>"}

    def watch(self, name):
        # Here your site checks its own login and what this user may watch.
        #
        # viewer_ip binds the token to the address this request came from, so a leaked URL
        # plays nowhere else. That is right when browsers reach this app and shardcast's HLS
        # port from the same address (directly, or through the same NAT). Behind a reverse
        # proxy, client_address is the proxy's: take the viewer's address from the header
        # your proxy sets (X-Forwarded-For, only the entry your own proxy appended), or run
        # with --no-ip-binding. A viewer that reaches this app over IPv6 and shardcast over
        # IPv4 (or moves networks mid-play) is refused too; then bind nothing.
        live = bool(self.stream_info(name).get("live"))  # 404 here for an unknown stream
        grant = call_api(self.args, "POST", "/api/v1/play", {
            "stream": name,
            "lifetime_secs": self.args.token_lifetime,
            **({} if self.args.no_ip_binding else {"viewer_ip": self.client_address[0]}),
        })
        source = grant.get("hls_url")
        if not source:
            raise ApiError(502, "shardcast serves no HLS (started with --hls-listen off)")
        nonce = secrets.token_urlsafe(16)
        # The script comes from shardcast's HTTP side; hls.js fetches playlists and segments
        # from the HLS origin (connect-src) and feeds the <video> a blob: (MSE); a native
        # player loads the HLS URL itself (media-src).
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}' {origin(self.args.public_url)}; "
               f"connect-src {origin(source)}; media-src blob: {origin(source)}; "
               f"style-src 'nonce-{nonce}'; img-src data:; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")
        head = (f'<script src="{html.escape(self.args.public_url + HLS_JS_PATH)}" '
                f'nonce="{nonce}"></script>')
        body = PLAYER.format(title=html.escape(name), nonce=nonce,
                             source=script_value(source), live=script_value(live))
        return {"status": 200, "title": f"Watching {name}", "body": body, "head": head,
                "nonce": nonce, "csp": csp}

    def stream_info(self, name):
        """The catalog entry of one stream (live or not)."""
        quoted = urllib.parse.quote(name, safe="/")
        return call_api(self.args, "GET", "/api/v1/streams/" + quoted)

    def send_page(self, status, title, body, head="", nonce=None, csp=None):
        nonce = nonce or secrets.token_urlsafe(16)
        csp = csp or (f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; "
                      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        out = PAGE.format(title=html.escape(title), nonce=nonce, head=head, body=body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Content-Security-Policy", csp)
        self.send_header("Cache-Control", "no-store")  # the page holds a personal token
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(out)
        # One line per request on stderr: what this app served (tests count these).
        print(f"request {self.command} {self.path} {status} {len(out)}", file=sys.stderr,
              flush=True)

    def log_message(self, fmt, *args):
        pass  # the line above replaces http.server's access log


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shardcast", default=os.environ.get("SHARDCAST_URL", "http://127.0.0.1:8080"),
                   help="shardcast's HTTP side (API) as this app reaches it")
    p.add_argument("--public-url", help="shardcast's HTTP side as browsers reach it "
                   "(for hls.js); default: --shardcast")
    p.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT (port 0: any free)")
    p.add_argument("--token-lifetime", type=int, default=300,
                   help="seconds a play token lives (checked on every HLS request, so it "
                        "bounds one page view's playback)")
    p.add_argument("--no-ip-binding", action="store_true",
                   help="do not bind tokens to the viewer's address (behind a proxy)")
    args = p.parse_args()
    args.shardcast = args.shardcast.rstrip("/")
    args.public_url = (args.public_url or args.shardcast).rstrip("/")
    args.admin_token = os.environ.get("SHARDCAST_ADMIN_TOKEN", "")  # never on the command line
    if not args.admin_token:
        print("warning: SHARDCAST_ADMIN_TOKEN is not set; POST /api/v1/play will be refused",
              file=sys.stderr)
    host, _, port = args.listen.rpartition(":")
    Handler.args = args
    if ":" in host:  # an IPv6 literal, [::1]:8090
        ThreadingHTTPServer.address_family = socket.AF_INET6
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    server.daemon_threads = True
    bound_host, bound_port = server.server_address[:2]
    print(f"webapp listening on http://{bound_host}:{bound_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
