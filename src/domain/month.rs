//! A billing month (`YYYY-MM`), parsed once.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (2000..=2100).contains(&year)).then_some(Self { year, month })
    }
    pub fn year(&self) -> i32 {
        self.year
    }
    pub fn month(&self) -> u32 {
        self.month
    }
    /// The month of now, in UTC.
    pub fn current() -> Self {
        Self::of(crate::clock::now(), chrono_tz::UTC)
    }
    pub fn previous(&self) -> Self {
        match self.month {
            1 => Self {
                year: self.year - 1,
                month: 12,
            },
            m => Self {
                year: self.year,
                month: m - 1,
            },
        }
    }
    pub fn first_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid month")
    }
    pub fn last_day(&self) -> NaiveDate {
        let next = match self.month {
            12 => NaiveDate::from_ymd_opt(self.year + 1, 1, 1),
            m => NaiveDate::from_ymd_opt(self.year, m + 1, 1),
        };
        next.and_then(|d| d.pred_opt()).expect("valid month")
    }
    /// ConnectWise date-time for midnight UTC of `date`.
    pub fn cw_datetime(date: NaiveDate) -> String {
        format!("{}T00:00:00Z", date.format("%Y-%m-%d"))
    }

    /// Resolves the `month` setting: "current", "previous" or "YYYY-MM" (in UTC,
    /// with no month close; [`Month::for_run`] is the run's).
    pub fn from_setting(setting: &str) -> Result<Self, String> {
        Self::for_run(setting, chrono_tz::UTC, 0, crate::clock::now())
    }

    /// The month of `now` on the calendar of `tz`.
    pub fn of(now: DateTime<Utc>, tz: Tz) -> Self {
        let local = now.with_timezone(&tz).date_naive();
        Self {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The month a run without an explicit month syncs at `now`: the `month`
    /// setting ("current", "previous" or "YYYY-MM") counted in `tz`. During the
    /// first `month_close` days of a month (on `tz`'s calendar), "current" and
    /// "previous" step back one month more: the month just ended is still being
    /// closed, so its additions keep following its final usage until invoicing.
    pub fn for_run(
        setting: &str,
        tz: Tz,
        month_close: u32,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let today = Self::of(now, tz);
        let current = if Self::in_close(now, tz, month_close) {
            today.previous()
        } else {
            today
        };
        match setting {
            "current" => Ok(current),
            "previous" => Ok(current.previous()),
            other => other.parse(),
        }
    }

    /// Whether `now` falls in the first `month_close` days of its month (in `tz`),
    /// while the month before is still being closed.
    pub fn in_close(now: DateTime<Utc>, tz: Tz, month_close: u32) -> bool {
        now.with_timezone(&tz).day() <= month_close
    }
}

impl FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("month {s:?} is not valid: use YYYY-MM, e.g. 2026-05");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: Month = "2026-02".parse().unwrap();
        assert_eq!(m.to_string(), "2026-02");
        assert_eq!(m.last_day().to_string(), "2026-02-28");
        assert_eq!(m.previous().to_string(), "2026-01");
        assert_eq!(
            "2026-01".parse::<Month>().unwrap().previous().to_string(),
            "2025-12"
        );
        assert_eq!(Month::cw_datetime(m.first_day()), "2026-02-01T00:00:00Z");
    }

    #[test]
    fn rejects_bad_months_with_advice() {
        for bad in [
            "2026-13", "2026-1", "26-01", "2026/01", "", "abcd-ef", "2026-00",
        ] {
            let err = bad.parse::<Month>().unwrap_err();
            assert!(err.contains("YYYY-MM"), "{bad}: {err}");
        }
        assert!(Month::from_setting("nonsense").is_err());
        assert!(Month::from_setting("previous").is_ok());
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn run_month(setting: &str, tz: &str, close: u32, now: &str) -> String {
        Month::for_run(setting, tz.parse().unwrap(), close, at(now))
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_month_is_counted_in_the_time_zone() {
        // 23:30 UTC on 30 November is already December in Berlin...
        let late = "2026-11-30T23:30:00Z";
        assert_eq!(run_month("current", "UTC", 0, late), "2026-11");
        assert_eq!(run_month("current", "Europe/Berlin", 0, late), "2026-12");
        assert_eq!(run_month("previous", "Europe/Berlin", 0, late), "2026-11");
        // ...and 03:00 UTC on 1 December is still November in New York.
        let early = "2026-12-01T03:00:00Z";
        assert_eq!(run_month("current", "UTC", 0, early), "2026-12");
        assert_eq!(
            run_month("current", "America/New_York", 0, early),
            "2026-11"
        );
        // Across the year.
        assert_eq!(
            run_month("current", "Pacific/Auckland", 0, "2026-12-31T12:00:00Z"),
            "2027-01"
        );
        // An explicit month is the month, whatever the clock.
        assert_eq!(run_month("2026-05", "Asia/Tokyo", 10, early), "2026-05");
    }

    #[test]
    fn during_the_month_close_the_previous_month_is_synced() {
        // monthClose 3: 1st to 3rd of December (local) still sync November.
        for now in [
            "2026-12-01T00:00:00Z",
            "2026-12-02T12:00:00Z",
            "2026-12-03T23:59:59Z",
        ] {
            assert_eq!(run_month("current", "UTC", 3, now), "2026-11", "{now}");
            assert_eq!(run_month("previous", "UTC", 3, now), "2026-10", "{now}");
        }
        assert_eq!(
            run_month("current", "UTC", 3, "2026-12-04T00:00:00Z"),
            "2026-12"
        );
        // The close period is counted on the zone's calendar: 23:30 UTC on the
        // 3rd is the 4th in Berlin, so Berlin's close is over.
        let boundary = "2026-12-03T23:30:00Z";
        assert_eq!(run_month("current", "UTC", 3, boundary), "2026-11");
        assert_eq!(
            run_month("current", "Europe/Berlin", 3, boundary),
            "2026-12"
        );
        // January's close reaches back into the previous year; 0 is off.
        assert_eq!(
            run_month("current", "UTC", 5, "2027-01-02T08:00:00Z"),
            "2026-12"
        );
        assert_eq!(
            run_month("current", "UTC", 0, "2027-01-01T00:00:00Z"),
            "2027-01"
        );
        assert!(Month::in_close(
            at("2026-12-10T10:00:00Z"),
            chrono_tz::UTC,
            10
        ));
        assert!(!Month::in_close(
            at("2026-12-11T00:00:00Z"),
            chrono_tz::UTC,
            10
        ));
    }
}
