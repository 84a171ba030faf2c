//! Money: prices arrive as JSON numbers (the guides' shape) but are computed in whole cents, so a
//! total is never off by a floating-point residue. Stored back as a number so range filters
//! (`minPrice`, `$gt`) keep working on MongoDB and the embedded store alike.

use keel::validation::FieldErrors;

/// A non-negative amount with at most two decimals, at most 1,000,000.00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Price {
    cents: i64,
}

impl Price {
    pub const MAX_CENTS: i64 = 100_000_000;

    pub fn parse(field: &str, raw: f64) -> Result<Price, FieldErrors> {
        if !raw.is_finite() || raw < 0.0 {
            return Err(FieldErrors::single(field, "must be a non-negative number"));
        }
        let scaled = raw * 100.0;
        let cents = scaled.round();
        if (scaled - cents).abs() > 1e-6 {
            return Err(FieldErrors::single(field, "must have at most two decimals"));
        }
        if cents > Self::MAX_CENTS as f64 {
            return Err(FieldErrors::single(field, "must be at most 1000000"));
        }
        Ok(Price {
            cents: cents as i64,
        })
    }

    /// Parses query-string text such as `minPrice=9.99`.
    pub fn parse_text(field: &str, raw: &str) -> Result<Price, FieldErrors> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > 20 {
            return Err(FieldErrors::single(field, "must be a number"));
        }
        let value: f64 = raw
            .parse()
            .map_err(|_| FieldErrors::single(field, "must be a number"))?;
        Self::parse(field, value)
    }

    pub fn from_cents(cents: i64) -> Price {
        Price { cents }
    }

    pub fn cents(self) -> i64 {
        self.cents
    }

    /// The number stored and shown (`19.99`).
    pub fn as_f64(self) -> f64 {
        self.cents as f64 / 100.0
    }

    /// `self × rate`, rounded half away from zero to the cent (tax computation).
    pub fn times_rate(self, rate: f64) -> Price {
        Price {
            cents: (self.cents as f64 * rate).round() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_two_decimals_and_refuses_more() {
        assert_eq!(Price::parse("price", 19.99).unwrap().cents(), 1999);
        assert_eq!(Price::parse("price", 0.0).unwrap().cents(), 0);
        assert_eq!(Price::parse("price", 0.1 + 0.2).unwrap().cents(), 30);
        assert!(Price::parse("price", 1.005).is_err());
        assert!(Price::parse("price", -1.0).is_err());
        assert!(Price::parse("price", f64::NAN).is_err());
        assert!(Price::parse("price", 1e12).is_err());
    }

    #[test]
    fn query_text_is_parsed_the_same_way() {
        assert_eq!(Price::parse_text("minPrice", " 5.5 ").unwrap().cents(), 550);
        assert!(Price::parse_text("minPrice", "five").is_err());
        assert!(Price::parse_text("minPrice", "inf").is_err());
    }

    #[test]
    fn tax_rounds_to_the_cent() {
        assert_eq!(Price::from_cents(1999).times_rate(0.08).cents(), 160);
        assert_eq!(Price::from_cents(0).times_rate(0.2).cents(), 0);
    }
}
