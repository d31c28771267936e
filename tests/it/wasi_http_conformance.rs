//! wasi:http conformance: the same unmodified guest (fixtures/guests/whttp, built only on the
//! `wasip2` crate) behaves under `urlcap run` exactly as under `wasmtime run -S http -S
//! inherit-network` (wasmtime-cli 48.0.8, whose wasi:http implementation urlcap embeds)
//! wherever the grant covers the target — methods (an unknown one too), bodies (1 MiB, a
//! declared content-length that matches, one the body falls short of, one it overruns),
//! timeouts, refused connections, TLS spoken to a plain server, a forbidden header refused at
//! `fields`, hop-by-hop response headers, a request without an authority — and differs only
//! where urlcap means to, each difference named below. (A name that does not resolve is
//! checked in-process, `tests/faults.rs`: under the CLI it would ask the system's resolver.) wasmtime's own test programs are the reference for behaviour; this guest is ours.
//!
//! Needs the wasmtime CLI: `./scripts/test` installs it (once) and sets URLCAP_WASMTIME_CLI;
//! run alone, this test fails (it never skips) and says so. Every target is on 127.0.0.1.

use crate::support;

use std::time::Duration;
use support::{Reply, Server, Step};

const WHTTP: &str = env!("URLCAP_GUEST_WHTTP");

fn wasmtime_cli() -> String {
    std::env::var("URLCAP_WASMTIME_CLI").unwrap_or_else(|_| {
        panic!("URLCAP_WASMTIME_CLI is not set: run ./scripts/test, which installs wasmtime-cli 48.0.8 and sets it")
    })
}

/// What one runtime printed, a line per request group.
async fn run(program: String, args: Vec<String>) -> Vec<String> {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", support::text(&output.stderr));
    support::text(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Run the guest with these request groups under `urlcap run` with `grants` (flags) and under
/// `wasmtime run -S http -S inherit-network`; what each printed.
async fn under_both(grants: &[&str], groups: &[Vec<&str>]) -> (Vec<String>, Vec<String>) {
    let guest_args = support::whttp_groups(groups.iter().map(Vec::as_slice));
    let mut urlcap_args: Vec<String> = ["run"]
        .iter()
        .chain(grants)
        .map(|s| s.to_string())
        .collect();
    urlcap_args.extend(
        [
            "--allow-ip",
            "127.0.0.1",
            "--audit",
            "/dev/null",
            WHTTP,
            "--",
        ]
        .map(String::from),
    );
    urlcap_args.extend(guest_args.iter().cloned());
    let mut wasmtime_args: Vec<String> = ["run", "-S", "http", "-S", "inherit-network", WHTTP]
        .map(String::from)
        .to_vec();
    wasmtime_args.extend(guest_args);
    let under_urlcap = run(env!("CARGO_BIN_EXE_urlcap").to_string(), urlcap_args).await;
    let under_wasmtime = run(wasmtime_cli(), wasmtime_args).await;
    (under_urlcap, under_wasmtime)
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_wasi_http_guest_behaves_as_under_wasmtime() {
    let server = Server::http(|r| match r.target.as_str() {
        "/v1/slow" => Reply::SlowHead(Duration::from_secs(5)),
        "/v1/hop" => Reply::Script(
            vec![("x-kept", "yes".into()), ("connection", "close".into())],
            vec![Step::Data(4)],
        ),
        t => Reply::With(
            200,
            vec![("x-kept", "yes".into())],
            format!("{} {t} {}", r.method, r.body_len).into_bytes(),
        ),
    })
    .await;
    let here = format!("127.0.0.1:{}", server.port());
    let closed = format!("127.0.0.1:{}", closed_port());
    let same: Vec<Vec<&str>> = vec![
        vec!["GET", "http", &here, "/v1/x", "show-headers"],
        vec!["POST", "http", &here, "/v1/x"],
        vec!["POST", "http", &here, "/v1/big", "body=1048576"],
        vec!["POST", "http", &here, "/v1/cl", "body=5", "cl=5"],
        vec!["POST", "http", &here, "/v1/short", "body=5", "cl=10"],
        vec!["POST", "http", &here, "/v1/long", "body=10", "cl=5"],
        vec!["DELETE", "http", &here, "/v1/x?q=1"],
        vec!["FOO", "http", &here, "/v1/x"],
        vec!["GET", "http", &here, "/v1/slow", "first-byte-ms=300"],
        vec!["GET", "http", &closed, "/v1/x"],
        vec!["GET", "https", &here, "/v1/x"],
        vec!["GET", "http", &here, "/v1/x", "connection:close"],
        vec!["GET", "http", &here, "/v1/x", "upgrade:websocket"],
        vec!["GET", "http", &here, "/v1/hop", "show-headers"],
        vec!["GET", "http", "-", "/v1/x"],
    ];
    // urlcap's grants cover every target above (methods named, so FOO is granted too).
    let grants = [
        format!("FOO,GET,POST,DELETE http://{here}/"),
        format!("GET https://{here}/"),
        format!("GET http://{closed}/"),
    ];
    let flags: Vec<&str> = grants
        .iter()
        .flat_map(|g| ["--allow", g.as_str()])
        .collect();
    let (under_urlcap, under_wasmtime) = under_both(&flags, &same).await;
    assert_eq!(
        under_urlcap, under_wasmtime,
        "the same outcome wherever the grant covers the target"
    );
    // And the outcomes are the ones the spec means (so the two are not merely alike).
    let joined = under_urlcap.join("\n");
    for expected in [
        "ok 200 POST /v1/x 0",
        "ok 200 POST /v1/big 1048576",
        "ok 200 POST /v1/cl 5",
        "ok 200 FOO /v1/x 0",
        "err ErrorCode::ConnectionReadTimeout",
        "err ErrorCode::ConnectionRefused",
        "err ErrorCode::TlsProtocolError",
        "refused connection HeaderError::Forbidden",
        "refused upgrade HeaderError::Forbidden",
        "err ErrorCode::HttpRequestUriInvalid",
    ] {
        assert!(joined.contains(expected), "{expected:?} in\n{joined}");
    }
    assert!(
        under_urlcap
            .iter()
            .filter(|l| l.starts_with("headers "))
            .all(|l| l.contains("x-kept")
                && !l.contains("connection")
                && !l.contains("transfer-encoding")),
        "{joined}"
    );
}

/// Where urlcap deliberately differs from wasmtime, and how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urlcap_differs_only_where_it_means_to() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let here = format!("127.0.0.1:{}", server.port());
    let cases: Vec<Vec<&str>> = vec![
        // A scheme other than http(s): wasmtime refuses it as a protocol error, unaudited;
        // urlcap's policy denies it (`unsupported_scheme`) and audits it.
        vec!["GET", "ftp", &here, "/v1/x"],
        // Outside the grant: wasmtime sends anything; urlcap denies (`path_not_allowed`).
        vec!["GET", "http", &here, "/admin"],
    ];
    let grant = format!("http://{here}/v1/");
    let (under_urlcap, under_wasmtime) = under_both(&["--allow", &grant], &cases).await;
    assert_eq!(
        under_urlcap,
        [
            "err ErrorCode::HttpRequestDenied",
            "err ErrorCode::HttpRequestDenied"
        ]
    );
    assert_eq!(under_wasmtime[0], "err ErrorCode::HttpProtocolError");
    assert_eq!(under_wasmtime[1], "ok 200 fine");
}
