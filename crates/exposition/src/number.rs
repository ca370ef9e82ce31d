//! Number syntax of the exposition formats.
//!
//! Prometheus parses sample values with Go's `strconv.ParseFloat` after
//! refusing any input containing `p`, `P` or `_` (so hex floats and digit
//! separators are rejected). What remains is the plain decimal grammar plus
//! the case-insensitive specials `inf`/`infinity` (with an optional sign) and
//! `nan` (no sign). Rust's `f64::from_str` is close but differs in three
//! places we care about: it accepts a signed `nan`, it turns out-of-range
//! decimals into infinity where Go reports an error, and it accepts `inf`
//! spellings Go does not. So specials are recognised here and only a
//! syntax-checked decimal string is handed to the standard library.

/// The NaN bit pattern Prometheus stores for every parsed NaN value.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Parses a sample value the way Prometheus's text parsers do.
pub fn parse_value(s: &[u8]) -> Option<f64> {
    let v = parse_go_float(s)?;
    Some(if v.is_nan() {
        f64::from_bits(NORMAL_NAN_BITS)
    } else {
        v
    })
}

/// Go `strconv.ParseFloat(s, 64)` restricted to the spellings Prometheus
/// accepts (no hex, no underscores). Out-of-range values are errors.
pub fn parse_go_float(s: &[u8]) -> Option<f64> {
    // Most sample values are short decimals: convert them exactly without
    // going through the general algorithm.
    if let Some(v) = parse_fast_decimal(s) {
        return Some(v);
    }
    // Specials start with a sign or a letter; skip the check for the
    // common digit-first values.
    let digit_first = s.first().is_some_and(|b| b.is_ascii_digit());
    if !digit_first {
        if let Some(v) = parse_special(s) {
            return Some(v);
        }
    }
    if !is_decimal_syntax(s) {
        return None;
    }
    // The syntax check guarantees ASCII.
    let text = std::str::from_utf8(s).ok()?;
    let v: f64 = text.parse().ok()?;
    // Go reports a range error for values beyond f64; Rust saturates.
    if v.is_infinite() {
        return None;
    }
    Some(v)
}

/// Powers of ten that an `f64` represents exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest mantissa an `f64` holds exactly.
const MAX_EXACT_MANTISSA: u64 = 1 << 53;

/// Clinger's fast path: a decimal `[+-]? digits [. digits] ([eE] [+-]? digits)?`
/// (or `. digits`) of at most 19 digits whose mantissa fits 53 bits and whose
/// decimal exponent is within ±22 is converted with one exact product or
/// quotient, which IEEE arithmetic rounds correctly. `None` means "not
/// handled here" (malformed or outside the fast path): the caller falls back
/// to the complete algorithm, so results never differ from it.
fn parse_fast_decimal(s: &[u8]) -> Option<f64> {
    parse_fast_decimal_prefix(s)
        .filter(|&(_, len)| len == s.len())
        .map(|(v, _)| v)
}

/// [`parse_fast_decimal`] on the longest prefix of `s` that looks like a
/// decimal number: returns the value and the prefix length. The caller must
/// check what follows (e.g. a separator), since a prefix such as `1.5` of
/// `1.5x` is not a number in itself.
pub(crate) fn parse_fast_decimal_prefix(s: &[u8]) -> Option<(f64, usize)> {
    let (negative, mut i) = match s.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let digits_start = i;
    while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let int_digits = i - digits_start;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        frac_digits = i - frac_start;
    }
    let digits = int_digits + frac_digits;
    // 19 digits cannot overflow a u64, so the wrapping arithmetic above was
    // exact when this holds.
    if digits == 0 || digits > 19 || mantissa > MAX_EXACT_MANTISSA {
        return None;
    }
    // `digits <= 19`, so this cannot truncate.
    let mut exponent = -(frac_digits as i32);
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        let mut exp: i32 = 0;
        while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            exp = exp * 10 + i32::from(d);
            i += 1;
            if i - exp_start > 4 {
                return None;
            }
        }
        if i == exp_start {
            return None;
        }
        exponent += if exp_negative { -exp } else { exp };
    }
    // The mantissa is at most 2^53, so the conversion is exact.
    let m = mantissa as f64;
    let magnitude = if mantissa == 0 {
        0.0
    } else if exponent >= 0 {
        m * *EXACT_POWERS_OF_TEN.get(usize::try_from(exponent).ok()?)?
    } else {
        m / *EXACT_POWERS_OF_TEN.get(usize::try_from(-exponent).ok()?)?
    };
    Some((if negative { -magnitude } else { magnitude }, i))
}

/// `[+-]inf`, `[+-]infinity`, `nan`, case-insensitively (Go's `special`).
fn parse_special(s: &[u8]) -> Option<f64> {
    let (negative, rest) = match s.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if rest.len() == s.len() && s.eq_ignore_ascii_case(b"nan") {
        return Some(f64::NAN);
    }
    None
}

/// `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`
fn is_decimal_syntax(s: &[u8]) -> bool {
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let int_digits = count_digits(&s[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&s[i..]);
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = count_digits(&s[i..]);
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == s.len()
}

fn count_digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// A text-format timestamp: one or more ASCII digits, integer milliseconds
/// (Prometheus's lexer has no sign for timestamps). Overflow is an error.
pub fn parse_int_timestamp(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0i64, |acc, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc.checked_mul(10)?.checked_add(i64::from(d))
    })
}

/// An OpenMetrics timestamp: a float in seconds, converted to milliseconds
/// (truncated toward zero, saturating). NaN and infinities are errors.
pub fn parse_om_timestamp(s: &[u8]) -> Option<i64> {
    let secs = parse_go_float(s)?;
    if !secs.is_finite() {
        return None;
    }
    Some((secs * 1000.0) as i64)
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` and then
/// appends `.0` when the result has neither `.` nor `e`; this is how
/// Prometheus normalises `le` and `quantile` label values.
pub fn format_om_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v == 0.0 {
        // Negative zero too: Prometheus compares with 0 before formatting.
        return "0.0".to_owned();
    }
    let mut out = format_go_g(v);
    if !out.contains(['.', 'e']) {
        out.push_str(".0");
    }
    out
}

/// Go's shortest `%g`: scientific notation when the decimal exponent is
/// below -4 or at least 6 (Go uses precision 6 for that decision when the
/// shortest representation is requested), plain notation otherwise.
fn format_go_g(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Rust's `{:e}` yields the shortest round-tripping digits, e.g. "-1.5e-7".
    let sci = format!("{v:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
        return out;
    }
    // Plain notation: place the decimal point `exp + 1` digits in.
    let point = exp + 1;
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..(-point) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_spellings() {
        let ok: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-3e3", -3000.0),
            ("08", 8.0),
            (".3", 0.3),
            ("1.", 1.0),
            ("+Inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("INFINITY", f64::INFINITY),
            ("1.7560473e+06", 1_756_047.3),
            ("9223372036854775808", 9_223_372_036_854_775_808.0),
        ];
        for (s, want) in ok {
            assert_eq!(parse_value(s.as_bytes()), Some(*want), "{s}");
        }
        for s in ["nan", "NaN", "NAN"] {
            let v = parse_value(s.as_bytes()).map(f64::to_bits);
            assert_eq!(v, Some(NORMAL_NAN_BITS), "{s}");
        }
        let bad = [
            "", "1_2", "0x1p-3", "0x1P-3", "0B1", "0O1", "0X1", "0x1", "0b1", "0o1", "true",
            "+nan", "-NaN", "infin", "1e", ".", "1e400", "1.1.1", "1z", "--1", "1 ",
        ];
        for s in bad {
            assert_eq!(parse_value(s.as_bytes()), None, "{s:?} must be rejected");
        }
    }

    /// The general algorithm the fast path must agree with.
    fn slow_decimal(s: &str) -> Option<f64> {
        if !is_decimal_syntax(s.as_bytes()) {
            return None;
        }
        s.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    #[test]
    fn fast_decimals_are_exact() {
        for s in [
            "0",
            "-0",
            "+0.0",
            "1",
            "1.",
            ".5",
            "14.0e+03",
            "9007199254740992",
            "9007199254740993",
            "1e22",
            "1e23",
            "1e-22",
            "123.456e-7",
            "0e999",
            "1234567890123456789",
            "12345678901234567890",
            "1e",
            "1e+",
            ".",
            "-",
            "1e99999",
        ] {
            let fast = parse_fast_decimal(s.as_bytes());
            if let Some(v) = fast {
                assert_eq!(Some(v.to_bits()), slow_decimal(s).map(f64::to_bits), "{s}");
            }
            assert_eq!(
                parse_go_float(s.as_bytes()).map(f64::to_bits),
                slow_decimal(s).map(f64::to_bits),
                "{s}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_decimal_agrees_with_general_parse(
            s in "[-+]?[0-9]{0,20}(\\.[0-9]{0,20})?([eE][-+]?[0-9]{0,5})?"
        ) {
            if let Some(v) = parse_fast_decimal(s.as_bytes()) {
                proptest::prop_assert_eq!(Some(v.to_bits()), slow_decimal(&s).map(f64::to_bits));
            }
            proptest::prop_assert_eq!(
                parse_go_float(s.as_bytes()).map(f64::to_bits),
                slow_decimal(&s).map(f64::to_bits)
            );
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_int_timestamp(b"1234567890"), Some(1_234_567_890));
        assert_eq!(parse_int_timestamp(b"-2"), None);
        assert_eq!(parse_int_timestamp(b"2.72"), None);
        assert_eq!(parse_int_timestamp(b"99999999999999999999"), None);
        assert_eq!(parse_om_timestamp(b"123.123"), Some(123_123));
        assert_eq!(parse_om_timestamp(b"1.5e3"), Some(1_500_000));
        assert_eq!(parse_om_timestamp(b"-1.1"), Some(-1100));
        for s in ["NaN", "Inf", "-Inf", "0x1p-3", "1_2"] {
            assert_eq!(parse_om_timestamp(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn om_float_formatting_matches_go() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (1.0, "1.0"),
            (0.25, "0.25"),
            (100_000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.555_555_555_555_52e6, "1.55555555555552e+06"),
            (1e23, "1e+23"),
            (-12.34, "-12.34"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(format_om_float(*v), *want, "{v}");
        }
    }
}
