//! Sizes and durations as people write them in manifests (`"10MiB"`, `"30s"`), parsed by
//! `bytesize` and `humantime` rather than by hand.

use std::time::Duration;
use toml::Value;

/// The largest size a manifest may name: far beyond any body or memory the host can honour,
/// and far below where arithmetic on it could saturate.
pub(crate) const MAX_SIZE: u64 = 1 << 50;
/// The longest duration a manifest may name.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A size: a string with a unit (`"64MiB"`, `"1 MB"`) or a whole number of bytes, at most
/// [`MAX_SIZE`] (1 PiB); larger is an error, never clamped.
pub(crate) fn size(value: &Value) -> Result<u64, String> {
    let bytes = unbounded_size(value)?;
    if bytes > MAX_SIZE {
        return Err(format!(
            "size {} is out of range; sizes are from 0 to 1 PiB ({MAX_SIZE} bytes)",
            shown(value)
        ));
    }
    Ok(bytes)
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn unbounded_size(value: &Value) -> Result<u64, String> {
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
pub(crate) fn duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(s) => match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => Err(format!(
                "duration {s:?} is zero; remove the key for no limit"
            )),
            Ok(d) if d > MAX_DURATION => Err(format!(
                "duration {s:?} is out of range; durations are from 1ns to 365 days (remove the key for no limit)"
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

    /// Out of range is an error naming the range, never a clamped value.
    #[test]
    fn out_of_range_values_are_refused_not_clamped() {
        let e = size(&Value::String("99999999999999 EiB".into())).unwrap_err();
        assert!(e.contains("from 0 to 1 PiB"), "{e}");
        assert!(size(&Value::String("2 PiB".into())).is_err());
        assert_eq!(size(&Value::String("1 PiB".into())), Ok(MAX_SIZE));
        assert!(size(&Value::Integer(i64::MAX)).is_err());
        let e = duration(&Value::String("400days".into())).unwrap_err();
        assert!(e.contains("to 365 days"), "{e}");
        assert!(duration(&Value::String("500000000000years".into())).is_err());
        assert_eq!(duration(&Value::String("365days".into())), Ok(MAX_DURATION));
        let e = crate::policy::Rate::parse("1/400days").unwrap_err();
        assert!(e.contains("at most 365 days"), "{e}");
        assert!(crate::policy::Rate::parse("1/500000000000years").is_err());
        assert!(crate::policy::Rate::parse("10/365days").is_ok());
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
