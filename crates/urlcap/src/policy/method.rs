//! HTTP methods and method sets. Methods are compared exactly and case-sensitively, as RFC 9110
//! says they are: `get` is not `GET`.

use std::fmt;

/// A syntactically valid HTTP method (an RFC 9110 token), never CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(String);

/// The methods a grant allows when it names none.
pub(crate) const DEFAULT_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Method {
    /// A method exactly as written (methods are case-sensitive: `get` is not `GET`), if it is
    /// an HTTP token; CONNECT never is a method here.
    pub fn parse(s: &str) -> Result<Method, String> {
        if !is_token(s) {
            return Err(format!("method {s:?} is not an HTTP token"));
        }
        if s == "CONNECT" {
            return Err("CONNECT opens a tunnel to anywhere and is never allowed".into());
        }
        Ok(Method(s.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A small set of methods, kept sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodSet(Vec<Method>);

impl MethodSet {
    /// The set of `methods`, sorted and without repeats (so subset checks are one merge pass).
    pub fn new(methods: impl IntoIterator<Item = Method>) -> MethodSet {
        let mut v: Vec<Method> = methods.into_iter().collect();
        v.sort();
        v.dedup();
        MethodSet(v)
    }

    pub(crate) fn default_set() -> MethodSet {
        MethodSet::new(DEFAULT_METHODS.iter().map(|m| Method(m.to_string())))
    }

    pub(crate) fn contains(&self, method: &Method) -> bool {
        self.0.iter().any(|m| m == method)
    }

    /// Both sets are sorted, so one merge pass decides: O(n + m).
    pub(crate) fn is_subset_of(&self, other: &MethodSet) -> bool {
        let mut theirs = other.0.iter();
        self.0.iter().all(|m| theirs.by_ref().any(|o| o == m))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Method> {
        self.0.iter()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(Method::as_str).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_tokens_and_never_connect() {
        assert!(Method::parse("GET").is_ok());
        assert!(Method::parse("PROPFIND").is_ok());
        for bad in ["", "GET ", "G\tET", "GE\r\nT", "CONNECT", "GÉT", "(GET)"] {
            assert!(Method::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sets_compare_exactly() {
        let set = MethodSet::new([Method::parse("GET").unwrap()]);
        assert!(set.contains(&Method::parse("GET").unwrap()));
        assert!(!set.contains(&Method::parse("get").unwrap()));
        assert!(set.is_subset_of(&MethodSet::default_set()));
        assert!(!MethodSet::default_set().is_subset_of(&set));
    }
}
