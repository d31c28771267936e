//! Canonical paths and whole-segment path prefixes.
//!
//! A path is *canonical* when every server, proxy and framework on the way would read it the
//! same way. We deny, rather than normalise, everything that parsers disagree about: dot
//! segments (raw or encoded), encoded `/` and `\`, backslashes, empty segments, `;` parameters,
//! NUL and control bytes, malformed or needless percent-escapes, and byte sequences that are not
//! UTF-8 (which is how overlong encodings such as `%c0%ae` are caught).

use std::fmt;

/// Why a path is not canonical (detail for a `non_canonical_path` denial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(pub String);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// After one decoding, does a segment still hold an escape of '.', '/', '\\' or NUL
/// (`%252e` -> `%2e`)? Servers that decode twice would read a separator there.
fn is_double_encoded_separator(decoded: &[u8]) -> bool {
    decoded.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                [w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()],
                [b'2', b'e'] | [b'2', b'f'] | [b'5', b'c'] | [b'0', b'0']
            )
    })
}

/// Check that `path` (as the guest wrote it, before any parser touched it) is canonical.
pub(crate) fn check_canonical_path(path: &str) -> Result<(), PathError> {
    let err = |m: String| Err(PathError(m));
    if !path.starts_with('/') {
        return err(format!("path {path:?} must start with '/'"));
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut decoded_path = Vec::with_capacity(path.len());
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() && i != last {
            return err(format!("empty segment (//) in {path:?}"));
        }
        if segment.contains(';') {
            return err(format!("';' in segment {segment:?}: path parameters are read differently by different servers"));
        }
        if segment.contains('\\') {
            return err(format!("backslash in segment {segment:?}"));
        }
        let bytes = segment.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut j = 0;
        while j < bytes.len() {
            let b = bytes[j];
            if b != b'%' {
                decoded.push(b);
                j += 1;
                continue;
            }
            let (Some(hi), Some(lo)) = (
                bytes.get(j + 1).and_then(|&h| hex(h)),
                bytes.get(j + 2).and_then(|&l| hex(l)),
            ) else {
                return err(format!("malformed percent-escape in segment {segment:?}"));
            };
            let byte = hi << 4 | lo;
            match byte {
                b'/' => return err(format!("encoded '/' (%2f) in segment {segment:?}")),
                b'\\' => return err(format!("encoded '\\' (%5c) in segment {segment:?}")),
                0 => return err(format!("encoded NUL (%00) in segment {segment:?}")),
                b if b < 0x20 || b == 0x7f => return err(format!("encoded control byte in segment {segment:?}")),
                b if is_unreserved(b) => {
                    return err(format!(
                        "needless escape %{:02X} of '{}' in segment {segment:?}; write the character itself",
                        b, b as char
                    ))
                }
                _ => decoded.push(byte),
            }
            j += 3;
        }
        if decoded == b"." || decoded == b".." {
            return err(format!("dot segment {segment:?} in {path:?}"));
        }
        if is_double_encoded_separator(&decoded) {
            return err(format!(
                "double-encoded '.', '/', '\\' or NUL in segment {segment:?}"
            ));
        }
        decoded_path.push(b'/');
        decoded_path.extend_from_slice(&decoded);
    }
    if std::str::from_utf8(&decoded_path).is_err() {
        return err(format!(
            "{path:?} decodes to bytes that are not UTF-8 (overlong or invalid encoding)"
        ));
    }
    Ok(())
}

/// A whole-segment path prefix from a grant.
///
/// `/v1/` grants `/v1/` and everything below it, but not `/v1` or `/v10`.
/// `/v1` grants `/v1` itself and everything below `/v1/`, but not `/v10`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPrefix(String);

impl PathPrefix {
    /// The prefix that grants every path.
    pub(crate) fn root() -> PathPrefix {
        PathPrefix("/".to_string())
    }

    /// Parse a prefix; it must be a canonical path made of plain ASCII.
    pub fn parse(prefix: &str) -> Result<PathPrefix, PathError> {
        if let Some(c) = prefix.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(PathError(format!(
                "path prefix {prefix:?} contains {c:?}; percent-encode it"
            )));
        }
        if prefix.contains(['?', '#']) {
            return Err(PathError(format!(
                "path prefix {prefix:?} may not contain '?' or '#'"
            )));
        }
        check_canonical_path(prefix)?;
        Ok(PathPrefix(prefix.to_string()))
    }

    /// The prefix as granted (canonical, starting with `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this prefix grant the canonical `path`?
    pub(crate) fn grants(&self, path: &str) -> bool {
        let p = self.0.as_str();
        if p.ends_with('/') {
            path.starts_with(p)
        } else {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }
    }

    /// Does this prefix grant every path that `narrower` grants? (Also the plain definition
    /// [`PathPrefix::covered_by_any`] is tested against.)
    pub(crate) fn covers(&self, narrower: &PathPrefix) -> bool {
        self.grants(&narrower.0)
    }

    /// Is this prefix covered by one of `prefixes` (given as a set of their texts)? Only the
    /// few prefixes that could cover it are looked up — itself, and its text cut before and
    /// after each `/` — so the cost depends on this prefix's length, not on how many
    /// `prefixes` there are. Same answer as `prefixes.iter().any(|q| q.covers(self))`.
    pub(crate) fn covered_by_any(&self, prefixes: &rustc_hash::FxHashSet<&str>) -> bool {
        let p = self.0.as_str();
        prefixes.contains(p)
            || p.match_indices('/')
                .any(|(i, _)| prefixes.contains(&p[..=i]) || (i > 0 && prefixes.contains(&p[..i])))
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_by_any_agrees_with_covers() {
        let all = [
            "/", "/v1", "/v1/", "/v1/a", "/v1/a/", "/v10", "/v1/ab", "/v2/a", "/a/b/c", "/a/b",
            "/a/", "/a",
        ];
        let prefixes: Vec<PathPrefix> = all.iter().map(|p| PathPrefix::parse(p).unwrap()).collect();
        for mask in 0u32..(1 << 6) {
            let parents: Vec<&PathPrefix> = prefixes
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << (i % 6)) != 0 && i % 2 == (mask as usize) % 2)
                .map(|(_, p)| p)
                .collect();
            let set: rustc_hash::FxHashSet<&str> = parents.iter().map(|p| p.as_str()).collect();
            for child in &prefixes {
                assert_eq!(
                    child.covered_by_any(&set),
                    parents.iter().any(|q| q.covers(child)),
                    "{child} under {set:?}"
                );
            }
        }
    }

    #[test]
    fn whole_segment_matching() {
        let cases = [
            ("/v1/", "/v1/x", true),
            ("/v1/", "/v1/", true),
            ("/v1/", "/v1", false),
            ("/v1/", "/v10", false),
            ("/v1/", "/v10/x", false),
            ("/v1", "/v1", true),
            ("/v1", "/v1/x", true),
            ("/v1", "/v10", false),
            ("/v1", "/v1.json", false),
            ("/", "/anything/at/all", true),
        ];
        for (prefix, path, expected) in cases {
            assert_eq!(
                PathPrefix::parse(prefix).unwrap().grants(path),
                expected,
                "{prefix} ~ {path}"
            );
        }
    }

    #[test]
    fn covers_is_consistent_with_grants() {
        let p = |s| PathPrefix::parse(s).unwrap();
        assert!(p("/v1").covers(&p("/v1/")));
        assert!(p("/v1/").covers(&p("/v1/x")));
        assert!(!p("/v1/").covers(&p("/v1")));
        assert!(!p("/v1").covers(&p("/v10")));
        assert!(p("/").covers(&p("/a")));
    }

    #[test]
    fn non_canonical_paths_are_rejected() {
        for path in [
            "",
            "v1",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/..",
            "/.",
            "/a/%2e%2e/b",
            "/a/%2E/b",
            "/a/.%2e/",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a;b",
            "/a/b;jsessionid=1",
            "/a%00",
            "/a%0a",
            "/%c0%ae%c0%ae/",
            "/%e0%80%ae",
            "/%ff",
            "/a%zz",
            "/a%2",
            "/%41dmin",
        ] {
            assert!(
                check_canonical_path(path).is_err(),
                "{path:?} should be rejected"
            );
        }
    }

    #[test]
    fn canonical_paths_are_accepted() {
        for path in [
            "/",
            "/v1/",
            "/v1/x",
            "/a/b.json",
            "/caf%C3%A9",
            "/a%20b",
            "/%25",
            "/a/b/",
            "/..a",
            "/a..",
            "/.well-known/x",
        ] {
            assert!(
                check_canonical_path(path).is_ok(),
                "{path:?} should be accepted"
            );
        }
    }

    #[test]
    fn prefixes_must_be_plain_ascii() {
        assert!(PathPrefix::parse("/café").is_err());
        assert!(PathPrefix::parse("/a b").is_err());
        assert!(PathPrefix::parse("/a?b").is_err());
    }
}
