//! Numbers and dates as reports and messages write them.

/// A relative change as a signed percentage with two decimals.
pub(crate) fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// `YYYY-MM-DD` of a Unix time in milliseconds (proleptic Gregorian, UTC).
pub fn utc_date(ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
