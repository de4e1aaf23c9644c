//! Byte sizes in the configuration: `1MiB`, `512KiB`, `64KB`, or a plain number of bytes.

use super::decode::{scalar, Decode};
use super::diag::Problems;
use super::yaml::Node;

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

/// Parse `1MiB`, `512KiB`, `2GiB` (powers of 1024), `64KB`, `1MB` (powers of 1000), `100B` or
/// `1048576`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "expected a size such as 1MiB, 64KiB or 4096, found `{text}`"
        ));
    }
    let (number, unit) = t.split_at(digits);
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use B, KiB, MiB, GiB, KB, MB or GB"
            ))
        }
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl Decode for ByteSize {
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
        let text = scalar(node, path, "a size such as 1MiB", problems)?;
        match parse_size(text) {
            Ok(n) => Some(ByteSize(n)),
            Err(e) => {
                problems.add(node.pos(), path, e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64KB"), Ok(64_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10 B"), Ok(10));
        for bad in ["", "MiB", "1.5MiB", "1 mib", "-1", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
