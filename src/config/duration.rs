//! Human durations in configuration: `250ms`, `2s`, `1m`, `1h`, `1m30s`.

use std::time::Duration;

/// Parse a duration made of one or more `<integer><unit>` parts (units: ms, s, m, h).
/// A bare number is rejected: `timeout: 5` could mean seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = "expected a duration such as 250ms, 2s, 1m or 1h";
    let s = text.trim();
    if s.is_empty() {
        return Err(expected.into());
    }
    if s.contains(char::is_whitespace) {
        return Err(format!("`{text}`: no spaces allowed; {expected}"));
    }
    let bytes = s.as_bytes();
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("`{text}`: {expected}"));
        }
        if bytes.get(i) == Some(&b'.') {
            return Err(format!(
                "`{text}`: fractions are not accepted; use a smaller unit (1500ms, not 1.5s)"
            ));
        }
        let number: u64 = s[start..i]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let part = match &s[unit_start..i] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "" => return Err(format!("`{text}`: missing unit; {expected}")),
            other => return Err(format!("`{text}`: unknown unit `{other}`; {expected}")),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_ambiguous_or_broken() {
        for bad in ["5", "", "s", "2 s", "1.5s", "3d", "-1s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
