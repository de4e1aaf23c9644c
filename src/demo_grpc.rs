//! A small gRPC service over h2c, on the `h2` crate: the demo's `shop.orders.v1.OrderService`
//! (`portcullis demo-upstreams` serves it on 9005 for the example configuration's transcoded
//! route), and the answering loop scenario P's service (benches/load/grpc_bench.rs) shares.
//! Not part of the gateway's request path.

use std::sync::Arc;

use bytes::Bytes;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::json;
use tokio::net::TcpListener;

use crate::grpc::message;

/// The demo's service definition (also the worked example of docs/grpc.md).
pub const ORDERS_PROTO: &str = include_str!("../conf/protos/orders.proto");

/// [`ORDERS_PROTO`] as the descriptors compile it.
pub const DEMO_SOURCES: &[(&str, &str)] = &[("orders.proto", ORDERS_PROTO)];

/// The port the demo's gRPC service listens on (the example configuration's `orders-grpc`).
pub const DEMO_PORT: u16 = 9005;

/// How one call ends: its message (framed), then its status; no message and a failing status
/// is sent as Trailers-Only, as real services do.
pub struct Answer {
    pub message: Option<Bytes>,
    pub status: u8,
    pub text: &'static str,
}

/// What answers a call: the method's path and the request's bytes (framed).
pub type Handler = Arc<dyn Fn(&str, &[u8]) -> Answer + Send + Sync>;

/// The most request bytes one call may send.
const MAX_REQUEST: usize = 64 * 1024;

/// Serve every connection of `listener` with `handler`, until the process ends.
pub async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(socket).await else {
                return;
            };
            while let Some(Ok((request, respond))) = conn.accept().await {
                tokio::spawn(call(request, respond, Arc::clone(&handler)));
            }
        });
    }
}

async fn call(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    handler: Handler,
) {
    let path = request.uri().path().to_string();
    let mut body = request.into_body();
    let mut received = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        if received.len() + chunk.len() > MAX_REQUEST {
            return;
        }
        received.extend_from_slice(&chunk);
    }
    let answer = handler(&path, &received);
    let head = |status: Option<(u8, &str)>| {
        let mut b = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc");
        if let Some((code, text)) = status {
            b = b
                .header("grpc-status", code.to_string())
                .header("grpc-message", text);
        }
        b.body(()).unwrap_or_default()
    };
    let Some(msg) = answer.message else {
        let _ = respond.send_response(head(Some((answer.status, answer.text))), true);
        return;
    };
    let Ok(mut send) = respond.send_response(head(None), false) else {
        return;
    };
    let _ = send.send_data(msg, false);
    let mut trailers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&answer.status.to_string()) {
        trailers.insert("grpc-status", v);
    }
    let _ = send.send_trailers(trailers);
}

/// Start the demo's OrderService on `port` in its own thread; a port in use is reported, not
/// fatal (the HTTP demo services still run).
pub fn spawn_demo(port: u16) {
    let pool = match crate::grpc::descriptors::compile_sources(DEMO_SOURCES) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("demo gRPC service not started: {e}");
            return;
        }
    };
    let started = std::thread::Builder::new()
        .name("demo-grpc".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(listener) => serve(listener, demo_handler(pool)).await,
                    Err(e) => eprintln!("demo gRPC service not started on 127.0.0.1:{port}: {e}"),
                }
            });
        });
    if let Err(e) = started {
        eprintln!("demo gRPC service not started: {e}");
    }
}

/// GetOrder (id `missing`: NOT_FOUND) and ListOrders; anything else UNIMPLEMENTED.
fn demo_handler(pool: DescriptorPool) -> Handler {
    Arc::new(move |path, body| {
        let decode = |name: &str| -> Option<serde_json::Value> {
            let mut frames = message::Deframer::new(MAX_REQUEST);
            frames.push(body);
            let bytes = frames.next_message().ok()??;
            let desc = pool.get_message_by_name(name)?;
            let msg = DynamicMessage::decode(desc, bytes).ok()?;
            serde_json::to_value(&msg).ok()
        };
        let reply = |name: &str, value: serde_json::Value| -> Answer {
            let built = pool
                .get_message_by_name(name)
                .and_then(|desc| DynamicMessage::deserialize(desc, value).ok());
            match built {
                Some(m) => Answer {
                    message: Some(message::frame(&m)),
                    status: 0,
                    text: "",
                },
                None => Answer {
                    message: None,
                    status: 13,
                    text: "the demo could not build its answer",
                },
            }
        };
        let order = |id: &str| {
            json!({"id": id, "customer": "demo-customer", "items": [{"sku": "sku-1", "quantity": 2}],
                   "totalCents": "4200", "status": "SHIPPED"})
        };
        match path {
            "/shop.orders.v1.OrderService/GetOrder" => {
                let request = decode("shop.orders.v1.GetOrderRequest").unwrap_or_default();
                match request.get("id").and_then(|v| v.as_str()).unwrap_or("") {
                    "missing" => Answer {
                        message: None,
                        status: 5,
                        text: "no order missing",
                    },
                    id => reply("shop.orders.v1.Order", order(id)),
                }
            }
            "/shop.orders.v1.OrderService/ListOrders" => {
                let request = decode("shop.orders.v1.ListOrdersRequest").unwrap_or_default();
                let n = request
                    .get("pageSize")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(3)
                    .clamp(1, 10);
                let orders: Vec<_> = (0..n).map(|i| order(&format!("o-{i}"))).collect();
                reply(
                    "shop.orders.v1.ListOrdersResponse",
                    json!({"orders": orders, "count": n}),
                )
            }
            _ => Answer {
                message: None,
                status: 12,
                text: "not in the demo",
            },
        }
    })
}
