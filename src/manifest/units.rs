//! Sizes and durations as people write them in manifests (`"10MiB"`, `"30s"`), parsed by
//! `bytesize` and `humantime` rather than by hand.

use std::time::Duration;
use toml::Value;

/// A size: a string with a unit (`"64MiB"`, `"1 MB"`) or a whole number of bytes.
pub fn size(value: &Value) -> Result<u64, String> {
    match value {
        Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        Value::Integer(n) => Err(format!("size {n} is negative")),
        Value::String(s) => {
            if s.trim_start().starts_with('-') {
                return Err(format!("size {s:?} is negative"));
            }
            s.parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|_| format!("{s:?} is not a size; write e.g. \"512KiB\", \"10MiB\" or a number of bytes"))
        }
        other => Err(format!(
            "expected a size such as \"10MiB\", found {}",
            other.type_str()
        )),
    }
}

/// A positive duration with a unit (`"30s"`, `"1m 30s"`, `"250ms"`).
pub fn duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(s) => match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => Err(format!(
                "duration {s:?} is zero; remove the key for no limit"
            )),
            Ok(d) => Ok(d),
            Err(e) => Err(format!(
                "{s:?} is not a duration ({e}); write e.g. \"10s\", \"500ms\" or \"2m\""
            )),
        },
        Value::Integer(n) => Err(format!("{n} has no unit; write e.g. \"{n}s\"")),
        other => Err(format!(
            "expected a duration such as \"10s\", found {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(&Value::String("64MiB".into())), Ok(64 << 20));
        assert_eq!(size(&Value::String("1 KiB".into())), Ok(1024));
        assert_eq!(size(&Value::Integer(10)), Ok(10));
        assert!(size(&Value::Integer(-1)).is_err());
        assert!(size(&Value::String("-1MiB".into())).is_err());
        assert!(size(&Value::String("lots".into())).is_err());
        assert!(size(&Value::Boolean(true)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration(&Value::String("30s".into())),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            duration(&Value::String("1m 30s".into())),
            Ok(Duration::from_secs(90))
        );
        assert!(duration(&Value::String("0s".into())).is_err());
        assert!(duration(&Value::Integer(30)).is_err());
        assert!(duration(&Value::String("soon".into())).is_err());
    }
}
