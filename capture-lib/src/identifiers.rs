//! Patient identifiers as people write and check them.
//!
//! A report is matched to its patient by an identifier; one wrong digit
//! files photos in another person's record. Where the issuing system has a
//! check digit, a mistyped identifier is refused before sealing. Known
//! systems:
//!
//! | system | name | check |
//! |---|---|---|
//! | `https://fhir.nhs.uk/Id/nhs-number` | NHS number | 10 digits, modulus 11 (NHS Data Dictionary); written `943 476 5919` |
//! | `urn:medseal:pseudonym` | Pseudonymous id | none |
//!
//! Any other system (a hospital's MRN, say) is taken as given, unchecked,
//! and shown by its URI.

use medseal_format::manifest::Identifier;

/// The NHS number system (England, Wales, Isle of Man).
pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// A pseudonymous id, made up for the report.
pub const PSEUDONYM: &str = "urn:medseal:pseudonym";

/// An identifier that fails its system's check.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a valid {name}: {why}")]
pub struct IdentifierError {
    /// What was given.
    pub value: String,
    /// The system's name.
    pub name: &'static str,
    /// What is wrong.
    pub why: &'static str,
}

/// The human name of a system, if it is one medseal knows.
pub fn system_name(system: &str) -> Option<&'static str> {
    match system {
        NHS_NUMBER => Some("NHS number"),
        PSEUDONYM => Some("Pseudonymous id"),
        _ => None,
    }
}

/// Checks `id` against its system and returns it normalised (an NHS
/// number as its ten digits); other systems are trimmed only.
pub fn check(id: &Identifier) -> Result<Identifier, IdentifierError> {
    let value = id.value.trim();
    let normalised = match id.system.as_str() {
        NHS_NUMBER => nhs_number(value)?,
        _ => value.to_owned(),
    };
    Ok(Identifier {
        system: id.system.clone(),
        value: normalised,
    })
}

/// The identifier as a person writes it: "NHS number 943 476 5919";
/// "https://hospital.example/mrn 12345" for an unknown system.
pub fn display(id: &Identifier) -> String {
    match id.system.as_str() {
        NHS_NUMBER if id.value.len() == 10 && id.value.bytes().all(|b| b.is_ascii_digit()) => {
            format!(
                "NHS number {} {} {}",
                &id.value[..3],
                &id.value[3..6],
                &id.value[6..]
            )
        }
        s => format!("{} {}", system_name(s).unwrap_or(s), id.value),
    }
}

fn nhs_number(value: &str) -> Result<String, IdentifierError> {
    let err = |why| IdentifierError {
        value: value.to_owned(),
        name: "NHS number",
        why,
    };
    let digits: String = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("an NHS number is 10 digits"));
    }
    let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    // 1111111111, 4444444444: pass the check, and are typed as placeholders.
    if d.iter().all(|x| *x == d[0]) {
        return Err(err(
            "ten of the same digit is a placeholder, not an NHS number",
        ));
    }
    // Weights 10 down to 2 on the first nine digits; the check digit is
    // 11 minus the sum modulo 11, 11 meaning 0 and 10 never valid.
    let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return Err(err("no NHS number has these first nine digits")),
        c => c,
    };
    if check != d[9] {
        return Err(err("its check digit is wrong (a digit mistyped?)"));
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nhs(v: &str) -> Identifier {
        Identifier {
            system: NHS_NUMBER.into(),
            value: v.into(),
        }
    }

    #[test]
    fn nhs_numbers_are_checked_and_written_in_groups() {
        // Valid test numbers (the NHS's own examples and the 999 range).
        for ok in [
            "943 476 5919",
            "9434765919",
            "943-476-5919",
            "4010232137",
            "9990000018",
        ] {
            let id = check(&nhs(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(id.value.len(), 10);
        }
        assert_eq!(
            display(&check(&nhs("9434765919")).unwrap()),
            "NHS number 943 476 5919"
        );
        for bad in [
            "943 476 5918",
            "943 476 591",
            "94347659190",
            "94347659a9",
            "",
            "1000000010",
        ] {
            assert!(check(&nhs(bad)).is_err(), "{bad} accepted");
        }
        // A transposition is caught.
        assert!(check(&nhs("9434756919")).is_err());
    }

    #[test]
    fn other_systems_are_taken_as_given() {
        let mrn = Identifier {
            system: "https://hospital.example/mrn".into(),
            value: " 00123 ".into(),
        };
        assert_eq!(check(&mrn).unwrap().value, "00123");
        assert_eq!(
            display(&check(&mrn).unwrap()),
            "https://hospital.example/mrn 00123"
        );
        let p = Identifier {
            system: PSEUDONYM.into(),
            value: "p-1".into(),
        };
        assert_eq!(display(&p), "Pseudonymous id p-1");
    }
}
