//! Request bodies: parsing and the required-field checks of API.md §3 and §6.
//!
//! Errors are `invalid_request` with a fixed description naming the field, never its value.

use serde_json::Value;

use crate::sandbox::config::ApiVersion;
use crate::sandbox::error::ApiError;
use crate::sandbox::model::{Amount, CardFacts, Fields};

/// The body as a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        Err(_) => Err(ApiError::invalid("the body is not valid JSON")),
    }
}

/// `session_id`, required by start, confirm, cancel and status.
pub(crate) fn session_id(body: &Value) -> Result<String, ApiError> {
    match body.get("session_id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid("session_id must be a non-empty string")),
        None => Err(ApiError::invalid("session_id is required")),
    }
}

/// The optional payout fields, each checked for shape when present. The destination is read
/// from the prefix's spelling first, then the other one (clients mix them up; so does the SDK's
/// own test suite).
pub(crate) fn fields(project: &str, version: ApiVersion, body: &Value) -> Result<Fields, ApiError> {
    let other = match version {
        ApiVersion::V1 => ApiVersion::V2,
        ApiVersion::V2 => ApiVersion::V1,
    };
    let destination = body
        .get(version.destination_key())
        .or_else(|| body.get(other.destination_key()));
    let card = destination.map(|d| card(project, d)).transpose()?;
    let amount = body.get("amount_details").map(amount).transpose()?;
    let participant_details = body
        .get("participant_details")
        .map(|p| {
            let ok = p.is_object()
                && p.get("recipient").is_none_or(Value::is_object)
                && p.get("sender").is_none_or(Value::is_object);
            ok.then(|| p.clone())
                .ok_or(ApiError::invalid("participant_details must be an object"))
        })
        .transpose()?;
    let customer = body
        .get("customer")
        .map(|c| {
            c.is_object()
                .then(|| c.clone())
                .ok_or(ApiError::invalid("customer must be an object"))
        })
        .transpose()?;
    Ok(Fields {
        amount,
        card,
        participant_details,
        customer,
        metadata: body.get("metadata").filter(|m| !m.is_null()).cloned(),
    })
}

/// The checks a payout needs before it can start: card, amount, recipient name.
pub(crate) fn require_payout(fields: &Fields) -> Result<(), ApiError> {
    if fields.card.is_none() {
        return Err(ApiError::invalid(
            "payout_details (payment_method) is required",
        ));
    }
    if fields.amount.is_none() {
        return Err(ApiError::invalid("amount_details is required"));
    }
    if fields.recipient_name().is_none() {
        return Err(ApiError::invalid(
            "participant_details.recipient.full_name (or first_name and last_name) is required",
        ));
    }
    Ok(())
}

fn amount(v: &Value) -> Result<Amount, ApiError> {
    let amount = v
        .get("amount")
        .and_then(Value::as_i64)
        .filter(|a| *a > 0)
        .ok_or(ApiError::invalid(
            "amount_details.amount must be an integer greater than zero",
        ))?;
    let currency = text(v, "currency")
        .filter(|c| c.len() == 3 || c.eq_ignore_ascii_case("tonc"))
        .filter(|c| c.bytes().all(|b| b.is_ascii_alphabetic()))
        .ok_or(ApiError::invalid(
            "amount_details.currency must be an ISO 4217 code",
        ))?;
    Ok(Amount {
        amount,
        currency: currency.to_owned(),
    })
}

fn card(project: &str, destination: &Value) -> Result<CardFacts, ApiError> {
    if text(destination, "type") != Some("card") {
        return Err(ApiError::invalid(
            "the sandbox pays out to cards only: type must be \"card\"",
        ));
    }
    let card = destination
        .get("card")
        .filter(|c| text(c, "type") == Some("bank_card"))
        .and_then(|c| c.get("bank_card"))
        .ok_or(ApiError::invalid(
            "the sandbox supports card.type \"bank_card\" with a bank_card object only",
        ))?;
    let number = text(card, "number")
        .filter(|n| (14..=19).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(ApiError::invalid(
            "bank_card.number must be 14 to 19 digits",
        ))?;
    let optional = |key: &str, ok: &dyn Fn(&str) -> bool| match card.get(key) {
        None | Some(Value::Null) => true,
        Some(v) => v.as_str().is_some_and(ok),
    };
    if !optional("expiration_month", &|m| {
        digits(m, &[2]) && (1..=12).contains(&m.parse::<u8>().unwrap_or(0))
    }) {
        return Err(ApiError::invalid(
            "bank_card.expiration_month must be 01–12",
        ));
    }
    if !optional("expiration_year", &|y| digits(y, &[2])) {
        return Err(ApiError::invalid(
            "bank_card.expiration_year must be two digits",
        ));
    }
    if !optional("security_code", &|c| digits(c, &[3, 4])) {
        return Err(ApiError::invalid(
            "bank_card.security_code must be 3 or 4 digits",
        ));
    }
    Ok(CardFacts::from_number(project, number))
}

/// The string at `key`; `None` when it is missing or not a string.
fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn digits(s: &str, lens: &[usize]) -> bool {
    lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn card_body(number: &str) -> Value {
        json!({"payout_details": {"type": "card", "card": {"type": "bank_card",
               "bank_card": {"number": number}}}})
    }

    #[test]
    fn card_numbers() {
        assert!(fields("p", ApiVersion::V2, &card_body("4242424242424242")).is_ok());
        for bad in [
            "424242424242",
            "42424242424242424242",
            "4242 4242 4242 4242",
            "x",
        ] {
            let err = fields("p", ApiVersion::V2, &card_body(bad)).unwrap_err();
            assert_eq!(err.code, "invalid_request");
        }
    }

    #[test]
    fn either_spelling_is_accepted() {
        let v1 = json!({"payment_method": card_body("4242424242424242")["payout_details"]});
        assert!(fields("p", ApiVersion::V2, &v1).unwrap().card.is_some());
        assert!(fields("p", ApiVersion::V1, &v1).unwrap().card.is_some());
    }

    #[test]
    fn amounts() {
        let ok = json!({"amount_details": {"amount": 100, "currency": "RUB"}});
        assert_eq!(
            fields("p", ApiVersion::V2, &ok)
                .unwrap()
                .amount
                .unwrap()
                .currency,
            "RUB"
        );
        for bad in [
            json!({"amount": 0, "currency": "rub"}),
            json!({"amount": 1.5, "currency": "rub"}),
            json!({"amount": "100", "currency": "rub"}),
            json!({"amount": 100}),
            json!({"amount": 100, "currency": "rubles"}),
        ] {
            assert!(fields("p", ApiVersion::V2, &json!({"amount_details": bad})).is_err());
        }
    }

    #[test]
    fn payout_requirements() {
        let mut f = fields("p", ApiVersion::V2, &card_body("4242424242424242")).unwrap();
        f.amount = Some(Amount {
            amount: 1,
            currency: "rub".into(),
        });
        assert!(require_payout(&f).is_err());
        f.participant_details = Some(json!({"recipient": {"first_name": "A", "last_name": "B"}}));
        assert!(require_payout(&f).is_ok());
        f.participant_details = Some(json!({"recipient": {"full_name": "  "}}));
        assert!(require_payout(&f).is_err());
    }
}
