"""A real Windows-authentication acceptor in front of the simulator's on-premises site.

It stands in for a Delivery Controller's HTTP.sys listener: HTTP/1.1 with keep-alive, a 401
offering `Negotiate` and `NTLM`, one pyspnego acceptor context per TCP connection (NTLM's legs
are bound to one connection), and a full handshake for every request (Microsoft's default,
`UnsafeConnectionNtlmAuthentication = false`). An authenticated request is forwarded to the
upstream simulator with its Host header kept (and, over TLS, `X-Forwarded-Proto: https`), so
the simulator's nextLinks lead back here.

NTLM users come from the file named by NTLM_USER_FILE (`DOMAIN:USER:PASSWORD` lines); Kerberos
needs KRB5_CONFIG and KRB5_KTNAME (a keytab with HTTP/<hostname>).

With --tls-cert/--tls-key it serves HTTPS instead (the TLS handshake runs in the
connection's own thread; one that fails, e.g. because the client does not trust the
certificate, is counted as `tls_failures`).

Not authenticated: GET /_stats (JSON counters: TCP connections accepted, TLS handshakes
failed, handshakes started, completed, rejected, by protocol, the principals seen) and POST
/_stats/reset. Usage:

    acceptor.py --upstream http://127.0.0.1:PORT [--hostname localhost]
                [--tls-cert server.pem --tls-key server.key]

It listens on 127.0.0.1 (an ephemeral port) and prints `PORT <n>` on stdout when ready.
"""

import argparse
import base64
import http.client
import http.server
import json
import socketserver
import ssl
import sys
import threading

import spnego
import spnego.exceptions

STATS_LOCK = threading.Lock()


def fresh_stats():
    return {
        "connections": 0,  # TCP connections accepted
        "tls_failures": 0,  # TLS handshakes that failed
        "requests": 0,
        "handshakes": 0,  # first tokens seen: one per authentication attempt
        "completed": 0,
        "rejected": 0,
        "unauthenticated": 0,  # requests without Authorization
        "by_protocol": {},
        "principals": [],
        "errors": [],
    }


STATS = fresh_stats()


def bump(key, n=1):
    with STATS_LOCK:
        STATS[key] += n


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None
    hostname = "localhost"
    tls = None  # an ssl.SSLContext when serving HTTPS

    def log_message(self, fmt, *args):  # quiet; counters tell the story
        pass

    def setup(self):
        bump("connections")
        if self.tls is not None:
            self.request.settimeout(30)
            try:
                self.request = self.tls.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                bump("tls_failures")
                raise
        super().setup()
        self.ctx = None

    def send_body(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def challenge(self, token_header=None):
        body = b'{"Message":"Authorization has been denied for this request."}'
        headers = [("Content-Type", "application/json")]
        if token_header:
            headers.append(("WWW-Authenticate", token_header))
        else:
            headers.append(("WWW-Authenticate", "Negotiate"))
            headers.append(("WWW-Authenticate", "NTLM"))
        self.send_body(401, body, headers)

    def do_POST(self):
        if self.path == "/_stats/reset":
            global STATS
            with STATS_LOCK:
                STATS = fresh_stats()
            self.send_body(204, b"")
            return
        self.send_body(404, b"")

    def do_GET(self):
        if self.path == "/_stats":
            with STATS_LOCK:
                body = json.dumps(STATS).encode()
            self.send_body(200, body, [("Content-Type", "application/json")])
            return
        bump("requests")
        auth = self.headers.get("Authorization", "")
        scheme, _, b64 = auth.partition(" ")
        scheme = scheme.strip()
        if scheme.lower() not in ("ntlm", "negotiate") or not b64.strip():
            bump("unauthenticated")
            self.ctx = None
            self.challenge()
            return
        try:
            token = base64.b64decode(b64.strip())
        except ValueError:
            self.ctx = None
            self.challenge()
            return
        if self.ctx is None:
            bump("handshakes")
            protocol = "ntlm" if scheme.lower() == "ntlm" else "negotiate"
            self.ctx = spnego.server(hostname=self.hostname, service="HTTP", protocol=protocol)
            self.scheme = "NTLM" if protocol == "ntlm" else "Negotiate"
        try:
            out = self.ctx.step(token)
        except (spnego.exceptions.SpnegoError, ValueError, OSError) as e:
            with STATS_LOCK:
                STATS["rejected"] += 1
                STATS["errors"].append(str(e)[:200])
            self.ctx = None
            self.challenge()
            return
        if not self.ctx.complete:
            self.challenge(f"{self.scheme} {base64.b64encode(out or b'').decode()}")
            return
        principal = str(self.ctx.client_principal or "")
        protocol = str(self.ctx.negotiated_protocol or "")
        self.ctx = None  # the next request on this connection authenticates again
        with STATS_LOCK:
            STATS["completed"] += 1
            STATS["by_protocol"][protocol] = STATS["by_protocol"].get(protocol, 0) + 1
            if principal not in STATS["principals"]:
                STATS["principals"].append(principal)
        extra = [("X-Auth-Principal", principal), ("X-Auth-Protocol", protocol)]
        if out:
            extra.append(("WWW-Authenticate", f"{self.scheme} {base64.b64encode(out).decode()}"))
        self.forward(extra)

    def forward(self, extra):
        conn = http.client.HTTPConnection(self.upstream[0], self.upstream[1], timeout=60)
        try:
            headers = {"Host": self.headers.get("Host", ""), "Accept": "application/json"}
            if self.tls is not None:  # the simulator's nextLinks then say https
                headers["X-Forwarded-Proto"] = "https"
            conn.request("GET", self.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() in ("content-type", "odata-version", "retry-after")]
            self.send_body(resp.status, body, headers + extra)
        finally:
            conn.close()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # counted, not printed
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the simulator")
    p.add_argument("--hostname", default="localhost", help="host part of the HTTP/ SPN")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    a = p.parse_args()
    up = a.upstream.removeprefix("http://").rstrip("/")
    host, _, port = up.partition(":")
    if host != "127.0.0.1":
        sys.exit("loopback upstreams only")
    Handler.upstream = (host, int(port))
    Handler.hostname = a.hostname
    if a.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(a.tls_cert, a.tls_key)
        Handler.tls = tls
    srv = Server(("127.0.0.1", 0), Handler)
    print(f"PORT {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
