"""A real gRPC service and client for the pass-through tests (grpcio, no generated code:
messages are raw bytes).

    echo.py serve            listen on 127.0.0.1 (h2c), print the port, serve until killed
    echo.py call ADDR JSON   run the calls in JSON against ADDR, print one JSON result per call
                             (over TLS when GRPC_CA names the CA file, GRPC_NAME the server name)

Methods of /test.Echo:
    Unary         echoes the request; b"fail" aborts with NOT_FOUND
    ServerStream  sends the request three times, then ends with ABORTED in the trailers
    Bidi          echoes every message of the stream
"""

import json
import os
import sys
from concurrent import futures

import grpc


def unary(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    context.set_trailing_metadata((("x-trailer", "kept"),))
    return request


def server_stream(request, context):
    for i in range(3):
        yield request + str(i).encode()
    context.set_code(grpc.StatusCode.ABORTED)
    context.set_details("stopped after three")


def bidi(requests, context):
    for r in requests:
        yield b"echo:" + r


def serve():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("test.Echo", handlers),
            grpc.method_handlers_generic_handler("private.Echo", handlers),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def call(addr, calls):
    ca = os.environ.get("GRPC_CA")
    if ca:
        with open(ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        name = os.environ["GRPC_NAME"]
        channel = grpc.secure_channel(addr, credentials, options=(("grpc.ssl_target_name_override", name),))
    else:
        channel = grpc.insecure_channel(addr)
    for c in calls:
        metadata = tuple((k, v) for k, v in c.get("metadata", {}).items())
        kind = c["kind"]
        method = c.get("method", {"unary": "Unary", "stream": "ServerStream", "bidi": "Bidi"}[kind])
        if not method.startswith("/"):
            method = "/test.Echo/" + method
        out = {"kind": kind}
        try:
            if kind == "unary":
                f = channel.unary_unary(method)
                reply, info = f.with_call(c["body"].encode(), metadata=metadata, timeout=10)
                out["replies"] = [reply.decode()]
                out["trailers"] = dict(info.trailing_metadata() or ())
                out["code"] = 0
            elif kind == "stream":
                f = channel.unary_stream(method)
                it = f(c["body"].encode(), metadata=metadata, timeout=10)
                out["replies"] = []
                try:
                    for r in it:
                        out["replies"].append(r.decode())
                    out["code"] = 0
                except grpc.RpcError as e:
                    out["code"] = e.code().value[0]
                    out["message"] = e.details()
            else:
                f = channel.stream_stream(method)
                it = f(iter([b.encode() for b in c["bodies"]]), metadata=metadata, timeout=10)
                out["replies"] = [r.decode() for r in it]
                out["code"] = 0
        except grpc.RpcError as e:
            out["code"] = e.code().value[0]
            out["message"] = e.details()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        call(sys.argv[2], json.loads(sys.argv[3]))
