//! Proxy variables are ignored: with HTTP_PROXY, HTTPS_PROXY, ALL_PROXY pointing at a local
//! "proxy", requests still go straight to the vetted address of the granted origin.
//! (Its own test binary: it changes the process environment.)

#[path = "it/support/mod.rs"]
mod support;

use std::sync::Arc;
use support::{outbound, read_body, Reply, Server};
use urlcap::egress::{empty_body, EgressConfig, StaticResolver};
use urlcap::outbound::GuestRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_are_ignored() {
    let proxy = Server::http(|_| Reply::Text("from the proxy")).await;
    let origin = Server::http(|_| Reply::Text("from the origin")).await;
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port());
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        // This binary holds only this test, so nothing else reads the environment meanwhile.
        std::env::set_var(var, &proxy_url);
    }
    std::env::set_var("NO_PROXY", "");
    let resolver = Arc::new(StaticResolver::new());
    resolver.set("api.test", &["127.0.0.1".parse().unwrap()]);
    let port = origin.port();
    let manifest = format!("version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://api.test:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\n");
    let (out, _) = outbound(&manifest, resolver, EgressConfig::default());
    let response = out
        .send(
            &GuestRequest::new("GET", &format!("http://api.test:{port}/")),
            empty_body(),
        )
        .await
        .unwrap();
    assert_eq!(read_body(response).await.unwrap(), b"from the origin");
    assert_eq!(proxy.connections(), 0, "the proxy saw nothing");
    assert_eq!(
        origin.requests()[0].target,
        "/",
        "origin-form target, not a proxy's absolute-form"
    );
}
