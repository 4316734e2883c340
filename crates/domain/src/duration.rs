//! Durations as operators write them in the configuration: `500ms`, `30s`, `10m`, `2h`,
//! `1d`, or several of these together (`1h30m`).

use std::time::Duration;

/// Parses `text` as a duration; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("`{text}` is not a duration; write it as 500ms, 30s, 10m, 2h or 1d (or 1h30m)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let unit = match unit {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        let part = u32::try_from(number)
            .ok()
            .and_then(|number| unit.checked_mul(number))
            .ok_or_else(invalid)?;
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// `duration` the way [`parse_duration`] reads it, in its largest whole unit (`90s`, `10m`).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_compound_durations_are_read() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
            ("1h30m", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
            assert_eq!(parse_duration(&format_duration(expected)), Ok(expected));
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for text in [
            "",
            "30",
            "s",
            "10 minutes",
            "1.5h",
            "-5s",
            "99999999999999999999d",
            "5w",
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("write it as 500ms, 30s"), "{text}: {error}");
        }
    }

    #[test]
    fn durations_are_shown_in_their_largest_whole_unit() {
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
