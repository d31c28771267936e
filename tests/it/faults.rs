//! Faults seen from a guest: a hostile or broken upstream, and hostile DNS. Each fault reaches
//! the guest as a typed error (its reason code), is audited exactly once, and leaves the host —
//! and the same guest — able to go on.

use crate::support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{outbound, run_probe, Pki, Reply, Server, Step};
use urlcap::egress::{EgressConfig, Resolve, Resolving};

/// Answers `rebind.test` with loopback the first time and with another (denied) loopback
/// address afterwards; `api.test`, `tls.test` and `wrongname.test` are loopback; every other
/// name fails to resolve.
#[derive(Default)]
struct HostileDns {
    rebind_lookups: AtomicUsize,
}

impl Resolve for HostileDns {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> Resolving<'a> {
        Box::pin(async move {
            let ip: IpAddr = match host {
                "api.test" | "tls.test" | "wrongname.test" => "127.0.0.1".parse().unwrap(),
                "rebind.test" if self.rebind_lookups.fetch_add(1, Ordering::SeqCst) == 0 => {
                    "127.0.0.1".parse().unwrap()
                }
                "rebind.test" => "127.0.0.2".parse().unwrap(),
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such name",
                    ))
                }
            };
            Ok(vec![ip])
        })
    }
}

fn upstream(path: &str) -> Reply {
    match path {
        // Headers, some body, then the connection is cut.
        "/v1/reset" => Reply::Script(vec![], vec![Step::Data(100), Step::Fail]),
        // Slowloris: a byte at a time, never finishing within the total timeout.
        "/v1/slowloris" => Reply::Script(
            vec![],
            (0..100)
                .flat_map(|_| [Step::Data(1), Step::Wait(Duration::from_millis(50))])
                .collect(),
        ),
        // Declares nothing and streams past max_response_body.
        "/v1/big" => Reply::Script(vec![], vec![Step::Data(64 * 1024); 4]),
        // One response, then the connection closes, so the next request must reconnect.
        "/" => Reply::With(200, vec![("connection", "close".into())], b"first".to_vec()),
        t => Reply::With(200, vec![], format!("fine {t}").into_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_and_dns_faults_become_typed_errors_and_the_guest_goes_on() {
    let server = Server::http(|r| upstream(&r.target)).await;
    let pki = Pki::new(&["tls.test"]);
    let tls_server = Server::https(&pki, |_| Reply::Text("secure")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let (port, tls_port) = (server.port(), tls_server.port());
    let loopback = "allow_ips = [\"127.0.0.1/32\"]";
    let manifest = format!(
        "version = 1\n\
         [[authority]]\nname = \"api\"\norigin = \"http://api.test:{port}\"\npaths = [\"/v1/\"]\n{loopback}\ntimeout = \"1s\"\nmax_response_body = \"128KiB\"\n\
         [[authority]]\nname = \"tls\"\norigin = \"https://tls.test:{tls_port}\"\n{loopback}\nca_file = {ca:?}\n\
         [[authority]]\nname = \"wrongname\"\norigin = \"https://wrongname.test:{tls_port}\"\n{loopback}\nca_file = {ca:?}\n\
         [[authority]]\nname = \"nodns\"\norigin = \"http://nodns.test:{port}\"\n\
         [[authority]]\nname = \"rebind\"\norigin = \"http://rebind.test:{port}\"\n{loopback}\n"
    );
    let (out, audit) = outbound(
        &manifest,
        Arc::new(HostileDns::default()),
        EgressConfig::default(),
    );
    let out = Arc::new(out);
    let steps = [
        "fetch",
        "api",
        "GET",
        "/v1/reset",
        "fetch",
        "api",
        "GET",
        "/v1/slowloris",
        "fetch",
        "api",
        "GET",
        "/v1/big",
        "fetch",
        "tls",
        "GET",
        "/",
        "fetch",
        "wrongname",
        "GET",
        "/",
        "fetch",
        "nodns",
        "GET",
        "/",
        "fetch",
        "rebind",
        "GET",
        "/",
        "fetch",
        "rebind",
        "GET",
        "/",
        "fetch",
        "api",
        "GET",
        "/v1/after",
    ];
    let (outcome, lines, _) = run_probe(out.clone(), "faults", &steps, None, None).await;
    assert_eq!(outcome.exit_code, 0, "{outcome:?} {lines:?}");
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        reasons,
        [
            "upstream_error",
            "timeout",
            "response_body_too_large",
            "200",
            "tls_failure",
            "dns_failure",
            "200",
            "ip_denied",
            "200"
        ],
        "{lines:?}"
    );
    assert!(lines[0].starts_with("err "), "{lines:?}");
    assert_eq!(lines[8], "ok 200 fine /v1/after");

    // Exactly one record per fault, in order, naming the authority; nothing else.
    let records = audit.records();
    let audited: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            assert_eq!(r["event"], "request.denied", "{r}");
            assert_eq!(r["sandbox"], "faults", "{r}");
            (
                r["reason"].as_str().unwrap(),
                r["authority"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        audited,
        [
            ("upstream_error", "api"),
            ("timeout", "api"),
            ("response_body_too_large", "api"),
            ("tls_failure", "wrongname"),
            ("dns_failure", "nodns"),
            ("ip_denied", "rebind"),
        ]
    );
    // The rebound address never received a request; the first answer did, once.
    let to_root: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.target == "/")
        .collect();
    assert_eq!(to_root.len(), 1);

    // The host is alive for the next guest too.
    let (outcome, lines, _) = run_probe(
        out,
        "next",
        &["fetch", "api", "GET", "/v1/next"],
        None,
        None,
    )
    .await;
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(lines, ["ok 200 fine /v1/next"]);
}

/// Through `wasi:http`, each transport failure reaches the guest as the error code the WASI HTTP
/// spec means for it — the one `wasmtime run -S http` gives — while the audit keeps urlcap's
/// stable reasons: a name that does not resolve is `dns-error`, a first-byte or between-bytes
/// stall `connection-read-timeout`, TLS spoken to a plain-HTTP server `TLS-protocol-error`, a
/// certificate for another name `TLS-certificate-error`; `HTTP-request-denied` is for policy
/// denials only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_failures_get_the_error_codes_the_spec_means() {
    let server = Server::http(|r| match r.target.as_str() {
        "/v1/stall" => Reply::Script(
            vec![],
            vec![Step::Data(10), Step::Wait(Duration::from_secs(30))],
        ),
        "/v1/late" => Reply::SlowHead(Duration::from_secs(30)),
        t => Reply::With(200, vec![], format!("fine {t}").into_bytes()),
    })
    .await;
    let pki = Pki::new(&["tls.test"]);
    let tls_server = Server::https(&pki, |_| Reply::Text("secure")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let (port, tls_port) = (server.port(), tls_server.port());
    let loopback = "allow_ips = [\"127.0.0.1/32\"]";
    let manifest = format!(
        "version = 1\n\
         [[authority]]\nname = \"api\"\norigin = \"http://api.test:{port}\"\n{loopback}\n\
         [[authority]]\nname = \"plain\"\norigin = \"https://api.test:{port}\"\n{loopback}\nca_file = {ca:?}\n\
         [[authority]]\nname = \"tls\"\norigin = \"https://tls.test:{tls_port}\"\n{loopback}\nca_file = {ca:?}\n\
         [[authority]]\nname = \"wrongname\"\norigin = \"https://wrongname.test:{tls_port}\"\n{loopback}\nca_file = {ca:?}\n\
         [[authority]]\nname = \"nodns\"\norigin = \"http://nodns.test:{port}\"\n"
    );
    let quick = EgressConfig {
        first_byte_timeout: Duration::from_millis(500),
        between_bytes_timeout: Duration::from_millis(500),
        ..EgressConfig::default()
    };
    let (out, audit) = outbound(&manifest, Arc::new(HostileDns::default()), quick);
    let rows: &[(&str, &str, &str)] = &[
        (&format!("http://api.test:{port}/v1/ok"), "ok 200 fine /v1/ok", ""),
        (&format!("https://tls.test:{tls_port}/"), "ok 200 secure", ""),
        (
            &format!("http://nodns.test:{port}/"),
            "err ErrorCode::DnsError(DnsErrorPayload { rcode: Some(\"address not available\"), info-code: None })",
            "dns_failure",
        ),
        (&format!("http://api.test:{port}/v1/late"), "err ErrorCode::ConnectionReadTimeout", "timeout"),
        (&format!("http://api.test:{port}/v1/stall"), "err body ", "timeout"),
        (&format!("https://api.test:{port}/"), "err ErrorCode::TlsProtocolError", "tls_failure"),
        (
            &format!("https://wrongname.test:{tls_port}/"),
            "err ErrorCode::TlsCertificateError",
            "tls_failure",
        ),
        (&format!("http://api.test:{port}/after"), "ok 200 fine /after", ""),
        (&format!("http://evil.test:{port}/"), "err ErrorCode::HttpRequestDenied", "no_authority"),
    ];
    let mut steps: Vec<&str> = Vec::new();
    for (url, _, _) in rows {
        steps.extend(["http", "GET", url]);
    }
    let (outcome, lines, _) = run_probe(Arc::new(out), "codes", &steps, None, None).await;
    assert_eq!(outcome.exit_code, 0, "{outcome:?} {lines:?}");
    assert_eq!(lines.len(), rows.len(), "{lines:?}");
    for ((url, want, _), line) in rows.iter().zip(&lines) {
        assert!(line.starts_with(want), "{url}: {line:?} is not {want:?}");
    }
    assert!(
        lines[4].contains("read timeout"),
        "a between-bytes stall: {}",
        lines[4]
    );
    let reasons: Vec<String> = audit
        .records()
        .iter()
        .filter(|r| r["event"] == "request.denied")
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<&str> = rows.iter().map(|r| r.2).filter(|r| !r.is_empty()).collect();
    assert_eq!(reasons, want, "the audit keeps urlcap's reasons");
}
