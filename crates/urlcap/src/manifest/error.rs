//! Configuration errors that say where (file:line:column, or which flag) and what to do.

use std::fmt;

/// A problem with the manifest or the grant flags. Always fatal: urlcap never runs a guest
/// under a policy it could not read exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A problem at a place in a manifest file.
    Manifest {
        /// The manifest's path as given.
        file: String,
        /// 1-based line, so editors can jump to it.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
        /// What to write instead (the nearest valid key, the accepted forms), when known.
        help: Option<String>,
    },
    /// A problem with one command-line flag's value.
    Flag {
        /// The flag, e.g. `--allow`.
        flag: &'static str,
        /// The value given, with any userinfo removed (it may hold a password).
        value: String,
        /// What is wrong.
        message: String,
        /// What to write instead, when known.
        help: Option<String>,
    },
    /// The manifest (or a secret file it names) could not be read.
    Io {
        /// The file that could not be read.
        file: String,
        /// Why (the system's error, or what was wrong with what was read).
        message: String,
    },
}

impl ConfigError {
    /// An error at byte `offset` of `text` (the contents of `file`).
    pub(crate) fn at(
        file: &str,
        text: &str,
        offset: usize,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        let (line, column) = line_column(text, offset);
        ConfigError::Manifest {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
            help,
        }
    }

    /// An error in the value of `flag`; the value and message are scrubbed of userinfo
    /// before they are kept, so no printing of the error can leak a password.
    pub fn flag(
        flag: &'static str,
        value: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        ConfigError::Flag {
            flag,
            // Userinfo in a URL flag (`https://u:SECRET@host/`) is never echoed, neither in
            // the value shown nor quoted inside the message.
            value: scrub(value, value),
            message: scrub(&message.into(), value),
            help,
        }
    }
}

/// `text` with every word of `value` that holds a `@` (possibly userinfo) replaced by its
/// redacted form, as written and as `{:?}` would quote it.
fn scrub(text: &str, value: &str) -> String {
    let mut out = text.to_string();
    for word in value.split_whitespace().filter(|w| w.contains('@')) {
        let redacted = crate::audit::redact_url(word);
        let redacted = if redacted == word {
            "[redacted]".to_string()
        } else {
            redacted
        };
        let quoted = format!("{word:?}");
        let quoted = &quoted[1..quoted.len() - 1];
        out = out.replace(quoted, &redacted).replace(word, &redacted);
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let help = match self {
            ConfigError::Manifest {
                file,
                line,
                column,
                message,
                help,
            } => {
                write!(f, "{file}:{line}:{column}: {message}")?;
                help
            }
            ConfigError::Flag {
                flag,
                value,
                message,
                help,
            } => {
                write!(f, "{flag} {value:?}: {message}")?;
                help
            }
            ConfigError::Io { file, message } => return write!(f, "{file}: {message}"),
        };
        match help {
            Some(help) => write!(f, "\n  help: {help}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 7), (2, 4));
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 999), (3, 2));
    }
}
