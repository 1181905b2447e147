"""Serve the example SPA from its own origin (standard library only).

    python examples/spa/serve.py --port 4200 \
        --hecate http://localhost:8080 --downstream http://localhost:8000

Any path that is not one of the SPA's files answers index.html, so the verification mail's link
(APP_URL + /verify?token=...) opens the SPA, as a production static host's "SPA fallback" does.
With --hecate/--downstream it answers /config.js itself (else config.js is served as it is);
--certfile/--keyfile serve HTTPS. tests/test_browser.py runs exactly this server.
"""

from __future__ import annotations

import argparse
import http.server
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
FILES = {
    "/index.html": "text/html; charset=utf-8",
    "/app.js": "text/javascript; charset=utf-8",
    "/config.js": "text/javascript; charset=utf-8",
    "/style.css": "text/css; charset=utf-8",
}


def config_js(hecate_url: str, downstream_url: str) -> bytes:
    config = {"hecateUrl": hecate_url, "downstreamUrl": downstream_url}
    return f"window.HECATE_CONFIG = {json.dumps(config)};\n".encode()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def make_server(host: str = "127.0.0.1", port: int = 4200, *, hecate_url: str | None = None,
                downstream_url: str | None = None, certfile: str | None = None,
                keyfile: str | None = None) -> http.server.ThreadingHTTPServer:
    """The server, bound but not yet serving (call serve_forever)."""
    generated = (config_js(hecate_url or "http://localhost:8080",
                           downstream_url or "http://localhost:8000")
                 if hecate_url or downstream_url else None)
    # The page may load its own files and talk to Hecate and the downstream service only.
    connect = " ".join(_origin(u) for u in (hecate_url, downstream_url) if u) or "*"
    policy = (f"default-src 'self'; connect-src 'self' {connect}; object-src 'none'; "
              "base-uri 'none'; frame-ancestors 'none'")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path not in FILES:
                path = "/index.html"  # the SPA's own routes: /, /verify, ...
            body = (generated if path == "/config.js" and generated is not None
                    else (HERE / path.lstrip("/")).read_bytes())
            self.send_response(200)
            self.send_header("Content-Type", FILES[path])
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Security-Policy", policy)
            # /verify?token=... holds a credential in its URL: never send it onwards.
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # The default log prints request lines, and /verify's carries a token.
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--hecate", help="Hecate's base URL (default: config.js)")
    parser.add_argument("--downstream", help="the downstream service's base URL")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--keyfile", help="its private key (PEM)")
    args = parser.parse_args()
    server = make_server(args.host, args.port, hecate_url=args.hecate,
                         downstream_url=args.downstream, certfile=args.certfile,
                         keyfile=args.keyfile)
    scheme = "https" if args.certfile else "http"
    # Open it as localhost, not 127.0.0.1: they are different sites to a browser, and
    # `make run`'s Hecate allows http://localhost:4200.
    shown = "localhost" if args.host == "127.0.0.1" else args.host
    print(f"example SPA on {scheme}://{shown}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
