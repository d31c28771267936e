//! Sequential GETs over keep-alive: urlcap's whole outbound path (canonicalize, policy, pooled
//! egress, audit hook) against a bare hyper-util client, same loopback server, same run.
//! The target (issue: egress) and the results are in BENCHMARKS.md, "Egress".
//! Run with `cargo bench --bench egress`.

#[path = "../tests/it/support/mod.rs"]
mod support;

use criterion::{criterion_group, Criterion};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{outbound, Reply, Server, SharedBuf};
use urlcap::egress::{empty_body, EgressConfig, StaticResolver};
use urlcap::outbound::{GuestRequest, Outbound};

/// One loopback server, urlcap's outbound path to it, and a bare hyper-util client.
struct Setup {
    rt: tokio::runtime::Runtime,
    server: Server,
    out: Outbound,
    _audit: SharedBuf,
    bare: Client<HttpConnector, Empty<bytes::Bytes>>,
    uri: http::Uri,
    request: GuestRequest,
}

impl Setup {
    fn new() -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(Server::http(|_| Reply::Text("ok")));
        let port = server.port();
        let url = format!("http://127.0.0.1:{port}/v1/items");
        let manifest = format!(
            "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://127.0.0.1:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\n"
        );
        let (out, _audit) = outbound(
            &manifest,
            Arc::new(StaticResolver::new()),
            EgressConfig::default(),
        );
        let bare = Client::builder(TokioExecutor::new()).build_http();
        Setup {
            rt,
            server,
            out,
            _audit,
            bare,
            uri: url.parse().unwrap(),
            request: GuestRequest::new("GET", &url),
        }
    }

    async fn bare_get(&self) {
        let response = self.bare.get(self.uri.clone()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    async fn urlcap_get(&self) {
        let response = self.out.send(&self.request, empty_body()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
}

fn sequential_gets(c: &mut Criterion) {
    let s = Setup::new();
    let mut group = c.benchmark_group("sequential_get");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("bare_hyper_util", |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    s.bare_get().await;
                }
                start.elapsed()
            })
        })
    });
    let bare_connections = s.server.connections();
    group.bench_function("urlcap_outbound", |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    s.urlcap_get().await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    let ours = s.server.connections() - bare_connections;
    eprintln!("connections opened: bare hyper-util {bare_connections}, urlcap {ours}");
}

/// Both clients in alternating rounds, so machine drift hits both alike; prints the median of
/// the per-round throughput ratios (urlcap / bare).
fn paired_ratio() {
    const ROUNDS: usize = 21;
    const PER_ROUND: u32 = 400;
    let s = Setup::new();
    let mut ratios = Vec::with_capacity(ROUNDS);
    s.rt.block_on(async {
        for round in 0..=ROUNDS {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                s.bare_get().await;
            }
            let bare = start.elapsed();
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                s.urlcap_get().await;
            }
            let ours = start.elapsed();
            if round > 0 {
                ratios.push(bare.as_secs_f64() / ours.as_secs_f64());
            }
        }
    });
    ratios.sort_by(|a, b| a.total_cmp(b));
    println!(
        "paired: urlcap/bare throughput ratio median {:.3} (min {:.3}, max {:.3}) over {ROUNDS} rounds of {PER_ROUND}; target >= 0.95",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

criterion_group!(benches, sequential_gets);

fn main() {
    benches();
    paired_ratio();
    Criterion::default().configure_from_args().final_summary();
}
