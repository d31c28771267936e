//! Egress against local servers on 127.0.0.1: what arrives at the server is what the policy
//! approved; DNS answers are vetted and connected to exactly; the pool, limits and timeouts
//! hold; upstream misbehaviour becomes a reason code and one audit record.

use crate::support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use support::{outbound, read_body, Pki, Reply, Server, Step};
use urlcap::egress::{empty_body, full_body, EgressConfig, RequestBody, StaticResolver};
use urlcap::outbound::GuestRequest;
use urlcap::policy::{Denial, Reason};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn resolver(names: &[(&str, &[&str])]) -> Arc<StaticResolver> {
    let r = Arc::new(StaticResolver::new());
    for (name, ips) in names {
        r.set(name, &ips.iter().map(|s| ip(s)).collect::<Vec<_>>());
    }
    r
}

/// A manifest granting `api.test` (HTTP, this port) with loopback allowed for it only.
fn api_manifest(port: u16, extra: &str) -> String {
    format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://api.test:{port}\"\npaths = [\"/v1/\"]\nallow_ips = [\"127.0.0.1/32\"]\n{extra}\n"
    )
}

fn quick() -> EgressConfig {
    EgressConfig {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_millis(300),
        between_bytes_timeout: Duration::from_millis(300),
        ..EgressConfig::default()
    }
}

fn get(port: u16, path: &str) -> GuestRequest {
    GuestRequest::new("GET", &format!("http://api.test:{port}{path}"))
}

fn reason(r: Result<impl Sized, Denial>) -> Reason {
    match r {
        Ok(_) => panic!("expected a denial"),
        Err(d) => d.reason,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_equals_wire() {
    let server = Server::http(|_| {
        Reply::With(
            200,
            vec![("set-cookie", "a=1".into()), ("set-cookie", "b=2".into())],
            b"hello".to_vec(),
        )
    })
    .await;
    let port = server.port();
    let manifest = api_manifest(
        port,
        "[authority.headers]\nauthorization = { value = \"Bearer s3cret-value\" }",
    );
    let (out, audit) = outbound(
        &manifest,
        resolver(&[("api.test", &["127.0.0.1"])]),
        quick(),
    );
    let req = GuestRequest::new("POST", &format!("http://API.test:{port}/v1/items?q=1&q=2"))
        .header("X-Tag", "one")
        .header("x-tag", "two")
        .header("Content-Length", "999");
    let response = out.send(&req, full_body("body")).await.unwrap();
    assert_eq!(response.status(), 200);
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        cookies,
        ["a=1", "b=2"],
        "repeated response headers are preserved"
    );
    assert_eq!(read_body(response).await.unwrap(), b"hello");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/v1/items?q=1&q=2");
    assert_eq!(r.header("host"), [format!("api.test:{port}").as_str()]);
    assert_eq!(
        r.header("x-tag"),
        ["one", "two"],
        "repeated request headers keep their order"
    );
    assert_eq!(r.header("authorization"), ["Bearer s3cret-value"]);
    assert_eq!(
        r.header("content-length"),
        ["4"],
        "framing comes from the body, not the guest's header"
    );
    assert_eq!(r.body_len, 4);
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names.iter().position(|n| *n == "authorization") > names.iter().position(|n| *n == "x-tag"),
        "injected headers come last: {names:?}"
    );
    assert!(!audit.text().contains("s3cret-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_verifies_the_granted_name_and_negotiates_h2() {
    let pki = Pki::new(&["api.test"]);
    let server = Server::https(&pki, |_| Reply::Text("secure")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let port = server.port();
    let manifest = format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"https://api.test:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\nca_file = {ca:?}\n\
         [[authority]]\nname = \"other\"\norigin = \"https://other.test:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\nca_file = {ca:?}\n\
         [[authority]]\nname = \"noca\"\norigin = \"https://noca.test:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\n"
    );
    let names = resolver(&[
        ("api.test", &["127.0.0.1"]),
        ("other.test", &["127.0.0.1"]),
        ("noca.test", &["127.0.0.1"]),
    ]);
    let (out, audit) = outbound(&manifest, names, quick());
    let response = out
        .send(
            &GuestRequest::new("GET", &format!("https://api.test:{port}/x")),
            empty_body(),
        )
        .await
        .unwrap();
    assert_eq!(read_body(response).await.unwrap(), b"secure");
    let seen = server.requests();
    assert_eq!(seen[0].sni.as_deref(), Some("api.test"));
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert_eq!(seen[0].target, format!("https://api.test:{port}/x"));
    // The certificate names api.test only: another granted name on the same server fails.
    let err = out
        .send(
            &GuestRequest::new("GET", &format!("https://other.test:{port}/x")),
            empty_body(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::TlsFailure, "{err}");
    // Without the grant's CA the private certificate is not trusted.
    let err = out
        .send(
            &GuestRequest::new("GET", &format!("https://noca.test:{port}/x")),
            empty_body(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::TlsFailure, "{err}");
    assert_eq!(audit.records().len(), 2);
}

/// A new connection to an origin seen before resumes its TLS session (no certificate chain
/// sent or verified again), and requests in flight at once to an HTTP/2 origin share one
/// connection: what a request costs at real round-trip times (BENCHMARKS.md, the RTT rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume_on_reconnect_and_h2_requests_share_a_connection() {
    let pki = Pki::new(&["api.test"]);
    let closing = Server::https_alpn(&pki, &["http/1.1"], |_| {
        Reply::With(200, vec![("connection", "close".into())], b"ok".to_vec())
    })
    .await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let gated = gate.clone();
    let h2 = Server::https_alpn(&pki, &["h2"], move |_| Reply::Gated(gated.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let authority = |name: &str, port: u16| {
        format!("[[authority]]\nname = \"{name}\"\norigin = \"https://api.test:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\nca_file = {ca:?}\n")
    };
    let manifest = format!(
        "version = 1\n{}{}",
        authority("closing", closing.port()),
        authority("h2", h2.port())
    );
    let (out, _audit) = outbound(
        &manifest,
        resolver(&[("api.test", &["127.0.0.1"])]),
        EgressConfig::default(),
    );
    let out = Arc::new(out);
    for _ in 0..3 {
        let url = format!("https://api.test:{}/x", closing.port());
        let response = out
            .send(&GuestRequest::new("GET", &url), empty_body())
            .await
            .unwrap();
        assert_eq!(read_body(response).await.unwrap(), b"ok");
    }
    let seen = closing.requests();
    assert_eq!(
        closing.connections(),
        3,
        "the origin closed each connection"
    );
    let resumed: Vec<bool> = seen.iter().map(|r| r.resumed).collect();
    assert_eq!(
        resumed,
        [false, true, true],
        "later handshakes resume the first session"
    );

    let url = format!("https://api.test:{}/x", h2.port());
    gate.add_permits(1);
    let first = out
        .send(&GuestRequest::new("GET", &url), empty_body())
        .await;
    assert_eq!(read_body(first.unwrap()).await.unwrap(), b"released");
    let in_flight: Vec<_> = (0..16)
        .map(|_| {
            let (out, url) = (out.clone(), url.clone());
            tokio::spawn(async move {
                let response = out
                    .send(&GuestRequest::new("GET", &url), empty_body())
                    .await;
                read_body(response.unwrap()).await.unwrap()
            })
        })
        .collect();
    while h2.requests().len() < 17 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.add_permits(16);
    for request in in_flight {
        assert_eq!(request.await.unwrap(), b"released");
    }
    assert_eq!(
        h2.connections(),
        1,
        "16 requests at once, one HTTP/2 connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_is_caught_at_each_new_connection() {
    let server =
        Server::http(|_| Reply::With(200, vec![("connection", "close".into())], b"ok".to_vec()))
            .await;
    let port = server.port();
    let names = resolver(&[("api.test", &["127.0.0.1"])]);
    let (out, audit) = outbound(&api_manifest(port, ""), names.clone(), quick());
    let response = out.send(&get(port, "/v1/a"), empty_body()).await.unwrap();
    read_body(response).await.unwrap();
    names.set("api.test", &[ip("127.0.0.2")]);
    let err = out
        .send(&get(port, "/v1/b"), empty_body())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::IpDenied, "{err}");
    assert!(err.detail.contains("127.0.0.2"));
    assert_eq!(
        server.requests().len(),
        1,
        "the rebound request never reached a server"
    );
    assert_eq!(
        names.lookups(),
        ["api.test", "api.test"],
        "resolved once per new connection, never inside the connector"
    );
    assert_eq!(audit.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_answer_set_is_denied_whole() {
    let server = Server::http(|_| Reply::Text("ok")).await;
    let port = server.port();
    let names = resolver(&[("api.test", &["127.0.0.1", "10.0.0.1"])]);
    let (out, audit) = outbound(&api_manifest(port, ""), names, quick());
    let err = out
        .send(&get(port, "/v1/a"), empty_body())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::IpDenied);
    assert!(
        err.detail.contains("10.0.0.1") && err.detail.contains("mixed answer"),
        "{}",
        err.detail
    );
    assert_eq!(
        server.connections(),
        0,
        "no address of a mixed answer is connected to"
    );
    let records = audit.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["reason"], "ip_denied");
    assert_eq!(records[0]["lineage"], "api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_mapped_answers_are_judged_as_ipv4() {
    let server = Server::http(|_| Reply::Text("mapped")).await;
    let port = server.port();
    let names = resolver(&[
        ("api.test", &["::ffff:127.0.0.1"]),
        ("meta.test", &["::ffff:169.254.169.254"]),
    ]);
    let manifest = format!(
        "{}[[authority]]\nname = \"meta\"\norigin = \"http://meta.test:{port}\"\n",
        api_manifest(port, "")
    );
    let (out, _) = outbound(&manifest, names, quick());
    let response = out.send(&get(port, "/v1/a"), empty_body()).await.unwrap();
    assert_eq!(
        read_body(response).await.unwrap(),
        b"mapped",
        "::ffff:127.0.0.1 is allowed by the 127.0.0.1/32 exception"
    );
    let err = out
        .send(
            &GuestRequest::new("GET", &format!("http://meta.test:{port}/")),
            empty_body(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::IpDenied);
    assert!(
        err.detail.contains("judged as 169.254.169.254"),
        "{}",
        err.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_reuses_one_connection_per_origin_and_never_shares_across_origins() {
    let server = Server::http(|_| Reply::Text("pooled")).await;
    let port = server.port();
    let names = resolver(&[("api.test", &["127.0.0.1"]), ("b.test", &["127.0.0.1"])]);
    let manifest = format!("{}[[authority]]\nname = \"b\"\norigin = \"http://b.test:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\n", api_manifest(port, ""));
    let (out, _) = outbound(&manifest, names.clone(), quick());
    for i in 0..20 {
        let response = out
            .send(&get(port, &format!("/v1/{i}")), empty_body())
            .await
            .unwrap();
        read_body(response).await.unwrap();
    }
    assert_eq!(
        server.connections(),
        1,
        "20 sequential requests share one keep-alive connection"
    );
    assert_eq!(names.lookups().len(), 1);
    let response = out
        .send(
            &GuestRequest::new("GET", &format!("http://b.test:{port}/")),
            empty_body(),
        )
        .await
        .unwrap();
    read_body(response).await.unwrap();
    assert_eq!(
        server.connections(),
        2,
        "another origin on the same address gets its own connection"
    );
    let by_conn: Vec<(usize, String)> = server
        .requests()
        .iter()
        .map(|r| (r.conn, r.header("host")[0].to_string()))
        .collect();
    assert!(
        by_conn
            .iter()
            .all(|(c, host)| (*c == 1) == host.starts_with("api.test")),
        "{by_conn:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_servers_time_out() {
    let server = Server::http(|r| match r.target.as_str() {
        "/v1/slow-head" => Reply::SlowHead(Duration::from_secs(3)),
        "/v1/stall" => Reply::Script(vec![], vec![Step::Data(10), Step::Hang]),
        _ => Reply::Script(
            vec![],
            (0..30)
                .flat_map(|_| [Step::Data(1), Step::Wait(Duration::from_millis(100))])
                .collect(),
        ),
    })
    .await;
    let port = server.port();
    let names = resolver(&[("api.test", &["127.0.0.1"])]);
    let (out, audit) = outbound(&api_manifest(port, "timeout = \"700ms\""), names, quick());
    let started = std::time::Instant::now();
    assert_eq!(
        reason(out.send(&get(port, "/v1/slow-head"), empty_body()).await),
        Reason::Timeout
    );
    let response = out
        .send(&get(port, "/v1/stall"), empty_body())
        .await
        .unwrap();
    let err = read_body(response).await.unwrap_err();
    assert_eq!(err.reason, Reason::Timeout);
    assert!(err.detail.contains("no response bytes"), "{}", err.detail);
    // Bytes keep trickling (never silent for the 300ms between-bytes timeout) but the grant's 700ms total expires.
    let response = out
        .send(&get(port, "/v1/trickle"), empty_body())
        .await
        .unwrap();
    let err = read_body(response).await.unwrap_err();
    assert_eq!(err.reason, Reason::Timeout);
    assert!(err.detail.contains("timeout"), "{}", err.detail);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeouts fired promptly"
    );
    let reasons: Vec<String> = audit
        .records()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["timeout", "timeout", "timeout"],
        "each timeout is audited once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_are_stopped_in_both_directions() {
    let server = Server::http(|r| match r.target.as_str() {
        "/v1/declared" => Reply::With(200, vec![], vec![b'x'; 5000]),
        _ => Reply::Script(vec![], vec![Step::Data(600), Step::Data(600)]),
    })
    .await;
    let port = server.port();
    let names = resolver(&[("api.test", &["127.0.0.1"])]);
    let (out, audit) = outbound(
        &api_manifest(
            port,
            "max_response_body = \"1KiB\"\nmax_request_body = \"1KiB\"",
        ),
        names,
        quick(),
    );
    assert_eq!(
        reason(out.send(&get(port, "/v1/declared"), empty_body()).await),
        Reason::ResponseBodyTooLarge
    );
    let response = out
        .send(&get(port, "/v1/streamed"), empty_body())
        .await
        .unwrap();
    assert_eq!(
        read_body(response).await.unwrap_err().reason,
        Reason::ResponseBodyTooLarge
    );
    let stream: RequestBody = support::chunks(4, 400);
    let err = out
        .send(
            &GuestRequest::new("POST", &format!("http://api.test:{port}/v1/upload")),
            stream,
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::RequestBodyTooLarge, "{err}");
    let declared = GuestRequest {
        body_len: Some(2048),
        ..GuestRequest::new("POST", &format!("http://api.test:{port}/v1/upload"))
    };
    assert_eq!(
        reason(out.send(&declared, full_body(vec![0u8; 2048])).await),
        Reason::RequestBodyTooLarge
    );
    assert_eq!(audit.records().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_mid_body_is_an_upstream_error() {
    let server = Server::http(|_| {
        Reply::Script(
            vec![("content-length", "1000".into())],
            vec![
                Step::Data(100),
                Step::Wait(Duration::from_millis(50)),
                Step::Fail,
            ],
        )
    })
    .await;
    let port = server.port();
    let (out, audit) = outbound(
        &api_manifest(port, ""),
        resolver(&[("api.test", &["127.0.0.1"])]),
        quick(),
    );
    let response = out.send(&get(port, "/v1/x"), empty_body()).await.unwrap();
    let err = read_body(response).await.unwrap_err();
    assert_eq!(err.reason, Reason::UpstreamError, "{err}");
    assert_eq!(audit.records().len(), 1);
    // The host is unharmed: the next request works.
    let server2 = Server::http(|_| Reply::Text("fine")).await;
    let (out2, _) = outbound(
        &api_manifest(server2.port(), ""),
        resolver(&[("api.test", &["127.0.0.1"])]),
        quick(),
    );
    assert!(out2
        .send(&get(server2.port(), "/v1/y"), empty_body())
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_go_back_to_the_caller() {
    let server = Server::http(|_| {
        Reply::With(
            302,
            vec![("location", "http://169.254.169.254/latest/".into())],
            vec![],
        )
    })
    .await;
    let port = server.port();
    let (out, _) = outbound(
        &api_manifest(port, ""),
        resolver(&[("api.test", &["127.0.0.1"])]),
        quick(),
    );
    let response = out.send(&get(port, "/v1/r"), empty_body()).await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "http://169.254.169.254/latest/"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limits_hold_for_the_authority_and_the_sandbox() {
    let server = Server::http(|_| Reply::Text("ok")).await;
    let port = server.port();
    let names = resolver(&[("api.test", &["127.0.0.1"])]);
    let (out, audit) = outbound(
        &api_manifest(port, "max_concurrent_requests = 1"),
        names.clone(),
        quick(),
    );
    let held = out.send(&get(port, "/v1/a"), empty_body()).await.unwrap();
    let err = out
        .send(&get(port, "/v1/b"), empty_body())
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::ConcurrencyLimit);
    drop(held);
    assert!(out.send(&get(port, "/v1/c"), empty_body()).await.is_ok());
    assert_eq!(audit.records().len(), 1);

    let sandbox = EgressConfig {
        max_in_flight: 2,
        ..quick()
    };
    let (out, _) = outbound(&api_manifest(port, ""), names, sandbox);
    let a = out.send(&get(port, "/v1/a"), empty_body()).await.unwrap();
    let b = out.send(&get(port, "/v1/b"), empty_body()).await.unwrap();
    assert_eq!(
        reason(out.send(&get(port, "/v1/c"), empty_body()).await),
        Reason::ConcurrencyLimit
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_denial_is_audited_once_and_no_line_holds_the_secret() {
    let server = Server::http(|_| Reply::Text("ok")).await;
    let port = server.port();
    let manifest = api_manifest(
        port,
        "max_response_body = 1\n[authority.headers]\nx-api-key = { value = \"TOPSECRET-123\" }",
    );
    let (out, audit) = outbound(
        &manifest,
        resolver(&[("api.test", &["127.0.0.1"])]),
        quick(),
    );
    let attempts = [
        GuestRequest::new(
            "GET",
            &format!("http://user:TOPSECRET-123@api.test:{port}/v1/"),
        ),
        GuestRequest::new("GET", &format!("http://api.test:{port}/v2/")),
        GuestRequest::new("TRACE", &format!("http://api.test:{port}/v1/")),
        get(port, "/v1/").header("X-Api-Key", "guess"),
        get(port, "/v1/").header("Host", "evil.test"),
        GuestRequest::new("GET", "http://evil.test/"),
        get(port, "/v1/big"),
    ];
    for attempt in &attempts {
        if let Ok(response) = out.send(attempt, empty_body()).await {
            assert!(read_body(response).await.is_err());
        }
    }
    let records = audit.records();
    let reasons: Vec<&str> = records
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "userinfo",
            "path_not_allowed",
            "method_not_allowed",
            "forbidden_header",
            "forbidden_header",
            "no_authority",
            "response_body_too_large"
        ]
    );
    assert!(records
        .iter()
        .all(|r| r["event"] == "request.denied" && r["sandbox"] == "test"));
    assert!(!audit.text().contains("TOPSECRET"), "{}", audit.text());
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("x-api-key") == ["TOPSECRET-123"]),
        "the server does get the secret"
    );
}

/// The state a request in flight holds stays small: the connect path (DNS, TCP, TLS handshake)
/// is boxed only when a new connection is needed, so a pooled request does not carry its
/// ~8 KB. Thousands of requests in flight (or one allocation and copy per request) pay for it.
#[test]
fn a_request_in_flight_does_not_carry_the_connect_path() {
    let (out, _) = outbound(&api_manifest(1, ""), resolver(&[]), quick());
    let guest = get(1, "/v1/x");
    let send = out.send(&guest, empty_body());
    let size = std::mem::size_of_val(&send);
    eprintln!("send future: {size} bytes");
    assert!(size < 6 * 1024, "send future is {size} bytes");
}

/// A server that answers one request with `limit` informational `100 Continue` responses,
/// then `last` (if any), and counts how many it wrote.
async fn interim_flood(
    limit: usize,
    last: Option<&'static [u8]>,
) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head).await;
        for _ in 0..limit {
            if stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if let Some(last) = last {
            let _ = stream.write_all(last).await;
        }
        std::future::pending::<()>().await;
    });
    (port, written)
}

/// An origin that sends informational responses without end is cut off after
/// `MAX_INTERIM_RESPONSES` of them (`upstream_error`), long before the first-byte timeout,
/// and the connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_stream_of_informational_responses_is_cut_off() {
    let (port, written) = interim_flood(1_000_000, None).await;
    let (out, audit) = outbound(
        &api_manifest(port, ""),
        resolver(&[("api.test", &["127.0.0.1"])]),
        EgressConfig {
            first_byte_timeout: Duration::from_secs(120),
            ..EgressConfig::default()
        },
    );
    let started = std::time::Instant::now();
    let denial = out
        .send(&get(port, "/v1/x"), empty_body())
        .await
        .expect_err("cut off");
    assert_eq!(denial.reason, Reason::UpstreamError, "{denial}");
    assert!(
        denial.detail.contains("more than 32 informational"),
        "{denial}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "not left to the first-byte timeout"
    );
    assert!(written.load(std::sync::atomic::Ordering::SeqCst) < 1_000_000);
    assert_eq!(audit.records().len(), 1);

    // Up to the cap they are fine, and the response that follows arrives.
    let ok: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (port, _) = interim_flood(31, Some(ok)).await;
    let (out, _) = outbound(
        &api_manifest(port, ""),
        resolver(&[("api.test", &["127.0.0.1"])]),
        EgressConfig::default(),
    );
    let response = out.send(&get(port, "/v1/x"), empty_body()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(read_body(response).await.unwrap(), b"ok");
}

/// A server that answers at once (`200`, body `ok`) without waiting for the request body,
/// then reads whatever comes.
async fn answers_before_the_body() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// `count` chunks of 1 KiB, one every 5 ms: a body still streaming when the response comes.
fn slow_chunks(count: usize) -> RequestBody {
    use http_body_util::BodyExt;
    struct Slow(usize, Option<std::pin::Pin<Box<tokio::time::Sleep>>>);
    impl http_body::Body for Slow {
        type Data = bytes::Bytes;
        type Error = Denial;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Denial>>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            let sleep = self
                .1
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(5))));
            std::task::ready!(std::future::Future::poll(sleep.as_mut(), cx));
            self.1 = None;
            self.0 -= 1;
            let chunk = bytes::Bytes::from(vec![b'y'; 1024]);
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
        }
    }
    Slow(count, None).boxed_unsync()
}

/// A request body refused after the response head arrived (the server answered early) is
/// still audited, exactly once, with its own reason, whether or not the guest reads the
/// response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_refused_after_the_response_head_is_audited_once() {
    for read_response in [true, false] {
        let port = answers_before_the_body().await;
        let (out, audit) = outbound(
            &api_manifest(port, "max_request_body = \"10KB\""),
            resolver(&[("api.test", &["127.0.0.1"])]),
            EgressConfig::default(),
        );
        let request = GuestRequest::new("POST", &format!("http://api.test:{port}/v1/up"));
        let response = out.send(&request, slow_chunks(100)).await.unwrap();
        assert_eq!(response.status(), 200);
        let read = if read_response {
            Some(read_body(response).await)
        } else {
            drop(response);
            None
        };
        let mut waited = Duration::ZERO;
        while audit.records().is_empty() && waited < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let records = audit.records();
        assert_eq!(
            records.len(),
            1,
            "read {read_response}: {records:?} {read:?}"
        );
        assert_eq!(
            records[0]["reason"], "request_body_too_large",
            "{records:?}"
        );
    }
}

/// Idle connections are capped in all, not only per origin (a wildcard grant reaches many
/// origins), and a timer closes them after the idle-connection timeout even if no request comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_capped_in_all_and_expire_on_a_timer() {
    use urlcap::audit::AuditLog;
    use urlcap::egress::Client;
    use urlcap::manifest::{Config, ProcessSecrets};
    use urlcap::outbound::Outbound;
    let server = Server::http(|_| Reply::Text("fine")).await;
    let port = server.port();
    let names: Vec<String> = (0..20).map(|i| format!("h{i}.pool.test")).collect();
    let resolver = Arc::new(StaticResolver::new());
    for name in &names {
        resolver.set(name, &[ip("127.0.0.1")]);
    }
    let manifest = format!(
        "version = 1\n[[authority]]\nname = \"pool\"\norigin = \"http://*.pool.test:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\n"
    );
    let config = Config::parse(&manifest, std::path::Path::new("t.toml"), &ProcessSecrets).unwrap();
    let policy = config.policy(Arc::new(urlcap::policy::SystemClock::new()));
    let client = Client::new(
        EgressConfig {
            max_idle_total: 8,
            idle_connection_timeout: Duration::from_millis(300),
            ..EgressConfig::default()
        },
        resolver,
    );
    let out = Outbound::new(
        policy.preopens(),
        client.clone(),
        Arc::new(AuditLog::new(Box::new(std::io::sink()))),
        "t",
    );
    for name in &names {
        let request = GuestRequest::new("GET", &format!("http://{name}:{port}/x"));
        let response = out.send(&request, empty_body()).await.unwrap();
        assert_eq!(read_body(response).await.unwrap(), b"fine");
        assert!(
            client.idle_connections() <= 8,
            "{}",
            client.idle_connections()
        );
    }
    assert_eq!(server.connections(), 20, "one connection per origin");
    assert_eq!(client.idle_connections(), 8, "the newest eight are kept");
    let mut waited = Duration::ZERO;
    while client.idle_connections() > 0 && waited < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert_eq!(
        client.idle_connections(),
        0,
        "closed by the timer, with no request since"
    );
}
