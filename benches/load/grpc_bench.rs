//! Scenario P's two ends (benches/load/run.sh): a minimal gRPC service (the demo's h2c
//! server, `portcullis::demo_grpc`, answering from one pre-encoded message) and a gRPC load
//! generator on the `h2` crate, each on one thread, so neither is the bottleneck a Python
//! service would be.
//!
//! `grpc_bench serve ADDR`: h2c; every call to `/shop.orders.v1.OrderService/GetOrder`
//! (conf/protos/orders.proto) is answered with the same `Order`, then `grpc-status: 0` in the
//! trailers, as a real service does.
//!
//! `grpc_bench load ADDR SECONDS CONNECTIONS STREAMS`: closed loop, `STREAMS` calls in flight
//! on each of `CONNECTIONS` h2c connections, each the unary call the transcoded scenario makes
//! (`GetOrder { id: "42" }`); prints the `RESULT` line `wrk.lua` prints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis::demo_grpc::{Answer, Handler, DEMO_SOURCES};
use prost_reflect::DynamicMessage;
use tokio::net::{TcpListener, TcpStream};

const PATH: &str = "/shop.orders.v1.OrderService/GetOrder";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => fail(&format!("runtime: {e}")),
    };
    match args.get(1).map(String::as_str) {
        Some("serve") if args.len() == 3 => runtime.block_on(serve(&args[2])),
        Some("load") if args.len() == 6 => {
            let n = |i: usize| args[i].parse::<u64>().unwrap_or_else(|_| fail("a number"));
            runtime.block_on(load(&args[2], Duration::from_secs(n(3)), n(4), n(5)));
        }
        _ => fail("usage: grpc_bench serve ADDR | grpc_bench load ADDR SECONDS CONNECTIONS STREAMS"),
    }
}

fn fail(why: &str) -> ! {
    eprintln!("grpc_bench: {why}");
    std::process::exit(2)
}

/// One framed message of `type_name` (orders.proto) from its JSON form.
fn framed(type_name: &str, json: serde_json::Value) -> Bytes {
    let pool = portcullis::grpc::descriptors::compile_sources(DEMO_SOURCES).unwrap_or_else(|e| fail(&e));
    let desc = pool
        .get_message_by_name(type_name)
        .unwrap_or_else(|| fail(type_name));
    let msg = DynamicMessage::deserialize(desc, json).unwrap_or_else(|e| fail(&e.to_string()));
    portcullis::grpc::message::frame(&msg)
}

/// Every call is answered with the same `Order` (encoded once), as fast as h2 allows.
async fn serve(addr: &str) {
    let order = framed(
        "shop.orders.v1.Order",
        serde_json::json!({"id": "42", "customer": "ann", "items": [{"sku": "a-1", "quantity": 2}], "totalCents": "12345", "status": "SHIPPED"}),
    );
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| fail(&format!("bind {addr}: {e}")));
    let handler: Handler = Arc::new(move |path, _| match path {
        PATH => Answer {
            message: Some(order.clone()),
            status: 0,
            text: "",
        },
        _ => Answer {
            message: None,
            status: 12,
            text: "only GetOrder",
        },
    });
    portcullis::demo_grpc::serve(listener, handler).await
}

async fn load(addr: &str, duration: Duration, connections: u64, streams: u64) {
    let request = framed("shop.orders.v1.GetOrderRequest", serde_json::json!({"id": "42"}));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let Ok(tcp) = TcpStream::connect(addr).await else {
            fail(&format!("connect {addr}"))
        };
        let _ = tcp.set_nodelay(true);
        let Ok((client, conn)) = h2::client::handshake(tcp).await else {
            fail("h2 handshake")
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let client = Arc::new(client);
        for _ in 0..streams {
            let (client, request) = (Arc::clone(&client), request.clone());
            tasks.push(tokio::spawn(
                async move { calls(&client, &request, deadline).await },
            ));
        }
    }
    let (mut latencies, mut errors) = (Vec::new(), 0u64);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_micros();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "RESULT requests={} duration_us={elapsed} errors={errors} non2xx=0 p50_us={} p99_us={} p999_us={}",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(0.999)
    );
}

/// Unary calls one after the other until `deadline`: their latencies (µs), and the failures.
async fn calls(
    client: &h2::client::SendRequest<Bytes>,
    request: &Bytes,
    deadline: Instant,
) -> (Vec<u64>, u64) {
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while Instant::now() < deadline {
        let began = Instant::now();
        match call(client, request).await {
            Ok(true) => latencies.push(began.elapsed().as_micros() as u64),
            _ => errors += 1,
        }
    }
    (latencies, errors)
}

/// One call: whether it ended with `grpc-status: 0`.
async fn call(client: &h2::client::SendRequest<Bytes>, request: &Bytes) -> Result<bool, h2::Error> {
    let mut client = client.clone().ready().await?;
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://bench{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap_or_default();
    let (response, mut send) = client.send_request(head, false)?;
    send.send_data(request.clone(), true)?;
    let mut body = response.await?.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?;
    Ok(trailers
        .and_then(|t| t.get("grpc-status").cloned())
        .is_some_and(|s| s == "0"))
}
