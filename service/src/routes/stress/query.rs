//! The query of `POST /stress`, read by hand rather than by serde: an unknown or repeated
//! parameter is refused by name (a misspelt `cpu=5` would otherwise run the default), a
//! number out of range is 422 like every other limit, and a value that is not a number is
//! 400 with a message that says what is allowed instead of a parser's wording.

use crate::config::StressConfig;
use crate::error::{Error, FieldError};

/// `cpu_iterations` when the query leaves it out.
pub const DEFAULT_CPU_ITERATIONS: u32 = 1000;

/// What a stress request asks for, within the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub cpu_iterations: u32,
    pub memory_mb: u32,
}

/// Reads the query's `(name, value)` pairs against the limits in `limits`.
pub fn parse(pairs: &[(String, String)], limits: &StressConfig) -> Result<Asked, Error> {
    refuse_unknown(pairs)?;
    let cpu = Parameter {
        name: "cpu_iterations",
        max: limits.max_cpu_iterations,
        variable: "STRESS_MAX_CPU_ITERATIONS",
    };
    let memory = Parameter {
        name: "memory_mb",
        max: limits.max_memory_mb,
        variable: "STRESS_MAX_MEMORY_MB",
    };
    Ok(Asked {
        cpu_iterations: cpu
            .read(pairs)?
            .unwrap_or(DEFAULT_CPU_ITERATIONS.min(cpu.max)),
        memory_mb: memory.read(pairs)?.unwrap_or(0),
    })
}

const KNOWN: [&str; 2] = ["cpu_iterations", "memory_mb"];

/// 422 naming every parameter `/stress` does not take.
fn refuse_unknown(pairs: &[(String, String)]) -> Result<(), Error> {
    let mut unknown: Vec<&str> = pairs
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !KNOWN.contains(name))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(());
    }
    let message = "unknown query parameter; /stress takes cpu_iterations and memory_mb";
    Err(Error::Validation {
        detail: format!(
            "unknown query parameter {}: /stress takes cpu_iterations and memory_mb",
            unknown.join(", ")
        ),
        errors: unknown
            .iter()
            .map(|name| FieldError {
                field: (*name).to_owned(),
                message: message.to_owned(),
            })
            .collect(),
    })
}

/// One numeric parameter and its limit.
struct Parameter {
    name: &'static str,
    max: u32,
    variable: &'static str,
}

impl Parameter {
    /// Its value, if given once; 400 if it is not a whole number, 422 if it is out of range
    /// or repeated.
    fn read(&self, pairs: &[(String, String)]) -> Result<Option<u32>, Error> {
        let mut values = pairs.iter().filter(|(name, _)| name == self.name);
        let Some((_, value)) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Error::invalid(self.name, "must be given at most once"));
        }
        let (negative, digits) = match value.as_bytes().first() {
            Some(b'-') => (true, &value[1..]),
            Some(b'+') => (false, &value[1..]),
            _ => (false, value.as_str()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::BadRequest(format!(
                "{}: must be a whole number from 0 to {} ({})",
                self.name, self.max, self.variable
            )));
        }
        let number = if negative {
            digits.bytes().all(|b| b == b'0').then_some(0)
        } else {
            digits.parse::<u32>().ok()
        };
        match number {
            Some(number) if number <= self.max => Ok(Some(number)),
            _ => Err(Error::invalid(
                self.name,
                format!("must be from 0 to {} ({})", self.max, self.variable),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::config::Cli;

    fn limits() -> StressConfig {
        let mut config = Cli::parse_from(["cart-service"]).config.stress;
        config.max_cpu_iterations = 5000;
        config.max_memory_mb = 128;
        config
    }

    fn asked(query: &[(&str, &str)]) -> Result<Asked, Error> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(&pairs, &limits())
    }

    /// The status and detail of a refused query.
    fn refused(query: &[(&str, &str)]) -> (u16, String) {
        let error = asked(query).expect_err("the query was accepted");
        (error.status().as_u16(), error.to_string())
    }

    #[test]
    fn defaults_and_values_within_the_limits_are_read() {
        assert_eq!(
            asked(&[]).unwrap(),
            Asked {
                cpu_iterations: 1000,
                memory_mb: 0
            }
        );
        assert_eq!(
            asked(&[("cpu_iterations", "5000"), ("memory_mb", "+128")]).unwrap(),
            Asked {
                cpu_iterations: 5000,
                memory_mb: 128
            }
        );
        assert_eq!(
            asked(&[("cpu_iterations", "-0")]).unwrap().cpu_iterations,
            0
        );
    }

    #[test]
    fn numbers_out_of_range_are_422_naming_the_limit() {
        for value in ["-1", "5001", "99999999999999999999999"] {
            let (status, detail) = refused(&[("cpu_iterations", value)]);
            assert_eq!(status, 422, "{value}");
            assert_eq!(
                detail, "cpu_iterations: must be from 0 to 5000 (STRESS_MAX_CPU_ITERATIONS)",
                "{value}"
            );
        }
        assert_eq!(refused(&[("memory_mb", "129")]).0, 422);
    }

    #[test]
    fn values_that_are_not_numbers_are_400_saying_what_is_allowed() {
        for value in ["lots", "", "1.5", "-", "0x10", " 1"] {
            let (status, detail) = refused(&[("memory_mb", value)]);
            assert_eq!(status, 400, "{value:?}");
            assert_eq!(
                detail, "memory_mb: must be a whole number from 0 to 128 (STRESS_MAX_MEMORY_MB)",
                "{value:?}"
            );
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_422_naming_them() {
        let (status, detail) = refused(&[("cpu", "5"), ("memory_mb", "1"), ("mem", "1")]);
        assert_eq!(status, 422);
        assert_eq!(
            detail,
            "unknown query parameter cpu, mem: /stress takes cpu_iterations and memory_mb"
        );
        let (status, detail) = refused(&[("memory_mb", "1"), ("memory_mb", "2")]);
        assert_eq!(
            (status, detail.as_str()),
            (422, "memory_mb: must be given at most once")
        );
    }
}
