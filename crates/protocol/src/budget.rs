//! A monthly spend budget, as the key and user APIs show and take it:
//! `{"monthly_usd": 25.0, "mode": "hard"}`.
//!
//! Amounts are kept as whole micro-dollars so that budgets compare exactly and the
//! types holding them stay `Eq`; the wire shows dollars.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

/// What happens once a budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetMode {
    /// Further requests are refused (429, `insufficient_quota`) until the month ends.
    Hard,
    /// Requests go on; each one over the budget is logged and counted in a metric.
    Soft,
}

impl BudgetMode {
    /// The mode's name as stored and shown (`hard`, `soft`).
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetMode::Hard => "hard",
            BudgetMode::Soft => "soft",
        }
    }

    /// Parses a stored or typed mode name.
    pub fn parse(s: &str) -> Option<BudgetMode> {
        match s {
            "hard" => Some(BudgetMode::Hard),
            "soft" => Some(BudgetMode::Soft),
            _ => None,
        }
    }
}

/// A monthly spend budget (UTC calendar month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    /// The amount, in micro-dollars.
    pub monthly_micros: u64,
    /// What happens once it is spent.
    pub mode: BudgetMode,
}

/// The largest budget accepted, in dollars (a billion; anything above means "none").
pub const MAX_BUDGET_USD: f64 = 1e9;

impl Budget {
    /// A budget of `usd` dollars a month; `None` unless `usd` is a finite amount from 0
    /// to [`MAX_BUDGET_USD`].
    pub fn from_usd(usd: f64, mode: BudgetMode) -> Option<Budget> {
        if !usd.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&usd) {
            return None;
        }
        // In range and finite: the cast cannot saturate.
        let monthly_micros = (usd * 1e6).round() as u64;
        Some(Budget { monthly_micros, mode })
    }

    /// The amount in dollars.
    pub fn monthly_usd(&self) -> f64 {
        micros_to_usd(self.monthly_micros)
    }
}

/// Micro-dollars as dollars.
pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Dollars as whole micro-dollars (negative and non-finite amounts count as 0).
pub fn usd_to_micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 { (usd * 1e6).round() as u64 } else { 0 }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.2}/month ({})", self.monthly_usd(), self.mode.as_str())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    monthly_usd: f64,
    #[serde(default = "hard")]
    mode: BudgetMode,
}

fn hard() -> BudgetMode {
    BudgetMode::Hard
}

impl Serialize for Budget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire { monthly_usd: self.monthly_usd(), mode: self.mode }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        Budget::from_usd(w.monthly_usd, w.mode).ok_or_else(|| {
            D::Error::custom(format!("monthly_usd must be a number from 0 to {MAX_BUDGET_USD}"))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dollars_on_the_wire_micros_inside() {
        let b: Budget = serde_json::from_str(r#"{"monthly_usd": 12.5, "mode": "soft"}"#).unwrap();
        assert_eq!(b, Budget { monthly_micros: 12_500_000, mode: BudgetMode::Soft });
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"monthly_usd":12.5,"mode":"soft"}"#);
        let hard: Budget = serde_json::from_str(r#"{"monthly_usd": 1}"#).unwrap();
        assert_eq!(hard.mode, BudgetMode::Hard, "hard unless said otherwise");
        assert_eq!(hard.to_string(), "$1.00/month (hard)");
    }

    #[test]
    fn nonsense_amounts_are_refused() {
        for bad in [r#"{"monthly_usd": -1}"#, r#"{"monthly_usd": 1e12}"#, r#"{"monthly_usd": "5"}"#] {
            assert!(serde_json::from_str::<Budget>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Budget>(r#"{"monthly_usd": 1, "mode": "maybe"}"#).is_err());
        assert_eq!(Budget::from_usd(f64::NAN, BudgetMode::Hard), None);
        assert_eq!(usd_to_micros(-3.0), 0);
        assert_eq!(usd_to_micros(0.000_001_4), 1);
    }
}
