//! Request and response shapes of the calls voxgate makes (reference §4.2–4.5), with
//! tolerant parsing: unknown fields are ignored, a missing or `null` optional field is
//! `None`, numbers may arrive as JSON numbers or as strings, `request_uuid` as a string or
//! a list. Times stay the strings Plivo sent, with helpers to parse them ([`PlivoTime`]).
//!
//! Only `call_uuid` (and a live call's `call_status`) are required: without them the
//! answer is about nothing, and a decode error says Plivo changed shape.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset as _, TimeZone as _, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// How Plivo should request one of the call's URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CallbackMethod {
    /// `GET`: parameters in the query string.
    Get,
    /// `POST`: parameters as form fields (Plivo's default).
    Post,
}

/// Make Call parameters (`POST .../Call/`), serialized as Plivo's snake_case JSON body.
/// `None` fields are left out so Plivo's defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MakeCall {
    /// Caller ID, E.164 digits.
    pub from: String,
    /// Destination number or `sip:` URI (several joined by `<` make a bulk call).
    pub to: String,
    /// URL Plivo fetches for the call's XML once answered.
    pub answer_url: String,
    /// Method for `answer_url` (Plivo's default: POST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_method: Option<CallbackMethod>,
    /// URL notified when the call ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hangup_url: Option<String>,
    /// Method for `hangup_url` (default POST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hangup_method: Option<CallbackMethod>,
    /// URL notified when the callee's phone starts ringing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_url: Option<String>,
    /// Method for `ring_url` (default POST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_method: Option<CallbackMethod>,
    /// Seconds after answer before Plivo hangs up (default 14400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<u32>,
    /// Seconds to ring before giving up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_timeout: Option<u32>,
    /// `true` or `hangup` (answering-machine detection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_detection: Option<String>,
    /// Custom SIP headers, `k=v,k2=v2`; they reach the answer URL as `X-PH-k`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_headers: Option<String>,
    /// Caller name shown to the callee (≤ 50 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
}

impl MakeCall {
    /// A call from `from` to `to` answered by `answer_url`, everything else Plivo's default.
    pub fn new(
        from: impl Into<String>,
        to: impl Into<String>,
        answer_url: impl Into<String>,
    ) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            answer_url: answer_url.into(),
            ..Self::default()
        }
    }
}

/// Plivo's answer to Make Call (201).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MakeCallResponse {
    /// Id of the request; for a single call it equals the call's `CallUUID`. Plivo sends
    /// a list for bulk calls: this is its first entry.
    #[serde(deserialize_with = "first_of_string_or_list")]
    pub request_uuid: String,
    /// `"call fired"`.
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub message: String,
    /// Plivo's id for this API request (quote it to Plivo support).
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub api_id: String,
}

/// A call in progress (`GET .../Call/{uuid}/?status=live`, reference §4.4). Note the
/// names differ from the CDR's: `from`/`to`, `direction`, `call_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCall {
    /// The call's uuid.
    pub call_uuid: String,
    /// Plivo's `CallStatus`: `ringing`, `in-progress`, … (reference §5.1).
    pub call_status: String,
    /// `inbound` or `outbound`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub direction: Option<String>,
    /// Caller.
    #[serde(default, deserialize_with = "lenient_string")]
    pub from: Option<String>,
    /// Called party.
    #[serde(default, deserialize_with = "lenient_string")]
    pub to: Option<String>,
    /// The Make Call `request_uuid` (API calls).
    #[serde(default, deserialize_with = "lenient_string")]
    pub request_uuid: Option<String>,
    /// When the call started, `yyyy-MM-dd HH:mm:ss.ffffff` (see [`LiveCall::session_start`]).
    #[serde(default, deserialize_with = "lenient_string")]
    pub session_start: Option<String>,
    /// Caller name (often empty).
    #[serde(default, deserialize_with = "lenient_string")]
    pub caller_name: Option<String>,
    /// The A leg's uuid when this is a B leg.
    #[serde(default, deserialize_with = "lenient_string")]
    pub parent_call_uuid: Option<String>,
    /// The answer URL in use.
    #[serde(default, deserialize_with = "lenient_string")]
    pub answer_url: Option<String>,
    /// STIR/SHAKEN verification result.
    #[serde(default, deserialize_with = "lenient_string")]
    pub stir_verification: Option<String>,
    /// Plivo's id for this API request.
    #[serde(default, deserialize_with = "lenient_string")]
    pub api_id: Option<String>,
}

impl LiveCall {
    /// `session_start`, parsed.
    pub fn session_start(&self) -> Option<PlivoTime> {
        self.session_start.as_deref().and_then(PlivoTime::parse)
    }
}

/// A completed call's record (`GET .../Call/{uuid}/`, reference §4.3). Plivo writes it
/// only after the call ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cdr {
    /// The call's uuid.
    pub call_uuid: String,
    /// When the call was answered; `None` if it never was.
    #[serde(default, deserialize_with = "lenient_string")]
    pub answer_time: Option<String>,
    /// When the call was placed or arrived.
    #[serde(default, deserialize_with = "lenient_string")]
    pub initiation_time: Option<String>,
    /// When the call ended.
    #[serde(default, deserialize_with = "lenient_string")]
    pub end_time: Option<String>,
    /// Answered seconds that were billed.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub bill_duration: Option<u64>,
    /// `bill_duration` rounded up to the billing interval.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub billed_duration: Option<u64>,
    /// Length of the call in seconds.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub call_duration: Option<u64>,
    /// `inbound` or `outbound`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub call_direction: Option<String>,
    /// E.g. `ANSWER` (values are not enumerated by Plivo).
    #[serde(default, deserialize_with = "lenient_string")]
    pub call_state: Option<String>,
    /// Plivo's hangup cause code (reference §5.3), e.g. 4000.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub hangup_cause_code: Option<u32>,
    /// E.g. `Normal Hangup`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub hangup_cause_name: Option<String>,
    /// Who hung up: `Caller`, `Callee`, `Plivo`, `API Request`, ….
    #[serde(default, deserialize_with = "lenient_string")]
    pub hangup_source: Option<String>,
    /// Caller.
    #[serde(default, deserialize_with = "lenient_string")]
    pub from_number: Option<String>,
    /// Called party.
    #[serde(default, deserialize_with = "lenient_string")]
    pub to_number: Option<String>,
    /// The A leg's uuid when this is a B leg.
    #[serde(default, deserialize_with = "lenient_string")]
    pub parent_call_uuid: Option<String>,
    /// Path of this record.
    #[serde(default, deserialize_with = "lenient_string")]
    pub resource_uri: Option<String>,
    /// Cost, as Plivo's decimal string.
    #[serde(default, deserialize_with = "lenient_string")]
    pub total_amount: Option<String>,
    /// Rate per minute, as Plivo's decimal string.
    #[serde(default, deserialize_with = "lenient_string")]
    pub total_rate: Option<String>,
    /// Plivo's id for this API request.
    #[serde(default, deserialize_with = "lenient_string")]
    pub api_id: Option<String>,
}

impl Cdr {
    /// `answer_time`, parsed.
    pub fn answer_time(&self) -> Option<PlivoTime> {
        self.answer_time.as_deref().and_then(PlivoTime::parse)
    }

    /// `initiation_time`, parsed.
    pub fn initiation_time(&self) -> Option<PlivoTime> {
        self.initiation_time.as_deref().and_then(PlivoTime::parse)
    }

    /// `end_time`, parsed.
    pub fn end_time(&self) -> Option<PlivoTime> {
        self.end_time.as_deref().and_then(PlivoTime::parse)
    }

    /// Whether the call was answered (it has an answer time).
    pub fn was_answered(&self) -> bool {
        self.answer_time.as_deref().is_some_and(|t| !t.is_empty())
    }
}

/// What a hangup or cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupOutcome {
    /// 204: Plivo hung up the call (or cancelled the request).
    HungUp,
    /// 404: nothing to hang up — the call already ended, or never existed.
    AlreadyGone,
}

/// A Plivo timestamp: `yyyy-MM-dd HH:mm:ss[.ffffff][±HH:MM]`. Without an offset it is in
/// the account's time zone, which the API does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlivoTime {
    /// The wall-clock time as written.
    pub local: NaiveDateTime,
    /// The offset, when Plivo wrote one (`+05:30`).
    pub offset: Option<FixedOffset>,
}

impl PlivoTime {
    /// Parses Plivo's format (a `T` separator and a `Z` or `±HHMM` offset are accepted
    /// too); `None` if it is something else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
            if let Ok(at) = DateTime::parse_from_str(text, format) {
                return Some(Self::with_offset(at));
            }
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
            if let Ok(at) = DateTime::parse_from_str(text, format) {
                return Some(Self::with_offset(at));
            }
        }
        let (text, utc) = match text.strip_suffix('Z') {
            Some(text) => (text, true),
            None => (text, false),
        };
        for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if let Ok(local) = NaiveDateTime::parse_from_str(text, format) {
                let offset = utc.then(|| Utc.fix());
                return Some(Self { local, offset });
            }
        }
        None
    }

    fn with_offset(at: DateTime<FixedOffset>) -> Self {
        Self {
            local: at.naive_local(),
            offset: Some(*at.offset()),
        }
    }

    /// The instant, using the written offset or else `account_offset` (the account's
    /// time zone, from configuration).
    pub fn to_utc(&self, account_offset: FixedOffset) -> DateTime<Utc> {
        let offset = self.offset.unwrap_or(account_offset);
        match offset.from_local_datetime(&self.local).single() {
            Some(at) => at.with_timezone(&Utc),
            // A fixed offset maps every local time to exactly one instant.
            None => Utc.from_utc_datetime(&self.local),
        }
    }
}

/// A string or a list of strings → the (first) string.
fn first_of_string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => Ok(one),
        OneOrMany::Many(many) => many
            .into_iter()
            .next()
            .ok_or_else(|| serde::de::Error::custom("request_uuid is an empty list")),
    }
}

/// A string, or a number or bool written out; `null` → `None`. Objects and arrays are
/// written as compact JSON rather than failing the whole record.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    })
}

fn lenient_string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient_string(d)?.unwrap_or_default())
}

/// A non-negative whole number as a JSON number or a numeric string (`"12"`, `"12.0"`);
/// `null`, `""` or anything unreadable → `None` rather than failing the record.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(match &value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(whole)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(whole))
        }
        _ => None,
    })
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(lenient_u64(d)?.and_then(|n| u32::try_from(n).ok()))
}

/// `x` as a u64 if it is a finite, non-negative whole number in range.
fn whole(x: f64) -> Option<u64> {
    (x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= u64::MAX as f64).then_some(x as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_and_without_offset() {
        let t = PlivoTime::parse("2017-05-22 17:49:40+05:30").unwrap();
        assert_eq!(t.offset, FixedOffset::east_opt(5 * 3600 + 1800));
        assert_eq!(
            t.to_utc(FixedOffset::east_opt(0).unwrap()).to_rfc3339(),
            "2017-05-22T12:19:40+00:00"
        );
        let t = PlivoTime::parse("2017-05-22 13:17:49.050872").unwrap();
        assert_eq!(t.offset, None);
        assert_eq!(t.local.and_utc().timestamp_subsec_micros(), 50_872);
        let ist = FixedOffset::east_opt(19_800).unwrap();
        assert_eq!(
            t.to_utc(ist).to_rfc3339(),
            "2017-05-22T07:47:49.050872+00:00"
        );
        assert!(PlivoTime::parse("2017-05-22 17:49:40+0530").is_some());
        assert!(
            PlivoTime::parse("2017-05-22T17:49:40Z")
                .unwrap()
                .offset
                .is_some()
        );
        for bad in ["", "yesterday", "2017-13-40 00:00:00", "2017-05-22"] {
            assert_eq!(PlivoTime::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        let cdr: Cdr = serde_json::from_str(
            r#"{"call_uuid":"u","bill_duration":"12","billed_duration":60.0,
                "call_duration":" 13 ","hangup_cause_code":"4000","total_amount":0.0085,
                "answer_time":null,"end_time":"","from_number":919999999999}"#,
        )
        .unwrap();
        assert_eq!(cdr.bill_duration, Some(12));
        assert_eq!(cdr.billed_duration, Some(60));
        assert_eq!(cdr.call_duration, Some(13));
        assert_eq!(cdr.hangup_cause_code, Some(4000));
        assert_eq!(cdr.total_amount.as_deref(), Some("0.0085"));
        assert_eq!(cdr.from_number.as_deref(), Some("919999999999"));
        assert_eq!(cdr.answer_time, None);
        assert!(!cdr.was_answered());
        assert_eq!(cdr.end_time(), None);
        let odd: Cdr = serde_json::from_str(
            r#"{"call_uuid":"u","bill_duration":-1,"call_duration":"n/a","hangup_cause_code":1e20}"#,
        )
        .unwrap();
        assert_eq!(
            (odd.bill_duration, odd.call_duration, odd.hangup_cause_code),
            (None, None, None)
        );
    }

    #[test]
    fn make_call_leaves_out_unset_params() {
        let mut call = MakeCall::new("14155550100", "14155550199", "https://vg/answer");
        call.hangup_method = Some(CallbackMethod::Get);
        call.time_limit = Some(600);
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"from":"14155550100","to":"14155550199",
                "answer_url":"https://vg/answer","hangup_method":"GET","time_limit":600})
        );
    }
}
