//! The `--allow SPEC` grammar: `[NAME=][METHODS ]URL`.
//!
//! - `https://api.example.com`: every path and default method of that origin.
//! - `gh=GET,HEAD https://api.github.com/repos/`: named `gh`, two methods, one path prefix.
//! - `http://127.0.0.1:8080/`: an explicit port (loopback still needs `--allow-ip`).

use crate::policy::{
    check_name, grant_from_spec_url, Method, MethodSet, OriginPattern, PathPrefix,
};

/// One parsed `--allow` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowSpec {
    /// `NAME=`, if given; otherwise the grant is named after its host.
    pub name: Option<String>,
    /// `METHODS`, if given; otherwise the default set.
    pub methods: Option<MethodSet>,
    /// The URL's scheme, host (or `*.suffix`) and port.
    pub origin: OriginPattern,
    /// The URL's path as the one prefix (`/` when it has none).
    pub paths: Vec<PathPrefix>,
}

pub(crate) const SPEC_HELP: &str = "expected [NAME=][METHODS ]URL, e.g. `https://api.example.com` or `gh=GET,HEAD https://api.github.com/repos/`";

impl AllowSpec {
    /// Parse one `--allow` value, or say what is wrong with it (the caller adds
    /// `SPEC_HELP` and the flag's name).
    pub fn parse(spec: &str) -> Result<AllowSpec, String> {
        // NAME= is everything before the first '=', if that holds no space and no "://".
        let (name, rest) = match spec.split_once('=') {
            Some((name, rest)) if !name.contains(' ') && !name.contains("://") => {
                (Some(name), rest)
            }
            _ => (None, spec),
        };
        if let Some(name) = name {
            check_name(name)?;
        }
        // METHODS is everything before the one space; the URL itself never holds a space.
        let (methods, url) = match rest.split_once(' ') {
            Some((list, url)) => {
                if list.is_empty() {
                    return Err("empty method list before the URL".into());
                }
                let parsed: Result<Vec<Method>, String> =
                    list.split(',').map(Method::parse).collect();
                (Some(MethodSet::new(parsed?)), url)
            }
            None => (None, rest),
        };
        let (origin, paths) = grant_from_spec_url(url)?;
        Ok(AllowSpec {
            name: name.map(str::to_string),
            methods,
            origin,
            paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let s = AllowSpec::parse("https://api.example.com").unwrap();
        assert_eq!((s.name, s.methods, s.paths[0].as_str()), (None, None, "/"));
        let s = AllowSpec::parse("gh=GET,HEAD https://api.github.com/repos/").unwrap();
        assert_eq!(s.name.as_deref(), Some("gh"));
        assert_eq!(s.methods.unwrap().to_string(), "GET,HEAD");
        assert_eq!(s.paths[0].as_str(), "/repos/");
        let s = AllowSpec::parse("api=https://api.example.com/v1").unwrap();
        assert_eq!((s.name.as_deref(), s.methods), (Some("api"), None));
        let s = AllowSpec::parse("POST http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (s.name, s.methods.unwrap().to_string(), s.origin.port),
            (None, "POST".to_string(), 8080)
        );
        let s = AllowSpec::parse("https://*.example.com/").unwrap();
        assert_eq!(s.origin.to_string(), "https://*.example.com");
    }

    #[test]
    fn bad_specs() {
        for bad in [
            "",
            "api.example.com",
            "GET  https://a.com",
            "GET, HEAD https://a.com",
            "a b=GET https://a.com",
            "bad/name=https://a.com",
            "GET https://a.com/?q",
            "https://a.com/#f",
            "https://u@a.com",
            "CONNECT https://a.com",
            "https://a.com/../x",
            "ftp://a.com",
            "https://a.com:99999",
            "https://*.com",
        ] {
            assert!(AllowSpec::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
