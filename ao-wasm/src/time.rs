//! UTC calendar arithmetic and the emscripten `strftime`, as ao-loader's JS glue computes them
//! on a host whose time zone is UTC.

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1–12).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// `struct tm` fields (sec, min, hour, mday, mon, year-1900, wday, yday, isdst) of a UTC time.
pub(crate) fn gmtime(t: i64) -> [i32; 9] {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let yday = days - days_from_civil(y, 1, 1);
    let wday = (days + 4).rem_euclid(7);
    [
        (secs % 60) as i32,
        (secs / 60 % 60) as i32,
        (secs / 3600) as i32,
        d as i32,
        (m - 1) as i32,
        (y - 1900) as i32,
        wday as i32,
        yday as i32,
        0,
    ]
}

/// The UTC time of `struct tm` fields, normalising out-of-range fields as JS `Date` does.
pub(crate) fn timegm(t: &[i32; 9]) -> i64 {
    let months = (i64::from(t[5]) + 1900) * 12 + i64::from(t[4]);
    let (y, m) = (months.div_euclid(12), months.rem_euclid(12) + 1);
    days_from_civil(y, m, 1) * 86_400
        + (i64::from(t[3]) - 1) * 86_400
        + i64::from(t[2]) * 3600
        + i64::from(t[1]) * 60
        + i64::from(t[0])
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn pad(v: i64, digits: usize, c: char) -> String {
    let s = v.to_string();
    if s.len() >= digits {
        s
    } else {
        let mut out: String = std::iter::repeat_n(c, digits - s.len()).collect();
        out.push_str(&s);
        out
    }
}

fn first_week_start(y: i64) -> i64 {
    // Day number of the Monday starting ISO week 1 of year `y`.
    let jan4 = days_from_civil(y, 1, 4);
    let wday = (jan4 + 4).rem_euclid(7);
    jan4 - (wday + 6) % 7
}

fn week_based_year(t: &[i32; 9]) -> i64 {
    let year = i64::from(t[5]) + 1900;
    let this = days_from_civil(year, 1, 1) + i64::from(t[7]);
    let (y, _, _) = civil_from_days(this);
    if first_week_start(y) <= this {
        if first_week_start(y + 1) <= this {
            y + 1
        } else {
            y
        }
    } else {
        y - 1
    }
}

/// One conversion of the second expansion table.
fn expand(spec: &str, t: &[i32; 9], gmtoff: i64, zone: &str) -> String {
    let [sec, min, hour, mday, mon, year, wday, yday, _] = t.map(i64::from);
    let month = |i: i64| MONTHS.get(i as usize).copied().unwrap_or("");
    let weekday = |i: i64| WEEKDAYS.get(i as usize).copied().unwrap_or("");
    match spec {
        "%a" => weekday(wday).chars().take(3).collect(),
        "%A" => weekday(wday).to_owned(),
        "%b" => month(mon).chars().take(3).collect(),
        "%B" => month(mon).to_owned(),
        "%C" => pad((year + 1900) / 100, 2, '0'),
        "%d" => pad(mday, 2, '0'),
        "%e" => pad(mday, 2, ' '),
        "%g" => week_based_year(t).to_string().chars().skip(2).collect(),
        "%G" => week_based_year(t).to_string(),
        "%H" => pad(hour, 2, '0'),
        "%I" => {
            let h = if hour == 0 {
                12
            } else if hour > 12 {
                hour - 12
            } else {
                hour
            };
            pad(h, 2, '0')
        }
        "%j" => {
            let leap = is_leap(year + 1900);
            let days: [i64; 12] = if leap {
                [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
            } else {
                [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
            };
            let sum: i64 = days.iter().take((mon.max(0)) as usize).sum();
            pad(mday + sum, 3, '0')
        }
        "%m" => pad(mon + 1, 2, '0'),
        "%M" => pad(min, 2, '0'),
        "%n" => "\n".to_owned(),
        "%p" => (if (0..12).contains(&hour) { "AM" } else { "PM" }).to_owned(),
        "%S" => pad(sec, 2, '0'),
        "%t" => "\t".to_owned(),
        "%u" => (if wday == 0 { 7 } else { wday }).to_string(),
        "%U" => pad((yday + 7 - wday).div_euclid(7), 2, '0'),
        "%V" => {
            let mut val = (yday + 7 - (wday + 6) % 7).div_euclid(7);
            if (wday + 371 - yday - 2) % 7 <= 2 {
                val += 1;
            }
            if val == 0 {
                val = 52;
                let dec31 = (wday + 7 - yday - 1) % 7;
                if dec31 == 4 || (dec31 == 5 && is_leap(year % 400 - 1)) {
                    val += 1;
                }
            } else if val == 53 {
                let jan1 = (wday + 371 - yday) % 7;
                if jan1 != 4 && (jan1 != 3 || !is_leap(year)) {
                    val = 1;
                }
            }
            pad(val, 2, '0')
        }
        "%w" => wday.to_string(),
        "%W" => pad((yday + 7 - (wday + 6) % 7).div_euclid(7), 2, '0'),
        "%y" => (year + 1900).to_string().chars().skip(2).collect(),
        "%Y" => (year + 1900).to_string(),
        "%z" => {
            let ahead = gmtoff >= 0;
            let off = gmtoff.abs() / 60;
            let off = off / 60 * 100 + off % 60;
            let s = format!("0000{off}");
            format!("{}{}", if ahead { '+' } else { '-' }, &s[s.len() - 4..])
        }
        "%Z" => zone.to_owned(),
        _ => String::new(),
    }
}

/// emscripten's JS `strftime`: two tables of textual replacements applied in order.
///
/// `None` when the text would grow past `64 × max + 4096` bytes on the way (the guest's
/// buffer holds `max`): the caller answers "does not fit" without building it.
pub(crate) fn strftime(
    format: &[u8],
    t: &[i32; 9],
    gmtoff: i64,
    zone: &[u8],
    max: u64,
) -> Option<Vec<u8>> {
    let bound = usize::try_from(max.saturating_mul(64).saturating_add(4096)).unwrap_or(usize::MAX);
    // The length `pattern` would have with every `from` replaced by `to`.
    let grown = |pattern: &str, from: &str, to: &str| {
        let n = pattern.matches(from).count();
        (pattern.len() - n * from.len()).saturating_add(n.saturating_mul(to.len()))
    };
    const RULES_1: [(&str, &str); 28] = [
        ("%c", "%a %b %d %H:%M:%S %Y"),
        ("%D", "%m/%d/%y"),
        ("%F", "%Y-%m-%d"),
        ("%h", "%b"),
        ("%r", "%I:%M:%S %p"),
        ("%R", "%H:%M"),
        ("%T", "%H:%M:%S"),
        ("%x", "%m/%d/%y"),
        ("%X", "%H:%M:%S"),
        ("%Ec", "%c"),
        ("%EC", "%C"),
        ("%Ex", "%m/%d/%y"),
        ("%EX", "%H:%M:%S"),
        ("%Ey", "%y"),
        ("%EY", "%Y"),
        ("%Od", "%d"),
        ("%Oe", "%e"),
        ("%OH", "%H"),
        ("%OI", "%I"),
        ("%Om", "%m"),
        ("%OM", "%M"),
        ("%OS", "%S"),
        ("%Ou", "%u"),
        ("%OU", "%U"),
        ("%OV", "%V"),
        ("%Ow", "%w"),
        ("%OW", "%W"),
        ("%Oy", "%y"),
    ];
    const RULES_2: [&str; 29] = [
        "%a", "%A", "%b", "%B", "%C", "%d", "%e", "%g", "%G", "%H", "%I", "%j", "%m", "%M", "%n",
        "%p", "%S", "%t", "%u", "%U", "%V", "%w", "%W", "%y", "%Y", "%z", "%Z", "%%", "",
    ];
    let zone = String::from_utf8_lossy(zone);
    let mut pattern = String::from_utf8_lossy(format).into_owned();
    for (from, to) in RULES_1 {
        if grown(&pattern, from, to) > bound {
            return None;
        }
        pattern = pattern.replace(from, to);
    }
    pattern = pattern.replace("%%", "\0\0");
    for rule in RULES_2 {
        if rule.is_empty() || rule == "%%" {
            continue;
        }
        if pattern.contains(rule) {
            let with = expand(rule, t, gmtoff, &zone);
            if grown(&pattern, rule, &with) > bound {
                return None;
            }
            pattern = pattern.replace(rule, &with);
        }
    }
    Some(pattern.replace("\0\0", "%").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(gmtime(0), [0, 0, 0, 1, 0, 70, 4, 0, 0]);
        // 2024-02-29 12:34:56 UTC, a Thursday, day 59 of a leap year.
        let t = 1_709_210_096;
        let tm = gmtime(t);
        assert_eq!(tm, [56, 34, 12, 29, 1, 124, 4, 59, 0]);
        assert_eq!(timegm(&tm), t);
    }

    #[test]
    fn strftime_matches_the_js_glue() {
        let tm = gmtime(1_709_210_096);
        let out = strftime(b"%c|%F|%j|%y|%u|%V|%z|%Z|%%|%e", &tm, 0, b"UTC", 100).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Thu Feb 29 12:34:56 2024|2024-02-29|060|24|4|09|+0000|UTC|%|29"
        );
        // A zone name and a format that would expand far past the buffer are not expanded.
        let zone = vec![b'Z'; 1 << 20];
        let format = "%Z".repeat(1 << 16);
        assert_eq!(strftime(format.as_bytes(), &tm, 0, &zone, 256), None);
    }
}
