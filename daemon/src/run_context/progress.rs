//! Human text for progress reports (`restore validator: 812.4 MiB (41%)`).

/// Formats a byte count with a binary unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// One line describing a progress report.
pub fn describe(what: &str, done: u64, total: Option<u64>, unit: &str) -> String {
    let amount = |n| {
        if unit == "bytes" {
            human_bytes(n)
        } else {
            format!("{n} {unit}")
        }
    };
    match total {
        Some(t) if t > 0 => format!(
            "{what}: {} of {} ({}%)",
            amount(done),
            amount(t),
            done.saturating_mul(100) / t
        ),
        _ => format!("{what}: {}", amount(done)),
    }
}

/// A progress line with throughput and, when the total is known, an ETA:
/// `restore participant-0: 812.4 MiB of 2.0 GiB (41%), 54.2 MiB/s, ETA 22s`.
pub fn describe_with_rate(
    what: &str,
    done: u64,
    total: Option<u64>,
    unit: &str,
    elapsed: std::time::Duration,
) -> String {
    let mut line = describe(what, done, total, unit);
    let secs = elapsed.as_secs_f64();
    if secs < 0.5 || done == 0 {
        return line;
    }
    let rate = done as f64 / secs;
    if unit == "bytes" {
        line.push_str(&format!(", {}/s", human_bytes(rate as u64)));
    } else {
        line.push_str(&format!(", {rate:.1} {unit}/s"));
    }
    if let Some(t) = total.filter(|t| *t > done) {
        let eta = ((t - done) as f64 / rate).round() as u64;
        line.push_str(&format!(
            ", ETA {}",
            humantime::format_duration(std::time::Duration::from_secs(eta))
        ));
    }
    line
}

/// A text progress bar for terminals: `[########............] 41%`.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = (frac * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3}%",
        "#".repeat(filled),
        ".".repeat(width - filled),
        (frac * 100.0) as u64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_bytes_and_percentages() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(
            describe("dump", 50, Some(200), "tables"),
            "dump: 50 tables of 200 tables (25%)"
        );
        assert_eq!(describe("x", 2048, None, "bytes"), "x: 2.0 KiB");
    }

    #[test]
    fn rate_and_eta() {
        let line = describe_with_rate(
            "restore",
            50 << 20,
            Some(100 << 20),
            "bytes",
            std::time::Duration::from_secs(5),
        );
        assert_eq!(
            line,
            "restore: 50.0 MiB of 100.0 MiB (50%), 10.0 MiB/s, ETA 5s"
        );
        assert_eq!(bar(1, 4, 8), "[##......]  25%");
    }
}
