//! The timezone a job's cron fields are read in (SPEC 5.1): an IANA name (`Europe/Berlin`),
//! UTC by default. Cron expressions are matched against wall-clock time in the zone, and
//! `Zone::place` turns a matching wall-clock time into the one instant it fires at, with the
//! daylight-saving rule written down in SPEC 5.1 and docs/configuration.md.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IANA timezone known to the bundled tz database. Stored and shown by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(Tz);

/// The longest gap a transition leaves in wall-clock time that `place` looks across: a day
/// (Samoa skipped 30 December 2011 whole); the longest known is shorter than two.
const LONGEST_GAP_SECS: i64 = 3 * 86_400;

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    /// The zone's IANA name as written in the tz database (`Europe/Berlin`, `UTC`).
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The wall-clock time in this zone at `instant`.
    pub fn local(&self, instant: DateTime<Utc>) -> NaiveDateTime {
        instant.with_timezone(&self.0).naive_local()
    }

    /// `instant` as an offset time of this zone (what a preview shows as local time).
    pub fn show(&self, instant: DateTime<Utc>) -> String {
        instant
            .with_timezone(&self.0)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    /// The instant wall-clock time `local` fires at: itself when it exists once; its first
    /// occurrence when a fall-back repeats it; the instant of the jump when a spring-forward
    /// skips it (so every local time a jump skips fires together, at the jump). None only
    /// beyond the representable range.
    pub fn place(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.0.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => self.end_of_gap(local),
        }
    }

    /// The instant a spring-forward gap containing `local` ends: the first wall-clock time
    /// after it that exists, found by doubling a step and then halving it to the second.
    fn end_of_gap(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let exists =
            |t: NaiveDateTime| !matches!(self.0.from_local_datetime(&t), LocalResult::None);
        let mut step = 60;
        let mut valid = loop {
            let t = local.checked_add_signed(chrono::Duration::seconds(step))?;
            if exists(t) {
                break t;
            }
            if step > LONGEST_GAP_SECS {
                return None;
            }
            step *= 2;
        };
        let mut invalid = local;
        // invalid < valid, the first existing second lies in (invalid, valid].
        while valid - invalid > chrono::Duration::seconds(1) {
            let middle = invalid + (valid - invalid) / 2;
            if exists(middle) {
                valid = middle;
            } else {
                invalid = middle;
            }
        }
        match self.0.from_local_datetime(&valid) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => None,
        }
    }
}

impl Default for Zone {
    fn default() -> Self {
        Zone::UTC
    }
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        Tz::from_str(name).map(Zone).map_err(|_| {
            format!(
                "unknown timezone {name:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\""
            )
        })
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Zone, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn wall(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .expect("valid date")
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        wall(y, mo, d, h, mi).and_utc()
    }

    #[test]
    fn names_are_iana_and_unknown_ones_are_refused() {
        let berlin: Zone = "Europe/Berlin".parse().expect("known");
        assert_eq!(berlin.to_string(), "Europe/Berlin");
        assert_eq!(Zone::default().name(), "UTC");
        let err = "Europe/Berln".parse::<Zone>().unwrap_err();
        assert!(err.contains("unknown timezone \"Europe/Berln\""), "{err}");
    }

    #[test]
    fn a_skipped_time_is_placed_at_the_jump_and_a_repeated_one_at_its_first_occurrence() {
        let berlin: Zone = "Europe/Berlin".parse().expect("known");
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        assert_eq!(
            berlin.place(wall(2026, 3, 29, 2, 30)),
            Some(utc(2026, 3, 29, 1, 0))
        );
        // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:30 happens twice.
        assert_eq!(
            berlin.place(wall(2026, 10, 25, 2, 30)),
            Some(utc(2026, 10, 25, 0, 30))
        );
        let samoa: Zone = "Pacific/Apia".parse().expect("known");
        // 2011-12-30 never happened in Samoa: 29 December 24:00 (-10) was 31 December 00:00.
        assert_eq!(
            samoa.place(wall(2011, 12, 30, 9, 0)),
            Some(utc(2011, 12, 30, 10, 0))
        );
    }
}
