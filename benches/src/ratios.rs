//! Reading criterion's own estimates back after a run, and printing
//! comparison tables (as Markdown, so they paste into the docs unchanged).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where criterion writes its results: the directory the bench binaries
/// hand to `Criterion::output_directory`, so that writer and reader agree.
///
/// `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else
/// `criterion/` in the target directory holding this binary
/// (`target/<profile>/deps/<bench>`).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

/// Criterion's estimate, in nanoseconds per iteration, of benchmark
/// `<group>/<function>/<parameter>`, if it was written at or after `since`
/// (so a filtered run never reads a stale figure from an earlier one).
///
/// The same figure criterion prints as "time": the slope of its linear
/// regression when it sampled linearly, else the mean (flat sampling).
pub fn mean_ns(
    dir: &Path,
    group: &str,
    function: &str,
    parameter: &str,
    since: SystemTime,
) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join(parameter)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}

/// A Markdown table with right-aligned numeric columns after the first.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .chain([headers[c].len(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(c, &w)| {
            if c == 0 {
                "-".repeat(w)
            } else {
                format!("{}:", "-".repeat(w - 1))
            }
        })
        .collect();
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// `baseline / ours` as "12.3x" (how many times better ours is when both
/// are costs), or "n/a" when either is missing.
pub fn ratio(baseline: Option<f64>, ours: Option<f64>) -> String {
    match (baseline, ours) {
        (Some(b), Some(o)) if o > 0.0 => format!("{:.1}x", b / o),
        _ => "n/a".to_owned(),
    }
}

/// A duration in nanoseconds in a readable unit.
pub fn human_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// A count as a table shows it: `1000` as "1k", `10000000` as "10M",
/// anything not a whole number of those as it is.
pub fn human_count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_ratios() {
        let t = markdown_table(&["x", "time"], &[vec!["a".into(), "1 ns".into()]]);
        assert_eq!(t, "| x   | time |\n| --- | ---: |\n| a   | 1 ns |\n");
        assert_eq!(ratio(Some(10.0), Some(2.0)), "5.0x");
        assert_eq!(ratio(None, Some(2.0)), "n/a");
        assert_eq!(human_ns(1500.0), "1.5 µs");
    }
}
