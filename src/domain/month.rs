//! A billing month (`YYYY-MM`), parsed once.

use chrono::{Datelike, NaiveDate, Utc};
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
    pub fn current() -> Self {
        let today = Utc::now().date_naive();
        Self {
            year: today.year(),
            month: today.month(),
        }
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

    /// Resolves the `month` setting: "current", "previous" or "YYYY-MM".
    pub fn from_setting(setting: &str) -> Result<Self, String> {
        match setting {
            "current" => Ok(Self::current()),
            "previous" => Ok(Self::current().previous()),
            other => other.parse(),
        }
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
}
