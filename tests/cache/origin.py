"""An origin for the cache tests: counts what it serves and answers as each path's spec says.

`python3 origin.py serve` prints its port. Control endpoints (not counted):
  POST /__spec?path=/x   body: JSON spec for /x (replaces the previous one)
  GET  /__hits?path=/x   JSON {"200": n, "304": n, "all": n} for /x (any query)
A spec: status, headers {name: value}, body (text; "{n}" is the request number for the path,
"{lang}" the Accept-Language), delay (seconds), etag (answers If-None-Match with 304),
gzip (gzip the body when the client accepts it), size (a body of that many bytes), chunked,
unsafe_status (how POST, PUT, PATCH and DELETE end), unsafe_pause (seconds their body stops
halfway).
"""
import gzip
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SPECS = {}
HITS = {}


def count(path, status):
    with LOCK:
        h = HITS.setdefault(path, {"all": 0})
        h["all"] += 1
        h[str(status)] = h.get(str(status), 0) + 1
        return h["all"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go in separate writes: without this, Nagle and the peer's delayed ACK
    # add 40 ms to every answer.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if url.path == "/__spec":
            path = urllib.parse.parse_qs(url.query)["path"][0]
            with LOCK:
                SPECS[path] = json.loads(data or b"{}")
            return self.send(200, [], b"ok")
        # An unsafe method: "unsafe_status" in the path's spec says how it ends (200 by
        # default); with "unsafe_pause" the body stops halfway for that many seconds.
        with LOCK:
            spec = dict(SPECS.get(url.path, {}))
        status = spec.get("unsafe_status", 200)
        n = count(url.path, status)
        body = b"posted n=%d" % n
        if not spec.get("unsafe_pause"):
            return self.send(status, [("Cache-Control", "max-age=60")], body)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:3])
        self.wfile.flush()
        time.sleep(spec["unsafe_pause"])
        self.wfile.write(body[3:])

    do_PUT = do_POST
    do_PATCH = do_POST
    do_DELETE = do_POST

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/__hits":
            path = urllib.parse.parse_qs(url.query)["path"][0]
            with LOCK:
                h = dict(HITS.get(path, {"all": 0}))
            return self.send(200, [("Content-Type", "application/json")], json.dumps(h).encode())
        with LOCK:
            spec = dict(SPECS.get(url.path, {}))
        if spec.get("delay"):
            time.sleep(spec["delay"])
        etag = spec.get("etag")
        if etag and self.headers.get("If-None-Match") == etag:
            count(url.path, 304)
            headers = [("ETag", etag)] + list(spec.get("headers", {}).items())
            return self.send(304, headers, None)
        status = spec.get("status", 200)
        n = count(url.path, status)
        headers = list(spec.get("headers", {"Cache-Control": "max-age=60"}).items())
        if etag:
            headers.append(("ETag", etag))
        if "size" in spec:
            body = b"x" * spec["size"]
        else:
            text = spec.get("body", "path={path} n={n}")
            body = text.format(n=n, path=url.path, query=url.query,
                               lang=self.headers.get("Accept-Language", ""),
                               xfh=self.headers.get("X-Forwarded-Host", ""),
                               xfp=self.headers.get("X-Forwarded-Proto", ""),
                               fwd=self.headers.get("Forwarded", ""),
                               pfx=self.headers.get("X-Forwarded-Prefix", "")).encode()
        if spec.get("gzip") and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        if spec.get("chunked"):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 1000):
                piece = body[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send(status, headers, body)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    main()
