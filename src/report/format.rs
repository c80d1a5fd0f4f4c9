//! Number and text formatting shared by the renderers, the templates' filters and the CSV files.

/// Shown for a missing value.
pub const MISSING: &str = "—";

/// `x` with `precision` decimal places; NaN as an em dash, ±∞ as `∞`/`-∞`, and no `-0.00`.
pub fn fmt_num(x: f64, precision: usize) -> String {
    if x.is_nan() {
        return MISSING.to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "∞".into() } else { "-∞".into() };
    }
    let s = format!("{x:.precision$}");
    if is_negative_zero_text(&s) {
        s[1..].to_string()
    } else {
        s
    }
}

fn is_negative_zero_text(s: &str) -> bool {
    s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.')
}

/// A difference with an explicit sign: `+0.0123`, `-0.0040`, `0.0000` when it rounds to zero.
pub fn fmt_delta(delta: f64, precision: usize) -> String {
    if !delta.is_finite() {
        return fmt_num(delta, precision);
    }
    let s = fmt_num(delta, precision);
    if s.starts_with('-') || s.chars().all(|c| c == '0' || c == '.') {
        s
    } else {
        format!("+{s}")
    }
}

/// `value ± spread` (spread omitted when absent or not finite).
pub fn fmt_pm(value: f64, spread: Option<f64>, precision: usize) -> String {
    match spread {
        Some(s) if s.is_finite() && value.is_finite() => {
            format!("{} ± {}", fmt_num(value, precision), fmt_num(s, precision))
        }
        _ => fmt_num(value, precision),
    }
}

/// A number for CSV/JSON-like machine use: shortest round-trip form, empty when not finite.
pub fn raw_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::new()
    }
}

/// One CSV field (RFC 4180 quoting).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Text made safe for one Markdown table cell: pipes escaped, line breaks as spaces.
pub fn md_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace("\r\n", " ")
        .replace(['\n', '\r'], " ")
}

/// A command line as one shell-pasteable string (POSIX single quotes where needed).
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Human duration: `0.84 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn fmt_duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return MISSING.to_string();
    }
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        let t = s.round() as u64;
        format!("{} min {:02} s", t / 60, t % 60)
    } else {
        let t = (s / 60.0).round() as u64;
        format!("{} h {:02} min", t / 60, t % 60)
    }
}

/// Display form of a label inside a figure: control characters made visible, long text cut.
pub fn figure_label(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '\n' => '↵',
            '\t' => '⇥',
            c if c.is_control() => '·',
            c => c,
        })
        .collect();
    if out.trim().is_empty() && !out.is_empty() {
        out = out.replace(' ', "␣");
    }
    if out.chars().count() > max_chars {
        out = out
            .chars()
            .take(max_chars.saturating_sub(1))
            .collect::<String>()
            + "…";
    }
    out
}
