//! Every manifest and flag error: where it points (file:line:column) and what it says.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use urlcap::manifest::{Config, ConfigError, GrantSources, SecretStore};

/// Secrets from fixed maps, so tests never depend on the real environment.
#[derive(Default)]
struct FakeSecrets {
    env: HashMap<&'static str, &'static str>,
    files: HashMap<PathBuf, &'static str>,
}

impl SecretStore for FakeSecrets {
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).map(|v| v.to_string())
    }
    fn read_file(&self, path: &Path, _max: u64) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .map(|v| v.as_bytes().to_vec())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file"))
    }
}

fn secrets() -> FakeSecrets {
    FakeSecrets {
        env: HashMap::from([("TOKEN", "s3cret-token"), ("EMPTY", "")]),
        files: HashMap::from([
            (PathBuf::from("conf/token.txt"), "file-secret\n"),
            (
                PathBuf::from("conf/garbage.pem"),
                "this is not a certificate\n",
            ),
        ]),
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("conf/urlcap.toml"), &secrets())
}

const AUTH: &str = "version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://a.example.com\"\n";

/// (manifest, expected "line:column", substring of the message, substring of the help or "")
const CASES: &[(&str, &str, &str, &str)] = &[
    ("version = 1\n[[authority]\n", "2:", "", ""),
    ("verison = 1\n", "1:1", "unknown key `verison`", "did you mean `version`?"),
    ("version = 1\n[[authorities]]\nname = \"a\"\n", "2:", "unknown key `authorities`", "did you mean `authority`?"),
    ("version = 1\n[limit]\n", "2:", "unknown key `limit`", "did you mean `limits`?"),
    ("version = 1\n[[authority]]\nname = \"a\"\norign = \"https://a.com\"\n", "4:1", "unknown key `orign`", "did you mean `origin`?"),
    ("version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://a.com\"\nzzz = 1\n", "5:1", "unknown key `zzz`", "allowed keys here: name, origin"),
    ("version = 1\n[limits]\nmemroy = \"1MiB\"\n", "3:1", "unknown key `memroy`", "did you mean `memory`?"),
    ("version = 1\n[network]\nallow_ip = []\n", "3:1", "unknown key `allow_ip`", "did you mean `allow_ips`?"),
    ("[[authority]]\nname = \"a\"\norigin = \"https://a.com\"\n", "1:1", "missing `version = 1`", ""),
    ("version = 2\n", "1:11", "unsupported manifest version 2", "version = 1"),
    ("version = 1\n[limits]\nmax_concurrent_requests = 0\n", "3:27", "max_concurrent_requests must be a whole number from 1", ""),
    ("version = 1\n[limits]\nmemory = \"lots\"\n", "3:10", "\"lots\" is not a size", ""),
    ("version = 1\n[limits]\nmax_nesting_depth = 99\n", "3:21", "max_nesting_depth must be a whole number from 0 to 16", "0 forbids"),
    ("version = 1\n[limits]\ntimeout = 30\n", "3:11", "30 has no unit; write e.g. \"30s\"", ""),
    ("version = 1\n[limits]\ntimeout = \"0s\"\n", "3:11", "is zero", ""),
    ("version = 1\n[network]\nallow_ips = [\"10.0.0.0/33\"]\n", "3:14", "is not an IP address or CIDR", ""),
    ("version = 1\n[network]\ndeny_ips = [\"nope\"]\n", "3:13", "is not an IP address or CIDR", ""),
    ("version = 1\n[[authority]]\norigin = \"https://a.com\"\n", "2:1", "missing field `name`", ""),
    ("version = 1\n[[authority]]\nname = \"a\"\n", "2:1", "missing field `origin`", ""),
    ("version = 1\n[[authority]]\nname = \"a/b\"\norigin = \"https://a.com\"\n", "3:8", "contains '/'", ""),
    ("version = 1\n[[authority]]\nname = \"a\"\norigin = \"ftp://a.com\"\n", "4:10", "scheme \"ftp\" is not http or https", ""),
    ("version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://a.com/v1/\"\n", "4:10", "origin is scheme://host[:port] with no path", "paths = [\"/v1/\"]"),
    ("version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://u@a.com\"\n", "4:10", "userinfo", ""),
    ("version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://*.com\"\n", "4:10", "top-level domain", ""),
    ("version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://a.com:0\"\n", "4:10", "leading zero or is zero", ""),
    ("version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://a.com\"\n[[authority]]\nname = \"a\"\norigin = \"https://b.com\"\n", "5:1", "duplicate authority name \"a\"", "unique"),
    ("AUTH paths = []\n", "5:9", "an empty `paths` list would allow nothing", "remove the key"),
    ("AUTH paths = [\"/v1/../x\"]\n", "5:10", "dot segment", "canonical path"),
    ("AUTH paths = [\"v1\"]\n", "5:10", "must start with '/'", ""),
    ("AUTH paths = \"/v1/\"\n", "5:9", "invalid type", ""),
    ("AUTH methods = []\n", "5:11", "an empty `methods` list would allow nothing", ""),
    ("AUTH methods = [\"GET \"]\n", "5:12", "is not an HTTP token", ""),
    ("AUTH methods = [\"CONNECT\"]\n", "5:12", "CONNECT opens a tunnel", ""),
    ("AUTH max_requests = 0\n", "5:16", "max_requests must be a whole number from 1", ""),
    ("AUTH max_requests = -5\n", "5:16", "max_requests must be a whole number from 1", ""),
    ("AUTH rate = \"ten per second\"\n", "5:8", "is not of the form N/UNIT", ""),
    ("AUTH rate = \"10/fortnight\"\n", "5:8", "rate unit", ""),
    ("AUTH timeout = \"forever\"\n", "5:11", "is not a duration", ""),
    ("AUTH max_request_body = \"big\"\n", "5:20", "is not a size", ""),
    ("AUTH max_response_body = true\n", "5:21", "expected a size", ""),
    ("AUTH allow_ips = [\"127.0.0.1/40\"]\n", "5:14", "is not an IP address or CIDR", ""),
    ("AUTH [authority.headers]\nhost = { value = \"x\" }\n", "6:8", "cannot inject header \"host\"", "Host, hop-by-hop"),
    ("AUTH [authority.headers]\n\"x y\" = { value = \"x\" }\n", "6:9", "cannot inject header \"x y\"", ""),
    ("AUTH [authority.headers]\nproxy-authorization = { value = \"x\" }\n", "6:23", "cannot inject header", ""),
    ("AUTH [authority.headers]\nAuthorization = { value = \"x\" }\nauthorization = { value = \"y\" }\n", "7:17", "is given twice", ""),
    ("AUTH [authority.headers]\nx-token = { prefix = \"Bearer \" }\n", "6:11", "needs exactly one of env, file or value", "env = \"TOKEN\""),
    ("AUTH [authority.headers]\nx-token = { env = \"TOKEN\", value = \"v\" }\n", "6:11", "needs exactly one of env, file or value", ""),
    ("AUTH [authority.headers]\nx-token = { env = \"MISSING_VAR\" }\n", "6:11", "environment variable MISSING_VAR (for header \"x-token\") is not set", "export it"),
    ("AUTH [authority.headers]\nx-token = { env = \"EMPTY\" }\n", "6:11", "environment variable EMPTY (for header \"x-token\") is empty", ""),
    ("AUTH [authority.headers]\nx-token = { file = \"missing.txt\" }\n", "6:11", "cannot read secret file conf/missing.txt", ""),
    ("AUTH [authority.headers]\nx-token = { value = \"a\\r\\nb\" }\n", "6:11", "contains a control character", ""),
    ("AUTH [authority.headers]\nx-token = { envv = \"TOKEN\" }\n", "6:11", "unknown key `envv`", "did you mean `env`?"),
    ("AUTH max_concurrent_requests = 0\n", "5:27", "max_concurrent_requests must be a whole number from 1", ""),
    ("AUTH ca_file = \"missing.pem\"\n", "5:11", "cannot read ca_file conf/missing.pem", ""),
    ("AUTH ca_file = \"garbage.pem\"\n", "5:11", "ca_file conf/garbage.pem holds no PEM certificate", "BEGIN CERTIFICATE"),
    ("AUTH ca_flie = \"x.pem\"\n", "5:1", "unknown key `ca_flie`", "did you mean `ca_file`?"),
];

#[test]
fn every_manifest_error_names_the_place_and_the_problem() {
    let mut failures = Vec::new();
    for (text, place, message, help) in CASES {
        let text = text.replace("AUTH ", AUTH);
        let err = match parse(&text) {
            Ok(_) => {
                failures.push(format!("accepted:\n{text}"));
                continue;
            }
            Err(e) => e,
        };
        let shown = err.to_string();
        let ConfigError::Manifest {
            file,
            line,
            column,
            message: m,
            help: h,
        } = &err
        else {
            failures.push(format!("not a manifest error: {shown}"));
            continue;
        };
        let at = format!("{line}:{column}");
        let ok = file == "conf/urlcap.toml"
            && at.starts_with(place)
            && m.contains(message)
            && (help.is_empty() || h.as_deref().is_some_and(|h| h.contains(help)))
            && shown.starts_with(&format!("conf/urlcap.toml:{at}: "));
        if !ok {
            failures.push(format!(
                "expected {place} {message:?} help {help:?}, got: {shown}\n--- manifest:\n{text}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
fn secret_values_never_appear_in_errors_or_debug_output() {
    let text = format!("{AUTH}[authority.headers]\nx-token = {{ value = \"hunter2\\nX\" }}\n");
    let err = parse(&text).unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
    let text = format!(
        "{AUTH}[authority.headers]\nauthorization = {{ env = \"TOKEN\", prefix = \"Bearer \" }}\n"
    );
    let config = parse(&text).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret-token"), "{shown}");
    assert_eq!(
        config.grants[0].headers[0].value.expose(),
        b"Bearer s3cret-token"
    );
}

#[test]
fn secret_files_are_read_relative_to_the_manifest_without_the_trailing_newline() {
    let text = format!("{AUTH}[authority.headers]\nx-token = {{ file = \"token.txt\" }}\n");
    let config = parse(&text).unwrap();
    assert_eq!(config.grants[0].headers[0].value.expose(), b"file-secret");
}

#[test]
fn a_full_manifest_parses_to_what_it_says() {
    let text = std::fs::read_to_string("policy/example.toml").unwrap();
    let mut s = secrets();
    s.env.insert("GITHUB_TOKEN", "ghp_example");
    let config = Config::parse(&text, Path::new("policy/example.toml"), &s).unwrap();
    assert_eq!(config.limits.memory, Some(64 << 20));
    assert_eq!(
        config.limits.timeout,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(config.limits.max_concurrent_requests, Some(16));
    assert!(!config.network.allow_private);
    assert_eq!(config.network.allow.len(), 1);
    let gh = &config.grants[0];
    assert_eq!(gh.name, "github");
    assert_eq!(gh.origin.to_string(), "https://api.github.com");
    assert_eq!(
        gh.paths.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        ["/repos/", "/users/"]
    );
    assert_eq!(gh.methods.to_string(), "GET,HEAD");
    assert_eq!(gh.limits.max_requests, Some(1000));
    assert_eq!(gh.limits.rate.unwrap().count, 10);
    assert_eq!(gh.limits.max_response_body, Some(10 << 20));
    assert_eq!(gh.headers[0].name, "authorization");
}

fn flags(allow: &[&str], allow_ip: &[&str], deny_ip: &[&str]) -> GrantSources {
    GrantSources {
        manifest: None,
        allow: allow.iter().map(|s| s.to_string()).collect(),
        allow_ip: allow_ip.iter().map(|s| s.to_string()).collect(),
        deny_ip: deny_ip.iter().map(|s| s.to_string()).collect(),
        allow_private: false,
        vars: Vec::new(),
    }
}

#[test]
fn flag_errors_name_the_flag_and_the_grammar() {
    let cases: &[(GrantSources, &str)] = &[
        (flags(&["api.example.com"], &[], &[]), "--allow \"api.example.com\": \"api.example.com\" is not of the form scheme://host[:port][/path]\n  help: expected [NAME=][METHODS ]URL"),
        (flags(&["a=https://a.com", "a=https://b.com"], &[], &[]), "--allow \"a=https://b.com\": an authority named \"a\" already exists"),
        (flags(&["GET,PUT  https://a.com"], &[], &[]), "--allow \"GET,PUT  https://a.com\": \" https://a.com\" contains ' '"),
        (flags(&[], &["10.0.0.0/99"], &[]), "--allow-ip \"10.0.0.0/99\": \"10.0.0.0/99\" is not an IP address or CIDR"),
        (flags(&[], &[], &["::g"]), "--deny-ip \"::g\": \"::g\" is not an IP address or CIDR"),
    ];
    for (sources, expected) in cases {
        let err = Config::load(sources, &secrets()).unwrap_err();
        assert!(
            err.to_string().starts_with(expected),
            "expected {expected:?}, got {:?}",
            err.to_string()
        );
    }
    let missing = GrantSources {
        manifest: Some("does/not/exist.toml".into()),
        ..GrantSources::default()
    };
    let err = Config::load(&missing, &secrets()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("does/not/exist.toml: cannot read manifest:"),
        "{err}"
    );
}

#[test]
fn flags_merge_with_a_manifest_and_get_unique_names() {
    let text = std::fs::read_to_string("policy/example.toml").unwrap();
    let mut s = secrets();
    s.env.insert("GITHUB_TOKEN", "x");
    let mut config = Config::parse(&text, Path::new("policy/example.toml"), &s).unwrap();
    let before = config.grants.len();
    config
        .apply_flags(&GrantSources {
            allow: vec![
                "https://a.example.com".into(),
                "https://a.example.com/v2/".into(),
                "http://127.0.0.1:8080/".into(),
            ],
            allow_ip: vec!["127.0.0.1".into()],
            deny_ip: vec!["198.51.100.0/24".into()],
            allow_private: true,
            ..GrantSources::default()
        })
        .unwrap();
    let names: Vec<&str> = config.grants[before..]
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["a.example.com", "a.example.com-2", "127.0.0.1-8080"]
    );
    assert!(config.network.allow_private);
    assert_eq!(config.network.allow.len(), 2);
    assert_eq!(config.network.deny.len(), 2);
}

/// Whatever is written under `[authority.headers]` — a secret in the wrong shape, beside an
/// unknown key, as a number, in a list, or the whole table as a string — no error message
/// contains it, and none names a Rust type.
#[test]
fn no_error_under_headers_shows_the_value_or_a_rust_type() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunConfig, TestRunner};
    let shapes: &[&str] = &[
        "[authority.headers]\nauthorization = \"Bearer MARK\"\n",
        "[authority.headers]\nauthorization = { value = MARKNUM }\n",
        "[authority.headers]\nauthorization = { env = [\"MARK\"] }\n",
        "[authority.headers]\nauthorization = { valu = \"MARK\" }\n",
        "[authority.headers]\nauthorization = { value = \"MARK\", env = \"TOKEN\" }\n",
        "[authority.headers]\nauthorization = { prefix = { x = \"MARK\" } }\n",
        "[authority.headers]\nauthorization = [\"MARK\"]\n",
        "[authority.headers]\nauthorization = { value = \"MARK\\r\\n\" }\n",
        "[authority.headers]\nauthorization = MARKNUM\n",
        "[authority.headers]\nhost = { value = \"MARK\" }\n",
        "[authority.headers]\nauthorization = { env = \"Bearer MARK\" }\n",
        "headers = \"MARK\"\n",
        "headers = [\"MARK\"]\n",
    ];
    let mut runner = TestRunner::new(RunConfig {
        cases: 200,
        ..RunConfig::default()
    });
    let strategy = (
        0..shapes.len(),
        "[A-Za-z0-9_]{12,24}",
        100_000_000u64..999_999_999,
    );
    runner
        .run(&strategy, |(shape, mark, num)| {
            let mark = format!("S3CR{mark}");
            let body = shapes[shape]
                .replace("MARKNUM", &num.to_string())
                .replace("MARK", &mark);
            let text = format!(
                "version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://api.example.com\"\n{body}"
            );
            let error = Config::parse(&text, Path::new("m.toml"), &secrets())
                .err()
                .map(|e| e.to_string());
            let Some(error) = error else {
                return Err(TestCaseError::fail(format!("accepted: {text}")));
            };
            prop_assert!(!error.contains(&mark), "{error}");
            prop_assert!(!error.contains(&num.to_string()), "{error}");
            prop_assert!(!error.contains("struct"), "{error}");
            prop_assert!(!error.contains("Raw"), "{error}");
            prop_assert!(!error.contains("i64"), "{error}");
            Ok(())
        })
        .unwrap();
}

fn with_vars(
    text: &str,
    env: &[(&'static str, &'static str)],
    vars: &[&str],
) -> Result<Config, ConfigError> {
    let secrets = FakeSecrets {
        env: env.iter().copied().collect(),
        ..FakeSecrets::default()
    };
    let vars =
        urlcap::manifest::FlagVars::parse(&vars.iter().map(|v| v.to_string()).collect::<Vec<_>>())?;
    Config::parse_with(text, Path::new("conf/urlcap.toml"), &secrets, &vars)
}

const VARS: &str = "version = 1\n[[authority]]\nname = \"api\"\norigin = \"https://${API_HOST}\"\npaths = [\"/orgs/${ORG}/\", \"/v1/\"]\n";

#[test]
fn variables_in_origin_and_paths_come_from_flags_then_the_environment() {
    let env = [("API_HOST", "api.prod.example.com"), ("ORG", "acme")];
    let config = with_vars(VARS, &env, &[]).unwrap();
    let g = &config.grants[0];
    assert_eq!(g.origin.to_string(), "https://api.prod.example.com");
    assert_eq!(g.paths[0].as_str(), "/orgs/acme/");
    let config = with_vars(VARS, &env, &["API_HOST=api.staging.example.com:8443"]).unwrap();
    assert_eq!(
        config.grants[0].origin.to_string(),
        "https://api.staging.example.com:8443"
    );
    let uses: Vec<(String, String, String)> = config
        .variables
        .iter()
        .map(|u| (u.name.clone(), u.source.to_string(), u.at.clone()))
        .collect();
    assert_eq!(
        uses,
        [
            (
                "API_HOST".into(),
                "--var".into(),
                "conf/urlcap.toml:4:19".into()
            ),
            (
                "ORG".into(),
                "the environment".into(),
                "conf/urlcap.toml:5:17".into()
            ),
        ]
    );
}

/// An unset variable names its place and itself; a value can never carry a wildcard,
/// userinfo or path into an origin, is checked as if written literally, and never appears in
/// an error.
#[test]
fn variable_errors_name_the_place_and_never_show_the_value() {
    let err = with_vars(VARS, &[("API_HOST", "h.example.com")], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "conf/urlcap.toml:5:17: variable ORG is not set\n  help: set it in the environment or pass --var ORG=VALUE"
    );
    let org = [("ORG", "acme")];
    for (host, expect) in [
        ("*.sneaky-secret.com", "'*'"),
        ("user:sneaky-secret@h.com", "'@'"),
        ("h.com/sneaky-secret", "'/'"),
        ("h.com?sneaky-secret", "'?'"),
        ("sneaky-secret.com:99999", "out of range"),
        ("SNEAKY-SECRET..com", "${API_HOST}"),
    ] {
        let err = with_vars(VARS, &org, &[&format!("API_HOST={host}")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("conf/urlcap.toml:4:"), "{host}: {err}");
        assert!(err.contains(expect), "{host}: {err}");
        assert!(
            !err.to_lowercase().contains("sneaky-secret"),
            "{host}: {err}"
        );
    }
    // In a path, the value is checked as a path once in place.
    let err = with_vars(
        VARS,
        &[("API_HOST", "h.com"), ("ORG", "../sneaky-secret")],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("conf/urlcap.toml:5:") && err.contains("${ORG}") && !err.contains("sneaky"),
        "{err}"
    );
    // A variable anywhere else is not substituted: the name is not a valid name.
    let text = "version = 1\n[[authority]]\nname = \"${NAME}\"\norigin = \"https://a.com\"\n";
    assert!(with_vars(text, &[("NAME", "x")], &[]).is_err());
}
