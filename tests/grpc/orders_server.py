"""The gRPC service behind the transcoding tests (tests/grpc_transcoding.rs) and the worked
example of docs/grpc.md: shop.orders.v1.OrderService from conf/protos/orders.proto (the demo's
service too), its messages generated
at start with grpcio-tools (no generated code is kept in the repository).

    orders_server.py serve    listen on 127.0.0.1 (h2c), print the port, serve until killed

How it answers (see orders.proto for the bindings):
    GetOrder     id "missing": NOT_FOUND with google.rpc.Status details (an ErrorInfo), before
                 any message (Trailers-Only); id "partial": one order, then INTERNAL in the
                 trailers; id "code-N": status N; otherwise the order (total_cents above 2^53)
    WatchOrders  `count` orders, then OK, or ABORTED when `fail`
    Inspect      sleeps `sleep_ms`, then the metadata received, the deadline left, the calls so far
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROTOS = os.path.join(ROOT, "protos")
SERVICE = os.path.join(ROOT, "conf", "protos")


def generate():
    """orders_pb2 and the googleapis messages, generated into a temporary directory."""
    import grpc_tools
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="orders-pb2-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = [
        "orders.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
    ]
    code = protoc.main(["protoc", "-I" + SERVICE, "-I" + PROTOS, "-I" + well_known, "--python_out=" + out] + files)
    if code != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, out)


generate()
import orders_pb2 as pb  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402

CALLS = 0
LOCK = threading.Lock()


def counted(f):
    def wrapper(request, context):
        global CALLS
        with LOCK:
            before = CALLS
            CALLS += 1
        return f(request, context, before)

    return wrapper


def order(id, note=""):
    return pb.Order(
        id=id,
        customer="ann",
        items=[pb.Item(sku="a-1", quantity=2)],
        total_cents=9007199254740993,
        status=pb.SHIPPED,
        note=note,
    )


@counted
def get_order(request, context, _):
    # A unary method in the descriptors, served as a stream so "partial" can send a message
    # before its error, as a broken service may.
    if request.id == "missing":
        info = error_details_pb2.ErrorInfo(reason="ORDER_NOT_FOUND", domain="shop.example", metadata={"id": request.id})
        detail = status_pb2.Status(code=5, message="no order missing: 100%")
        detail.details.add().Pack(info)
        context.set_trailing_metadata((("grpc-status-details-bin", detail.SerializeToString()),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no order missing: 100%")
    if request.id.startswith("code-"):
        code = int(request.id[5:])
        status = next(s for s in grpc.StatusCode if s.value[0] == code)
        context.abort(status, "status %d" % code)
    yield order(request.id, "verbose" if request.verbose else "")
    if request.id == "partial":
        context.set_code(grpc.StatusCode.INTERNAL)
        context.set_details("the database went away after the first row")


@counted
def list_orders(request, context, _):
    note = "min_total=%d tags=%s" % (request.filter.min_total, ",".join(request.filter.tags))
    orders = [pb.Order(id="o-%d" % i, customer=request.customer, status=request.status, note=note) for i in range(request.page_size)]
    return pb.ListOrdersResponse(orders=orders, count=len(orders))


@counted
def create_order(request, context, _):
    o = pb.Order()
    o.CopyFrom(request.order)
    o.id = "new-1"
    o.note = request.idempotency
    return o


@counted
def update_order(request, context, _):
    o = pb.Order()
    o.CopyFrom(request.order)
    o.id = request.id
    o.note = "updated"
    return o


@counted
def patch_order(request, context, _):
    o = pb.Order()
    o.CopyFrom(request.order)
    o.note = "patched"
    return o


@counted
def delete_order(request, context, _):
    return pb.Empty()


@counted
def cancel_order(request, context, _):
    return pb.Order(id=request.name, note=request.reason, status=pb.PENDING)


@counted
def search_orders(request, context, _):
    return pb.ListOrdersResponse(count=len(request.filter.tags))


@counted
def get_file(request, context, _):
    return pb.File(path=request.path, content=b"\x00\x01hi")


@counted
def inspect(request, context, calls):
    if request.sleep_ms:
        time.sleep(request.sleep_ms / 1000.0)
    metadata = {}
    for k, v in context.invocation_metadata():
        metadata[k] = v if isinstance(v, str) else v.hex()
    left = context.time_remaining()
    return pb.Inspection(metadata=metadata, deadline_left=left or 0.0, calls=calls)


@counted
def watch_orders(request, context, _):
    for i in range(request.count):
        yield pb.Order(id="w-%d" % i, customer=request.customer)
        time.sleep(0.05)
    if request.fail:
        context.set_code(grpc.StatusCode.ABORTED)
        context.set_details("stopped after %d" % request.count)


def handler(kind, f, req, resp):
    make = {
        "unary": grpc.unary_unary_rpc_method_handler,
        "stream": grpc.unary_stream_rpc_method_handler,
    }[kind]
    return make(f, request_deserializer=req.FromString, response_serializer=resp.SerializeToString)


def serve():
    handlers = {
        "GetOrder": handler("stream", get_order, pb.GetOrderRequest, pb.Order),
        "ListOrders": handler("unary", list_orders, pb.ListOrdersRequest, pb.ListOrdersResponse),
        "CreateOrder": handler("unary", create_order, pb.CreateOrderRequest, pb.Order),
        "UpdateOrder": handler("unary", update_order, pb.UpdateOrderRequest, pb.Order),
        "PatchOrder": handler("unary", patch_order, pb.PatchOrderRequest, pb.Order),
        "DeleteOrder": handler("unary", delete_order, pb.DeleteOrderRequest, pb.Empty),
        "CancelOrder": handler("unary", cancel_order, pb.CancelOrderRequest, pb.Order),
        "SearchOrders": handler("unary", search_orders, pb.ListOrdersRequest, pb.ListOrdersResponse),
        "GetFile": handler("unary", get_file, pb.GetFileRequest, pb.File),
        "Inspect": handler("unary", inspect, pb.InspectRequest, pb.Inspection),
        "WatchOrders": handler("stream", watch_orders, pb.WatchRequest, pb.Order),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shop.orders.v1.OrderService", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        raise SystemExit(__doc__)
