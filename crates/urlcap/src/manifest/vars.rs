//! Variables in grants: `${NAME}` in an authority's `origin` and `paths`, so one manifest
//! serves several environments (`origin = "https://${API_HOST}"`).
//!
//! A value comes from `--var NAME=VALUE`, else from the environment; an unset variable is an
//! error naming the place and the variable. The text with every value in place is then checked
//! as if it had been written so — and a variable in an `origin` may hold only host and port
//! characters, so no value can turn a host into a wildcard, add userinfo, or carry a path,
//! query or fragment into an origin. Values are never shown in errors: a message about
//! substituted text names the variables instead (`https://${API_HOST}`).

use super::SecretStore;
use crate::secret::Secret;
use std::collections::BTreeMap;

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableSource {
    /// `--var NAME=VALUE`.
    Flag,
    /// The process environment.
    Environment,
}

impl std::fmt::Display for VariableSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VariableSource::Flag => "--var",
            VariableSource::Environment => "the environment",
        })
    }
}

/// One `${NAME}` in a manifest, resolved: for `check` to show where each value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableUse {
    /// The variable's name (never its value: that may be a secret-looking host).
    pub name: String,
    /// Whether `--var` or the environment gave the value, so a surprise can be traced.
    pub source: VariableSource,
    /// `file:line:column` of the `${`.
    pub at: String,
}

/// `--var` values, which win over the environment. Values print as `[redacted]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagVars(BTreeMap<String, Secret>);

impl FlagVars {
    /// Parse `NAME=VALUE` flags. Errors name the flag and never show a value.
    pub fn parse(flags: &[String]) -> Result<FlagVars, super::ConfigError> {
        let mut vars = BTreeMap::new();
        for flag in flags {
            let fail = |shown: &str, message: String| {
                super::ConfigError::flag(
                    "--var",
                    shown,
                    message,
                    Some("e.g. --var API_HOST=api.staging.example.com".into()),
                )
            };
            let Some((name, value)) = flag.split_once('=') else {
                return Err(fail(
                    "(not shown)",
                    "expected NAME=VALUE, with an '='".into(),
                ));
            };
            let shown = format!("{name}=(value not shown)");
            if !super::is_env_name(name) {
                return Err(fail(
                    &shown,
                    "a variable name is letters, digits and '_', not starting with a digit".into(),
                ));
            }
            if vars
                .insert(name.to_string(), Secret::new(value.as_bytes().to_vec()))
                .is_some()
            {
                return Err(fail(&shown, format!("{name} is given twice")));
            }
        }
        Ok(FlagVars(vars))
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| String::from_utf8_lossy(v.expose()).into_owned())
    }
}

/// What a substituted value may be part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Context {
    /// An `origin`: only host and port characters.
    Origin,
    /// A path prefix: anything, checked as a path once in place.
    Path,
}

/// Text with its variables in place, and what was substituted (for messages and `check`).
pub(super) struct Expanded {
    pub text: String,
    /// (name, value, source, byte offset of `${` in the raw text).
    pub uses: Vec<(String, String, VariableSource, usize)>,
}

impl Expanded {
    /// `message` with every substituted value replaced by its `${NAME}`, as written and as
    /// `{:?}` or the host parser (lowercase) would show it.
    pub(crate) fn hide_values(&self, message: &str) -> String {
        let mut out = message.to_string();
        let mut uses: Vec<&(String, String, VariableSource, usize)> =
            self.uses.iter().filter(|u| !u.1.is_empty()).collect();
        // Longer values first, so one that contains another is hidden whole.
        uses.sort_by_key(|u| std::cmp::Reverse(u.1.len()));
        for (name, value, _, _) in uses {
            let placeholder = format!("${{{name}}}");
            let quoted = format!("{value:?}");
            let forms = [
                quoted[1..quoted.len() - 1].to_string(),
                value.clone(),
                value.to_ascii_lowercase(),
            ];
            for form in forms {
                out = out.replace(&form, &placeholder);
            }
        }
        out
    }
}

/// The variable problem at byte `offset` of the raw text: message and help.
pub(super) struct VarError {
    pub offset: usize,
    pub message: String,
    pub help: Option<String>,
}

/// Substitute every `${NAME}` in `raw`.
pub(super) fn expand(
    raw: &str,
    context: Context,
    flags: &FlagVars,
    secrets: &dyn SecretStore,
) -> Result<Expanded, VarError> {
    let mut text = String::with_capacity(raw.len());
    let mut uses = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find("${") {
        let offset = raw.len() - rest.len() + at;
        text.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(VarError {
                offset,
                message: "`${` is not closed by `}`".into(),
                help: Some("a variable is written ${NAME}".into()),
            });
        };
        let name = &after[..end];
        if !super::is_env_name(name) {
            return Err(VarError {
                offset,
                message: format!("`${{{name}}}` is not a variable name"),
                help: Some(
                    "a variable name is letters, digits and '_', not starting with a digit".into(),
                ),
            });
        }
        let (value, source) = match flags.get(name) {
            Some(v) => (v, VariableSource::Flag),
            None => match secrets.env(name) {
                Some(v) => (v, VariableSource::Environment),
                None => {
                    return Err(VarError {
                        offset,
                        message: format!("variable {name} is not set"),
                        help: Some(format!(
                            "set it in the environment or pass --var {name}=VALUE"
                        )),
                    })
                }
            },
        };
        if context == Context::Origin {
            let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_:[]".contains(c);
            if let Some(c) = value.chars().find(|c| !allowed(*c)) {
                return Err(VarError {
                    offset,
                    message: format!(
                        "variable {name} (from {source}) holds {c:?}, which a variable in an origin may not (its value is not shown)"
                    ),
                    help: Some(
                        "a variable in an origin holds a host, a port or both (letters, digits, '.', '-', '_', ':', '[', ']'); a wildcard, userinfo or path must be written in the manifest itself".into(),
                    ),
                });
            }
        }
        text.push_str(&value);
        uses.push((name.to_string(), value, source, offset));
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    Ok(Expanded { text, uses })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    struct Env;
    impl SecretStore for Env {
        fn env(&self, name: &str) -> Option<String> {
            match name {
                "HOST" => Some("api.example.com".into()),
                "SMUGGLE" => Some("evil.example/x".into()),
                _ => None,
            }
        }
        fn read_file(&self, _: &Path, _: u64) -> std::io::Result<Vec<u8>> {
            unreachable!()
        }
    }

    #[test]
    fn flags_win_over_the_environment_and_unset_names_the_variable() {
        let flags = FlagVars::parse(&["HOST=staging.example.com".into()]).unwrap();
        let e = expand("https://${HOST}:8443", Context::Origin, &flags, &Env)
            .ok()
            .unwrap();
        assert_eq!(e.text, "https://staging.example.com:8443");
        assert_eq!(e.uses[0].2, VariableSource::Flag);
        assert_eq!(e.uses[0].3, 8);
        let e = expand("/${HOST}/v1/", Context::Path, &FlagVars::default(), &Env)
            .ok()
            .unwrap();
        assert_eq!(
            (e.text.as_str(), e.uses[0].2),
            ("/api.example.com/v1/", VariableSource::Environment)
        );
        let err = expand("/a/${NOPE}/", Context::Path, &flags, &Env)
            .err()
            .unwrap();
        assert_eq!(
            (err.offset, err.message.as_str()),
            (3, "variable NOPE is not set")
        );
        for bad in ["${HOST", "${1X}", "${}"] {
            assert!(expand(bad, Context::Path, &flags, &Env).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_origin_variable_holds_only_a_host_and_port_and_is_never_shown() {
        let err = expand(
            "https://${SMUGGLE}",
            Context::Origin,
            &FlagVars::default(),
            &Env,
        )
        .err()
        .unwrap();
        assert!(
            err.message.contains("'/'") && !err.message.contains("evil"),
            "{}",
            err.message
        );
        for value in ["*.example.com", "u:p@h", "h/x", "h?q", "h#f", "h x"] {
            let flags = FlagVars::parse(&[format!("V={value}")]).unwrap();
            assert!(
                expand("https://${V}", Context::Origin, &flags, &Env).is_err(),
                "{value}"
            );
        }
        let e = expand(
            "https://${HOST}",
            Context::Origin,
            &FlagVars::default(),
            &Env,
        )
        .ok()
        .unwrap();
        assert_eq!(
            e.hide_values("host \"api.example.com\" is bad"),
            "host \"${HOST}\" is bad"
        );
    }

    #[test]
    fn bad_flags_never_show_the_value() {
        for bad in ["NOVALUE", "1X=secret-value", "A-B=secret-value"] {
            let e = FlagVars::parse(&[bad.into()]).unwrap_err().to_string();
            assert!(!e.contains("secret-value"), "{e}");
        }
        let e = FlagVars::parse(&["A=secret-1".into(), "A=secret-2".into()]).unwrap_err();
        assert!(!e.to_string().contains("secret-"), "{e}");
        assert!(
            format!("{:?}", FlagVars::parse(&["A=secret-1".into()]).unwrap()).contains("redacted")
        );
    }
}
