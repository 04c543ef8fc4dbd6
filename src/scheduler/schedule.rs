//! When a job fires: a human interval ("90 minutes") or a 5-field cron in UTC
//! ("00 02,10 * * *"), or never on its own (manual jobs).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `text` is the interval as written ("90 minutes"), shown back as such.
    Interval {
        every: Duration,
        text: String,
    },
    Cron {
        expr: String,
        cron: saffron::Cron,
    },
    /// Runs only when started through the API or `dpsd job run`.
    Manual,
}

impl Schedule {
    /// Reads an interval when the text is one, else a cron expression.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if let Ok(interval) = humantime::parse_duration(text) {
            if interval < Duration::from_secs(1) {
                return Err(format!("interval {text:?} is shorter than one second"));
            }
            return Ok(Schedule::Interval {
                every: interval,
                text: text.to_string(),
            });
        }
        if text.split_whitespace().count() != 5 {
            return Err(format!(
                "{text:?} is neither an interval (\"90 minutes\", \"1h 30m\") nor a 5-field cron expression (\"00 02,10 * * *\")"
            ));
        }
        let cron: saffron::Cron = with_day_names(text)
            .parse()
            .map_err(|e| format!("bad cron expression {text:?}: {e}"))?;
        if !cron.any() {
            return Err(format!("cron expression {text:?} never matches"));
        }
        Ok(Schedule::Cron {
            expr: text.to_string(),
            cron,
        })
    }

    /// `interval`, `cron` or `manual`, as the job record's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Interval { .. } => "interval",
            Schedule::Cron { .. } => "cron",
            Schedule::Manual => "manual",
        }
    }

    /// The first occurrence after the one planned for `planned` (or the first after `now`
    /// for a new job). Occurrences that passed while nobody ran them are skipped, not
    /// caught up on.
    pub fn next(
        &self,
        planned: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::Interval { every, .. } => {
                let every = chrono::Duration::from_std(*every).ok()?;
                let next = planned.map(|p| p + every).filter(|n| *n > now);
                Some(next.unwrap_or(now + every))
            }
            Schedule::Cron { cron, .. } => cron.next_after(planned.map_or(now, |p| p.max(now))),
        }
    }
}

/// crontab numbers the days of the week 0-7 from Sunday (0 and 7 both Sunday); saffron
/// counts 1-7. Numbers in the day-of-week field become names, which both read alike, so
/// `0 9 * * 1-5` means Monday to Friday as in every crontab. Step values stay numbers.
fn with_day_names(text: &str) -> String {
    const DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut fields: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let Some(dow) = fields.get_mut(4) else {
        return text.to_string();
    };
    let mut named = String::new();
    let mut number = String::new();
    let mut after_slash = false;
    for c in dow.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if !number.is_empty() {
            match number.parse::<usize>().ok().and_then(|n| DAYS.get(n)) {
                // `5-7`: a range may not wrap around to Sunday in saffron; spell it out.
                Some(_) if !after_slash && number == "7" && named.ends_with('-') => {
                    named.push_str("SAT,SUN")
                }
                Some(day) if !after_slash => named.push_str(day),
                _ => named.push_str(&number),
            }
            number.clear();
        }
        // Step values (`*/2`) and nth-weekday counts (`MON#1`) stay numbers.
        after_slash = c == '/' || c == '#';
        if c != ' ' {
            named.push(c);
        }
    }
    *dow = named;
    fields.join(" ")
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval { text, .. } => f.write_str(text),
            Schedule::Cron { expr, .. } => f.write_str(expr),
            Schedule::Manual => f.write_str("manual"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, h, m, s)
            .single()
            .expect("valid time")
    }

    #[test]
    fn intervals_and_crons_parse() {
        let every = |s: &str| match Schedule::parse(s) {
            Ok(Schedule::Interval { every, text }) => Some((every.as_secs(), text)),
            _ => None,
        };
        assert_eq!(every("90 minutes"), Some((5400, "90 minutes".into())));
        assert_eq!(every("1h 30m"), Some((5400, "1h 30m".into())));
        assert_eq!(
            Schedule::parse("2 seconds").map(|s| s.kind()),
            Ok("interval")
        );
        assert_eq!(
            Schedule::parse("00 02,10 * * *").map(|s| s.kind()),
            Ok("cron")
        );
        assert!(Schedule::parse("every now and then").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("100ms").is_err());
    }

    #[test]
    fn intervals_follow_the_plan_and_skip_missed_occurrences() {
        let every = Schedule::parse("2s").expect("interval");
        assert_eq!(every.next(None, at(10, 0, 0)), Some(at(10, 0, 2)));
        assert_eq!(
            every.next(Some(at(10, 0, 2)), at(10, 0, 2)),
            Some(at(10, 0, 4))
        );
        assert_eq!(
            every.next(Some(at(10, 0, 2)), at(10, 5, 0)),
            Some(at(10, 5, 2))
        );
    }

    #[test]
    fn days_of_the_week_count_from_sunday_as_in_crontab() {
        assert_eq!(with_day_names("0 9 * * 1-5"), "0 9 * * MON-FRI");
        assert_eq!(with_day_names("0 9 * * 0,6"), "0 9 * * SUN,SAT");
        assert_eq!(with_day_names("0 9 * * */2"), "0 9 * * */2");
        assert_eq!(with_day_names("0 9 * * 7"), "0 9 * * SUN");
        assert_eq!(with_day_names("0 9 * * 5-7"), "0 9 * * FRI-SAT,SUN");
        assert_eq!(with_day_names("0 9 * * MON#1"), "0 9 * * MON#1");
        assert_eq!(with_day_names("0 9 * * 1#2"), "0 9 * * MON#2");
        // 2026-11-28 is a Saturday: a weekday job next fires on Monday the 30th.
        let weekdays = Schedule::parse("0 9 * * 1-5").expect("cron");
        let monday = at(9, 0, 0) + chrono::Duration::days(2);
        assert_eq!(weekdays.next(None, at(10, 0, 0)), Some(monday));
    }

    #[test]
    fn crons_are_utc_and_strictly_after() {
        let cron = Schedule::parse("00 02,10 * * *").expect("cron");
        assert_eq!(cron.next(None, at(3, 0, 0)), Some(at(10, 0, 0)));
        assert_eq!(
            cron.next(Some(at(10, 0, 0)), at(10, 0, 0)),
            Some(at(2, 0, 0) + chrono::Duration::days(1))
        );
        assert_eq!(Schedule::Manual.next(None, at(1, 0, 0)), None);
    }
}
