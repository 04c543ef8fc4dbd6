//! When a job fires: a human interval ("90 minutes") or a 5-field cron read in the job's
//! timezone ("00 02,10 * * *"), or never on its own (manual jobs).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::zone::Zone;

/// The longest interval accepted. Longer ones mean nothing as a schedule, and one long
/// enough (`300000 years`) has no next run that can be represented: adding it to a time
/// panicked. Well below that limit, it also keeps every next run within four-digit years.
const MAX_INTERVAL: Duration = Duration::from_secs(1000 * YEAR_SECS);
/// What humantime takes a year to be (365.25 days).
const YEAR_SECS: u64 = 31_557_600;

/// What kind of schedule a job has, as its record's `type` (SPEC 5.2). The store keeps it as
/// the text of `as_str`, which is also its JSON: `interval`, `cron`, `manual`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Interval,
    Cron,
    Manual,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Interval => "interval",
            JobKind::Cron => "cron",
            JobKind::Manual => "manual",
        }
    }
}

/// What a job does about occurrences that went by while no daemon ran it, or while it was
/// paused (SPEC 5.1): `once` runs one of them at once, `skip` plans the next future one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    #[default]
    Once,
    Skip,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::Skip => "skip",
        }
    }
}

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
            if interval > MAX_INTERVAL {
                return Err(format!(
                    "interval {text:?} is too long: at most {} years",
                    MAX_INTERVAL.as_secs() / YEAR_SECS
                ));
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

    /// The job record's `type`.
    pub fn kind(&self) -> JobKind {
        match self {
            Schedule::Interval { .. } => JobKind::Interval,
            Schedule::Cron { .. } => JobKind::Cron,
            Schedule::Manual => JobKind::Manual,
        }
    }

    /// The first occurrence after the one planned for `planned` (or the first after `now`
    /// for a new job). Occurrences that passed while nobody ran them are skipped here (the
    /// scheduler's catch-up decides about those). Cron fields are read as wall-clock time in
    /// `zone`; intervals are elapsed time whatever the zone. None for a manual job, and for a
    /// next occurrence that cannot be represented (never for a schedule `parse` accepted,
    /// from any `now` in practice).
    pub fn next(
        &self,
        planned: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        zone: Zone,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::Interval { every, .. } => {
                let every = chrono::Duration::from_std(*every).ok()?;
                let next = planned
                    .and_then(|p| p.checked_add_signed(every))
                    .filter(|n| *n > now);
                next.or_else(|| now.checked_add_signed(every))
            }
            Schedule::Cron { cron, .. } => {
                next_cron(cron, zone, planned.map_or(now, |p| p.max(now)))
            }
        }
    }
}

impl Schedule {
    /// The next `n` fire times: `first` (an occurrence already planned) when given, else
    /// the first after `now`, each following one from the one before. Fewer when the
    /// schedule runs out (a manual job has none).
    pub fn upcoming(
        &self,
        first: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        zone: Zone,
        n: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(n.min(1000));
        let mut next = first.or_else(|| self.next(None, now, zone));
        while let Some(at) = next.filter(|_| times.len() < n) {
            times.push(at);
            next = self.next(Some(at), at, zone);
        }
        times
    }
}

/// How many matching wall-clock times `next_cron` looks at before giving up: those it
/// passes over are the repeats of a fall-back (at most one per minute of the repeated span).
const MAX_CRON_STEPS: usize = 10_000;

/// The first instant strictly after `after` at which `cron`, read in `zone`, fires. saffron
/// knows no zones, so it walks wall-clock times (given to it as if they were UTC) and each
/// match is placed with `Zone::place`: a time skipped by a spring-forward lands on the jump
/// (and several of them on the same instant, which fires once since the next one must be
/// later), a time repeated by a fall-back on its first occurrence, so its second one is
/// earlier than `after` and passed over.
fn next_cron(cron: &saffron::Cron, zone: Zone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut local = zone.local(after);
    for _ in 0..MAX_CRON_STEPS {
        let matched = cron.next_after(local.and_utc())?.naive_utc();
        let instant = zone.place(matched)?;
        if instant > after {
            return Some(instant);
        }
        local = matched;
    }
    None
}

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// crontab numbers the days of the week 0-7 from Sunday (0 and 7 both Sunday) and lets a
/// range run up to 7; saffron counts 1-7 and cannot wrap a range past Saturday. So the
/// day-of-week field is rewritten as the plain list of day names it means (`1-5` becomes
/// `MON,TUE,WED,THU,FRI`, `SAT-SUN` and `6-7` become `SUN,SAT`), which reads the same to
/// both. Forms with `#` or `L` (nth or last weekday) keep their own syntax, numbers named.
fn with_day_names(text: &str) -> String {
    let mut fields: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let Some(dow) = fields.get_mut(4) else {
        return text.to_string();
    };
    // `*` stays `*`: a list of all seven days would count as a restriction and change how
    // the day-of-month field combines with it.
    if dow.as_str() == "*" || dow.as_str() == "?" {
        return text.to_string();
    }
    let rewritten = if dow.contains('#') || dow.contains('L') {
        name_numbers(dow)
    } else {
        match expand_days(dow) {
            Some(days) => days,
            None => return text.to_string(), // not a form we know: saffron reports it
        }
    };
    *dow = rewritten;
    fields.join(" ")
}

/// `*`, `N`, `A-B`, each with an optional `/STEP`, comma-separated, days by number or name.
fn expand_days(field: &str) -> Option<String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse::<usize>().ok().filter(|s| *s > 0)?),
            None => (item, 1),
        };
        let (first, last) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((a, b)) => {
                let (a, b) = (day_number(a)?, day_number(b)?);
                (a, if b < a { b + 7 } else { b })
            }
            None if item.contains('/') => (day_number(range)?, 6),
            None => (day_number(range)?, day_number(range)?),
        };
        for day in (first..=last).step_by(step) {
            days[day % 7] = true;
        }
    }
    let names: Vec<&str> = DAYS
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// A day as 0-7 (7 is Sunday too) or by its three-letter name.
fn day_number(token: &str) -> Option<usize> {
    match token.parse::<usize>() {
        Ok(n) if n <= 7 => Some(n),
        Ok(_) => None,
        Err(_) => DAYS.iter().position(|d| d.eq_ignore_ascii_case(token)),
    }
}

/// A leading day number becomes its name (`1#2` is `MON#2`, `5L` is `FRIL`); the rest, the
/// count after `#`, stays.
fn name_numbers(field: &str) -> String {
    let digits = field.chars().take_while(char::is_ascii_digit).count();
    match field[..digits].parse::<usize>() {
        Ok(n) if n <= 7 => format!("{}{}", DAYS[n % 7], &field[digits..]),
        _ => field.to_string(),
    }
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
            Ok(JobKind::Interval)
        );
        assert_eq!(
            Schedule::parse("00 02,10 * * *").map(|s| s.kind()),
            Ok(JobKind::Cron)
        );
        assert!(Schedule::parse("every now and then").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("100ms").is_err());
    }

    #[test]
    fn intervals_longer_than_the_limit_are_refused() {
        // Found by API fuzzing: adding `300000 years` to now panicked.
        for text in [
            "300000 years",
            "1001 years",
            "2562047788015215h",
            "1000000000 years",
        ] {
            let err = Schedule::parse(text).unwrap_err();
            assert_eq!(
                err,
                format!("interval {text:?} is too long: at most 1000 years")
            );
        }
        let longest = Schedule::parse("1000 years").expect("at the limit");
        assert!(longest.next(None, at(10, 0, 0), Zone::UTC).is_some());
        let now = Utc::now();
        let next = longest.next(Some(now), now, Zone::UTC).expect("a next run");
        assert!(next.format("%Y").to_string().len() == 4, "{next}");
    }

    #[test]
    fn a_next_run_past_the_last_representable_date_is_none_not_a_panic() {
        // Schedules built directly, or planned times read back from a store, skip `parse`.
        let huge = Schedule::Interval {
            every: Duration::from_secs(300_000 * YEAR_SECS),
            text: "300000 years".into(),
        };
        assert_eq!(huge.next(None, at(10, 0, 0), Zone::UTC), None);
        let beyond_chrono = Schedule::Interval {
            every: Duration::MAX,
            text: "forever".into(),
        };
        assert_eq!(beyond_chrono.next(None, at(10, 0, 0), Zone::UTC), None);
        let every = Schedule::parse("2s").expect("interval");
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(every.next(Some(last), last, Zone::UTC), None);
        // A planned time that cannot be advanced falls back to one interval from now.
        assert_eq!(
            every.next(Some(last), at(10, 0, 0), Zone::UTC),
            Some(at(10, 0, 2))
        );
    }

    #[test]
    fn intervals_follow_the_plan_and_skip_missed_occurrences() {
        let every = Schedule::parse("2s").expect("interval");
        assert_eq!(
            every.next(None, at(10, 0, 0), Zone::UTC),
            Some(at(10, 0, 2))
        );
        assert_eq!(
            every.next(Some(at(10, 0, 2)), at(10, 0, 2), Zone::UTC),
            Some(at(10, 0, 4))
        );
        assert_eq!(
            every.next(Some(at(10, 0, 2)), at(10, 5, 0), Zone::UTC),
            Some(at(10, 5, 2))
        );
    }

    #[test]
    fn days_of_the_week_count_from_sunday_as_in_crontab() {
        let dow = |field: &str| with_day_names(&format!("0 9 * * {field}"))[8..].to_string();
        assert_eq!(dow("1-5"), "MON,TUE,WED,THU,FRI");
        assert_eq!(dow("0,6"), "SUN,SAT");
        assert_eq!(dow("*/2"), "SUN,TUE,THU,SAT");
        assert_eq!(dow("7"), "SUN");
        assert_eq!(dow("5-7"), "SUN,FRI,SAT");
        assert_eq!(dow("6-7"), "SUN,SAT");
        assert_eq!(dow("SAT-SUN"), "SUN,SAT");
        assert_eq!(dow("FRI-SUN"), "SUN,FRI,SAT");
        assert_eq!(dow("5-7/2"), "SUN,FRI");
        assert_eq!(dow("7-7"), "SUN");
        assert_eq!(dow("MON#1"), "MON#1");
        assert_eq!(dow("1#2"), "MON#2");
        assert_eq!(dow("5L"), "FRIL");
        let last_friday = Schedule::parse("0 0 * * 5L").expect("cron");
        let december_25 = at(0, 0, 0) + chrono::Duration::days(27);
        assert_eq!(
            last_friday.next(None, at(10, 0, 0), Zone::UTC),
            Some(december_25)
        );
        assert_eq!(dow("*"), "*");
        // Day of month alone still means that day of the month only.
        let first = Schedule::parse("0 0 1 * *").expect("cron");
        assert_eq!(
            first.next(None, at(10, 0, 0), Zone::UTC),
            Some(at(0, 0, 0) + chrono::Duration::days(3))
        );
        // 2026-11-28 is a Saturday: a weekday job next fires on Monday the 30th.
        let weekdays = Schedule::parse("0 9 * * 1-5").expect("cron");
        let monday = at(9, 0, 0) + chrono::Duration::days(2);
        assert_eq!(weekdays.next(None, at(10, 0, 0), Zone::UTC), Some(monday));
        // A weekend job on that Saturday evening next fires on Sunday the 29th.
        let weekend = Schedule::parse("0 2 * * 6-7").expect("cron");
        assert_eq!(
            weekend.next(None, at(10, 0, 0), Zone::UTC),
            Some(at(2, 0, 0) + chrono::Duration::days(1))
        );
        assert!(Schedule::parse("0 9 * * 9").is_err());
    }

    #[test]
    fn crons_are_utc_and_strictly_after() {
        let cron = Schedule::parse("00 02,10 * * *").expect("cron");
        assert_eq!(cron.next(None, at(3, 0, 0), Zone::UTC), Some(at(10, 0, 0)));
        assert_eq!(
            cron.next(Some(at(10, 0, 0)), at(10, 0, 0), Zone::UTC),
            Some(at(2, 0, 0) + chrono::Duration::days(1))
        );
        assert_eq!(Schedule::Manual.next(None, at(1, 0, 0), Zone::UTC), None);
    }

    /// The fire times of `cron` read in `zone` from `from` (exclusive) up to `until`
    /// (inclusive), each as UTC `HH:MM` with the day when it differs from `from`'s.
    fn fires(cron: &str, zone: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<String> {
        let schedule = Schedule::parse(cron).expect("cron");
        let zone: Zone = zone.parse().expect("zone");
        let mut times = vec![];
        let mut at = from;
        while let Some(next) = schedule.next(Some(at), at, zone) {
            if next > until {
                break;
            }
            assert!(next > at, "{next} not after {at}");
            times.push(format!(
                "{} {}",
                next.format("%d %H:%M"),
                zone.local(next).format("%H:%M")
            ));
            at = next;
        }
        times
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn crons_read_in_a_zone_fire_at_its_wall_clock_time() {
        let daily = Schedule::parse("0 9 * * *").expect("cron");
        let berlin: Zone = "Europe/Berlin".parse().expect("zone");
        // 28 November: CET, UTC+1.
        assert_eq!(
            daily.next(None, at(10, 0, 0), berlin),
            Some(at(8, 0, 0) + chrono::Duration::days(1))
        );
        // Intervals are elapsed time whatever the zone.
        let every = Schedule::parse("90 minutes").expect("interval");
        assert_eq!(every.next(None, at(10, 0, 0), berlin), Some(at(11, 30, 0)));
    }

    #[test]
    fn upcoming_lists_fire_times_from_the_plan_or_from_now() {
        let every = Schedule::parse("2s").expect("interval");
        assert_eq!(
            every.upcoming(Some(at(9, 0, 0)), at(10, 0, 0), Zone::UTC, 3),
            [at(9, 0, 0), at(9, 0, 2), at(9, 0, 4)]
        );
        let berlin: Zone = "Europe/Berlin".parse().expect("zone");
        let spring = Schedule::parse("30 2 * * *").expect("cron");
        let times = spring.upcoming(None, utc(2026, 3, 28, 12, 0), berlin, 2);
        assert_eq!(times, [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]);
        assert_eq!(berlin.show(times[0]), "2026-03-29T03:00:00+02:00");
        assert!(Schedule::Manual
            .upcoming(None, at(1, 0, 0), Zone::UTC, 5)
            .is_empty());
    }

    #[test]
    fn berlin_spring_forward_fires_skipped_times_once_at_the_jump() {
        // 2026-03-29: at 01:00 UTC, 02:00 CET becomes 03:00 CEST.
        let (from, until) = (utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 3, 0));
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", from, until),
            ["29 01:00 03:00"]
        );
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", from, utc(2026, 3, 30, 3, 0)),
            ["29 01:00 03:00", "30 00:30 02:30"]
        );
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", from, until),
            [
                "29 00:00 01:00",
                "29 01:00 03:00",
                "29 02:00 04:00",
                "29 03:00 05:00"
            ]
        );
        // 02:00, 02:15, 02:30, 02:45 and the jump's own 03:00: one run at the jump.
        assert_eq!(
            fires(
                "*/15 * * * *",
                "Europe/Berlin",
                utc(2026, 3, 29, 0, 30),
                utc(2026, 3, 29, 1, 30)
            ),
            [
                "29 00:45 01:45",
                "29 01:00 03:00",
                "29 01:15 03:15",
                "29 01:30 03:30"
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fires_repeated_times_at_their_first_occurrence_only() {
        // 2026-10-25: at 01:00 UTC, 03:00 CEST becomes 02:00 CET; 02:00-02:59 happen twice.
        let (from, until) = (utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 3, 0));
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", from, utc(2026, 10, 26, 3, 0)),
            ["25 00:30 02:30", "26 01:30 02:30"]
        );
        assert_eq!(
            fires("0 * * * *", "Europe/Berlin", from, until),
            ["25 00:00 02:00", "25 02:00 03:00", "25 03:00 04:00"]
        );
        assert_eq!(
            fires(
                "*/15 * * * *",
                "Europe/Berlin",
                utc(2026, 10, 24, 23, 50),
                utc(2026, 10, 25, 2, 0)
            ),
            [
                "25 00:00 02:00",
                "25 00:15 02:15",
                "25 00:30 02:30",
                "25 00:45 02:45",
                "25 02:00 03:00"
            ]
        );
        // A daemon started inside the repeated hour does not run its times a second time.
        assert_eq!(
            fires(
                "*/15 * * * *",
                "Europe/Berlin",
                utc(2026, 10, 25, 1, 10),
                utc(2026, 10, 25, 2, 0)
            ),
            ["25 02:00 03:00"]
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // 2026-03-08: at 07:00 UTC, 02:00 EST becomes 03:00 EDT.
        let spring = (utc(2026, 3, 8, 5, 0), utc(2026, 3, 8, 8, 0));
        assert_eq!(
            fires("30 2 * * *", "America/New_York", spring.0, spring.1),
            ["08 07:00 03:00"]
        );
        assert_eq!(
            fires("0 * * * *", "America/New_York", spring.0, spring.1),
            ["08 06:00 01:00", "08 07:00 03:00", "08 08:00 04:00"]
        );
        assert_eq!(
            fires(
                "*/15 2 * * *",
                "America/New_York",
                spring.0,
                utc(2026, 3, 9, 8, 0)
            ),
            [
                "08 07:00 03:00",
                "09 06:00 02:00",
                "09 06:15 02:15",
                "09 06:30 02:30",
                "09 06:45 02:45"
            ]
        );
        // 2026-11-01: at 06:00 UTC, 02:00 EDT becomes 01:00 EST; 01:00-01:59 happen twice.
        let fall = (utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 8, 0));
        assert_eq!(
            fires("30 1 * * *", "America/New_York", fall.0, fall.1),
            ["01 05:30 01:30"]
        );
        assert_eq!(
            fires("0 * * * *", "America/New_York", fall.0, fall.1),
            ["01 05:00 01:00", "01 07:00 02:00", "01 08:00 03:00"]
        );
        assert_eq!(
            fires("*/15 1 * * *", "America/New_York", fall.0, fall.1),
            [
                "01 05:00 01:00",
                "01 05:15 01:15",
                "01 05:30 01:30",
                "01 05:45 01:45"
            ]
        );
    }

    #[test]
    fn lord_howe_shifts_by_thirty_minutes() {
        // Australia/Lord_Howe is UTC+10:30 in winter, +11 in summer.
        // 2026-10-04 02:00 becomes 02:30 (at 15:30 UTC on the 3rd).
        let spring = (utc(2026, 10, 3, 14, 0), utc(2026, 10, 3, 17, 0));
        assert_eq!(
            fires("*/15 2 * * *", "Australia/Lord_Howe", spring.0, spring.1),
            ["03 15:30 02:30", "03 15:45 02:45"]
        );
        assert_eq!(
            fires("0 * * * *", "Australia/Lord_Howe", spring.0, spring.1),
            [
                "03 14:30 01:00",
                "03 15:30 02:30",
                "03 16:00 03:00",
                "03 17:00 04:00"
            ]
        );
        assert_eq!(
            fires("15 2 * * *", "Australia/Lord_Howe", spring.0, spring.1),
            ["03 15:30 02:30"]
        );
        // 2026-04-05 02:00 becomes 01:30 (at 15:00 UTC on the 4th): 01:30-01:59 twice.
        let fall = (utc(2026, 4, 4, 13, 0), utc(2026, 4, 4, 17, 0));
        assert_eq!(
            fires("*/15 1 * * *", "Australia/Lord_Howe", fall.0, fall.1),
            [
                "04 14:00 01:00",
                "04 14:15 01:15",
                "04 14:30 01:30",
                "04 14:45 01:45"
            ]
        );
        assert_eq!(
            fires("0 * * * *", "Australia/Lord_Howe", fall.0, fall.1),
            ["04 14:00 01:00", "04 15:30 02:00", "04 16:30 03:00"]
        );
        assert_eq!(
            fires(
                "45 1 * * *",
                "Australia/Lord_Howe",
                fall.0,
                utc(2026, 4, 5, 16, 0)
            ),
            ["04 14:45 01:45", "05 15:15 01:45"]
        );
    }
}
