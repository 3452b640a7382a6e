//! Times in request bodies: RFC 3339 text (`2030-11-11T10:24:00+08:00`) or Unix seconds, as
//! EMQX 5 accepts them (its `epoch_second` type).

use serde_json::Value;

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn digits(text: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = text.get(range)?;
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Parses an RFC 3339 date-time into Unix milliseconds; `None` if it is malformed or before
/// 1970.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = i64::from(digits(text, 0..4)?);
    let month = digits(text, 5..7)?;
    let day = digits(text, 8..10)?;
    let hour = digits(text, 11..13)?;
    let minute = digits(text, 14..16)?;
    let second = digits(text, 17..19)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // A leap second (60) is read as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0u64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        let first3: String = fraction[..end].chars().chain("00".chars()).take(3).collect();
        millis = first3.parse().ok()?;
        rest = &fraction[end..];
    }
    let offset_seconds: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours = i64::from(digits(rest, 1..3)?);
            let minutes = i64::from(digits(rest, 4..6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset_seconds;
    let seconds = u64::try_from(seconds).ok()?;
    seconds.checked_mul(1000)?.checked_add(millis)
}

/// A time field of a request body: RFC 3339 text or Unix seconds → Unix milliseconds. The
/// error names `field`.
pub(crate) fn parse_time(field: &str, value: &Value) -> Result<u64, String> {
    match value {
        Value::String(text) => parse_rfc3339(text)
            .ok_or_else(|| format!("{field}: not an RFC 3339 date-time (like 2030-11-11T10:24:00Z): {text:?}")),
        Value::Number(number) => number
            .as_u64()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| format!("{field}: Unix seconds must be a non-negative integer")),
        _ => Err(format!("{field}: expected an RFC 3339 date-time or Unix seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_core::sys::format_rfc3339_utc;
    use serde_json::json;

    #[test]
    fn parses_utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2021-10-25T21:48:47+08:00"), Some(1_635_169_727_000));
        assert_eq!(parse_rfc3339("2021-10-25T13:48:47Z"), Some(1_635_169_727_000));
        assert_eq!(parse_rfc3339("2021-10-25T13:48:47.5Z"), Some(1_635_169_727_500));
        assert_eq!(parse_rfc3339("2021-10-25t13:48:47.123456z"), Some(1_635_169_727_123));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00-01:30"), Some(951_787_800_000));
        // Round trip with the formatter the API answers with (to the second).
        let now = 1_763_884_801_000;
        assert_eq!(parse_rfc3339(&format_rfc3339_utc(now)), Some(now));
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "2021-10-25",
            "2021-10-25T13:48:47",
            "2021-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2021-10-25T24:00:00Z",
            "2021-10-25T13:48:47+8:00",
            "2021-10-25T13:48:47.Z",
            "1969-12-31T23:59:59Z",
            "２021-10-25T13:48:47Z",
            "tomorrow",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn time_fields_take_text_or_seconds() {
        assert_eq!(parse_time("at", &json!(1_635_169_727)), Ok(1_635_169_727_000));
        assert_eq!(parse_time("at", &json!("2021-10-25T13:48:47Z")), Ok(1_635_169_727_000));
        assert!(
            parse_time("until", &json!(-1))
                .expect_err("negative")
                .starts_with("until:")
        );
        assert!(parse_time("until", &json!(true)).is_err());
        assert!(
            parse_time("until", &json!("soon"))
                .expect_err("not a time")
                .contains("RFC 3339")
        );
    }
}
