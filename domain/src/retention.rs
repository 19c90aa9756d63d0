//! The retention schedule from the privacy policy, as data: one rule per data category.
//! Keys are cut per period so that expiry destroys whole periods at once.

use crate::sealed::DataCategory;
use chrono::{DateTime, Datelike, Duration, Utc};

/// How a category's data keys are cut in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPeriod {
    /// One key for the subject's whole life in this category.
    Lifetime,
    /// One key per ISO week (e.g. `2026-W47`), so weekly expiry destroys old weeks only.
    IsoWeek,
    /// One key per UTC day (e.g. `2026-11-24`): a 90-day term then ends within a day of 90
    /// days, not up to a week later.
    Day,
    /// One key per calendar year.
    Year,
}

/// When data of a category stops being kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// While the account is open, then this long after its deletion.
    WhileOpenThen(Duration),
    /// This long after the end of the key's period.
    For(Duration),
    /// This long after the matter closes (e.g. a support ticket), unless erased on request.
    AfterClosing(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    pub category: DataCategory,
    pub period: KeyPeriod,
    pub keep: Keep,
    /// Policy text this rule implements (section 5 of the privacy policy).
    pub policy: &'static str,
}

/// The schedule, in the order the privacy policy lists it.
pub fn schedule() -> [RetentionRule; 5] {
    [
        RetentionRule {
            category: DataCategory::Account,
            period: KeyPeriod::Lifetime,
            keep: Keep::WhileOpenThen(Duration::days(30)),
            policy: "Account data — retained while your account is open and for up to 30 days following account deletion",
        },
        RetentionRule {
            category: DataCategory::Usage,
            period: KeyPeriod::Day,
            keep: Keep::For(Duration::days(90)),
            policy: "Task and usage logs — retained for 90 days",
        },
        RetentionRule {
            category: DataCategory::Prompts,
            period: KeyPeriod::Day,
            keep: Keep::For(Duration::days(90)),
            policy: "We may retain prompt metadata (excluding image content) for up to 90 days",
        },
        RetentionRule {
            category: DataCategory::Billing,
            period: KeyPeriod::Year,
            keep: Keep::For(Duration::days(7 * 365 + 2)),
            policy: "Billing records — retained for up to 7 years",
        },
        RetentionRule {
            category: DataCategory::Support,
            period: KeyPeriod::Lifetime,
            keep: Keep::AfterClosing(Duration::days(3 * 365 + 1)),
            policy: "Support correspondence — retained for up to 3 years unless deletion is requested",
        },
    ]
}

pub fn rule(category: DataCategory) -> RetentionRule {
    schedule()
        .into_iter()
        .find(|r| r.category == category)
        .expect("every category has a rule")
}

/// The period label a value sealed at `at` in `category` belongs to.
pub fn period_label(category: DataCategory, at: DateTime<Utc>) -> String {
    match rule(category).period {
        KeyPeriod::Lifetime => "lifetime".to_string(),
        KeyPeriod::IsoWeek => {
            let w = at.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        KeyPeriod::Day => at.format("%Y-%m-%d").to_string(),
        KeyPeriod::Year => format!("{}", at.year()),
    }
}

/// When a periodic key of `category` for `period` (a `period_label`) expires: the end of
/// its period plus the time its rule keeps data. `None` for rules without a fixed term.
pub fn key_expires_at(category: DataCategory, period: &str) -> Option<DateTime<Utc>> {
    use chrono::{NaiveDate, Weekday};
    let r = rule(category);
    let Keep::For(keep) = r.keep else {
        return None;
    };
    if r.period == KeyPeriod::Lifetime {
        return None;
    }
    // Read the period from the label itself: keys cut under an earlier schedule (weekly
    // usage keys before daily ones) must still expire. A successor key (`<period>+N`, cut
    // after its period's key was destroyed early) expires with its period.
    let period = period.split_once('+').map_or(period, |(p, _)| p);
    let end = if let Some((y, w)) = period.split_once("-W") {
        NaiveDate::from_isoywd_opt(y.parse().ok()?, w.parse().ok()?, Weekday::Mon)?
            + Duration::days(7)
    } else if period.len() == 10 {
        NaiveDate::parse_from_str(period, "%Y-%m-%d").ok()? + Duration::days(1)
    } else {
        NaiveDate::from_ymd_opt(period.parse::<i32>().ok()? + 1, 1, 1)?
    };
    Some(end.and_hms_opt(0, 0, 0)?.and_utc() + keep)
}

#[cfg(test)]
mod tests {
    #[test]
    fn successor_keys_expire_with_their_period() {
        assert_eq!(
            key_expires_at(DataCategory::Usage, "2026-03-09+1"),
            key_expires_at(DataCategory::Usage, "2026-03-09")
        );
    }

    #[test]
    fn periodic_keys_expire_after_their_period_plus_the_term() {
        use chrono::TimeZone;
        // The day 2026-03-09 ends at midnight; usage is kept 90 days after that.
        assert_eq!(
            key_expires_at(DataCategory::Usage, "2026-03-09"),
            Some(Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap() + Duration::days(90))
        );
        assert_eq!(
            key_expires_at(DataCategory::Billing, "2026"),
            Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() + Duration::days(7 * 365 + 2))
        );
        assert_eq!(key_expires_at(DataCategory::Account, "lifetime"), None);
        // A weekly key from before daily keys: week 10 of 2026 ends Monday 2026-03-09.
        assert_eq!(
            key_expires_at(DataCategory::Usage, "2026-W10"),
            Some(Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 0).unwrap() + Duration::days(90))
        );
        assert_eq!(key_expires_at(DataCategory::Usage, "garbage"), None);
    }

    use super::*;
    use chrono::TimeZone;

    #[test]
    fn usage_and_prompt_keys_are_cut_by_day() {
        let at = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        assert_eq!(period_label(DataCategory::Prompts, at), "2026-11-20");
        assert_eq!(period_label(DataCategory::Usage, at), "2026-11-20");
        assert_eq!(period_label(DataCategory::Account, at), "lifetime");
        assert_eq!(period_label(DataCategory::Billing, at), "2026");
    }

    #[test]
    fn schedule_matches_policy_terms() {
        assert_eq!(
            rule(DataCategory::Usage).keep,
            Keep::For(Duration::days(90))
        );
        assert_eq!(
            rule(DataCategory::Prompts).keep,
            Keep::For(Duration::days(90))
        );
        assert_eq!(
            rule(DataCategory::Account).keep,
            Keep::WhileOpenThen(Duration::days(30))
        );
        assert!(
            matches!(rule(DataCategory::Billing).keep, Keep::For(d) if d >= Duration::days(7 * 365))
        );
    }
}
