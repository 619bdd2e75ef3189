#!/usr/bin/env python3
"""A Git remote over HTTP(S) for tests: `git http-backend` behind HTTP basic
auth git:<token>, on 127.0.0.1.

  git_http_server.py --root DIR --token-file F [--port N] [--port-file F]
                     [--tls-cert PEM --tls-key KEY] [--request-log F]

Serves the repositories under --root. The token file is read on every request
(trailing newline stripped), so a test can rotate the token. --port 0 (the
default) picks a free port; --port-file receives the port once the socket
listens (written whole, by rename). With --tls-cert/--tls-key it speaks HTTPS.
--request-log appends "METHOD PATH STATUS" per request.
"""
import argparse, base64, os, ssl, subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--root", required=True)
parser.add_argument("--token-file", required=True)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--port-file")
parser.add_argument("--tls-cert")
parser.add_argument("--tls-key")
parser.add_argument("--request-log")
args = parser.parse_args()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *unused):
        pass

    def note(self, status):
        if args.request_log:
            with open(args.request_log, "a") as f:
                f.write("%s %s %d\n" % (self.command, self.path, status))

    def serve(self, method):
        token = open(args.token_file).read().strip()
        expected = "Basic " + base64.b64encode(("git:" + token).encode()).decode()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Authorization") != expected:
            self.note(401)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT=args.root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=method, REMOTE_USER="git", REMOTE_ADDR="127.0.0.1",
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                   GATEWAY_INTERFACE="CGI/1.1")
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, rest = out.partition(sep)
        status, headers = 200, []
        for line in head.decode().splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.note(status)
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.daemon_threads = True
if args.tls_cert:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
if args.port_file:
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
