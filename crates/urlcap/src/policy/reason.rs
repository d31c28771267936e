//! Stable reason codes.
//!
//! Every denial anywhere in urlcap carries exactly one [`Reason`]. Its snake_case code is a
//! contract: it appears in audit records, in `urlcap explain --json` and in guest errors, and
//! users write alerting rules against it. Add codes; never rename or reuse one.

use std::fmt;

macro_rules! reasons {
    ($($variant:ident => $code:literal, $summary:literal;)*) => {
        /// Why a request (or a derivation) was denied.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $(#[doc = $summary] $variant,)*
        }

        impl Reason {
            /// Every reason, in documentation order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable snake_case code.
            pub fn code(self) -> &'static str {
                match self { $(Reason::$variant => $code,)* }
            }

            /// One line saying what the code means, for docs and `--help`.
            pub fn summary(self) -> &'static str {
                match self { $(Reason::$variant => $summary,)* }
            }

        }
    };
}

reasons! {
    MalformedUrl => "malformed_url", "The URL does not parse, is not of the form scheme://host/path, or has a fragment.";
    ControlCharacter => "control_character", "The URL or a header contains a control character, space or other invisible character.";
    Userinfo => "userinfo", "The URL carries userinfo (user:password@); credentials belong in host-injected headers.";
    UnsupportedScheme => "unsupported_scheme", "The scheme is not http or https.";
    InvalidPort => "invalid_port", "The port is empty, zero, out of range or not plain decimal (+443, 080, 443:80).";
    InvalidHost => "invalid_host", "The host is empty, a pattern, percent-encoded, has a trailing dot or illegal characters.";
    NonCanonicalPath => "non_canonical_path", "The path has dot segments, encoded slashes or backslashes, empty segments, ';', NUL, overlong UTF-8 or needless escapes.";
    InvalidMethod => "invalid_method", "The method is not an HTTP token, or is CONNECT.";
    InvalidHeader => "invalid_header", "A header name is not a token, or a value contains CR, LF or NUL.";
    HeadersTooLarge => "headers_too_large", "The guest sent more than 100 headers, or more than 64 KiB of header names and values.";
    ForbiddenHeader => "forbidden_header", "The guest set a header that only the host may set (Host, hop-by-hop, Proxy-*, or one the grant injects).";
    NoAuthority => "no_authority", "No preopened authority grants this scheme, host and port.";
    PathNotAllowed => "path_not_allowed", "The authority grants this origin but not this path.";
    MethodNotAllowed => "method_not_allowed", "The authority grants this path but not this method.";
    RequestBodyTooLarge => "request_body_too_large", "The request body exceeds the authority's max_request_body.";
    BudgetExhausted => "budget_exhausted", "The authority, or one of its ancestors, has spent its max_requests.";
    RateLimited => "rate_limited", "The authority, or one of its ancestors, is over its rate.";
    Expired => "expired", "The authority, or one of its ancestors, has expired.";
    Revoked => "revoked", "The authority, or one of its ancestors, was revoked.";
    IpDenied => "ip_denied", "The address is in a special-purpose range or in deny_ips, and no exception allows it.";
    DnsFailure => "dns_failure", "The granted name did not resolve to any address.";
    ConnectFailed => "connect_failed", "No vetted address of the granted host accepted a connection.";
    TlsFailure => "tls_failure", "The TLS handshake failed, or the certificate is not valid for the granted host.";
    Timeout => "timeout", "A connect, first-byte, between-bytes or total timeout expired.";
    ResponseBodyTooLarge => "response_body_too_large", "The response body exceeds the authority's max_response_body.";
    UpstreamError => "upstream_error", "The granted server broke the exchange (reset, malformed response, protocol error).";
    ConcurrencyLimit => "concurrency_limit", "Too many requests are in flight for the sandbox or the authority.";
    InvalidComponent => "invalid_component", "A nested sandbox was given bytes that are not a runnable command component.";
    NestingLimit => "nesting_limit", "A nested sandbox would exceed the host's nesting depth, or its parent has no time left.";
    AttenuationWidens => "attenuation_widens", "A derived authority would grant something its parent does not.";
    InvalidAttenuation => "invalid_attenuation", "A derivation request is malformed (bad path prefix, method, host or limit).";
    AuditUnavailable => "audit_unavailable", "The audit log cannot be written, so nothing more is allowed and the sandbox is stopped.";
    HandleLimit => "handle_limit", "The sandbox already holds or keeps alive as many derived handles as it may, or the derivation would be too deep.";
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for &reason in Reason::ALL {
            let code = reason.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
    }
}
