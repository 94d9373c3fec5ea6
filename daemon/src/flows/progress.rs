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
}
