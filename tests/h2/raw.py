"""A raw HTTP/2 client (the `h2` package with its own checks off) for the HTTP/2 attack tests:
it sends exactly the header list given, pseudo-headers, upper-case names and
connection-specific headers included, and a body that may disagree with `content-length`.

    raw.py HOST:PORT JSON    JSON: a list of {"headers": [[name, value], ...], "body": "..."}

Each request goes on a fresh connection (a connection error must not hide the next case);
one JSON line per request: {"status": N or null, "reset": code or null, "goaway": code or
null, "body": "...", "headers": {...}, "never_indexed": [names]}.
"""

import json
import socket
import sys

import h2.config
import h2.connection
import h2.events


def one(addr, request):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    headers = [(k.encode(), v.encode()) for k, v in request["headers"]]
    body = request.get("body", "").encode()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers, end_stream=not body)
    if body:
        conn.send_data(stream, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    out = {"status": None, "reset": None, "goaway": None, "body": "", "headers": {}}
    data = b""
    done = False
    while not done:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            out["timeout"] = True
            break
        if not chunk:
            break
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                fields = dict(event.headers)
                out["status"] = int(fields[b":status"])
                out["headers"] = {k.decode(): v.decode() for k, v in fields.items()}
                # Fields the server sent as HPACK "never indexed" literals.
                out["never_indexed"] = sorted(
                    h[0].decode() for h in event.headers if not getattr(h, "indexable", True)
                )
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                data += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                done = True
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                out["reset"] = int(event.error_code)
                done = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                out["goaway"] = int(event.error_code)
                done = True
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    out["body"] = data.decode(errors="replace")
    sock.close()
    return out


if __name__ == "__main__":
    for r in json.loads(sys.argv[2]):
        try:
            print(json.dumps(one(sys.argv[1], r)), flush=True)
        except Exception as e:  # the connection was refused or cut: no response
            print(json.dumps({"status": None, "reset": None, "goaway": None, "error": str(e)}), flush=True)
