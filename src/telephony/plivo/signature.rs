//! Plivo request signatures (reference §6): computing V3 and V2, verifying the headers of
//! an answer-URL request or a stream WebSocket upgrade, and signing requests for the
//! simulator, which plays Plivo.
//!
//! V3 is exactly the algorithm of Plivo's SDKs (Python, Node and Go agree on it and on the
//! four test vectors in the tests): the URL is split into `scheme://host[:port]/path` and
//! its query, query values are URL-decoded, keys are sorted by byte order and repeated keys
//! have their values sorted, then the string is HMAC-SHA256'd with the auth token and
//! base64-encoded. Where the reference and the SDKs disagree, the SDKs win.
//!
//! Invariants and what this module must never do:
//! - never panic, whatever bytes arrive in the URL, the parameters or the headers;
//! - compare signatures only in constant time ([`subtle`]), over every header entry and
//!   every token, so timing says nothing about which entry or token came close;
//! - never log, print or `Debug` an auth token; a [`Verifier`] holds only keyed HMAC
//!   states and prints only how many it has;
//! - never accept a request without both a signature and a nonce, nor with an empty auth
//!   token (empty tokens are dropped when the [`Verifier`] is built).
//!
//! It does not protect against replay: Plivo's nonce carries no timestamp, and remembering
//! nonces is the caller's business if it wants to. It never reads configuration.

use std::borrow::Cow;
use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderName};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use thiserror::Error;

#[cfg(test)]
mod tests;

type HmacSha256 = Hmac<Sha256>;

/// The V3 signature made with the auth token of the account that owns the number.
pub const SIGNATURE_V3_HEADER: &str = "X-Plivo-Signature-V3";
/// The V3 signature made with the main account's auth token.
pub const SIGNATURE_MA_V3_HEADER: &str = "X-Plivo-Signature-Ma-V3";
/// The nonce both V3 signatures were made with.
pub const NONCE_V3_HEADER: &str = "X-Plivo-Signature-V3-Nonce";

/// Number of decimal digits in a nonce made by [`sign_v3_headers`] (Plivo sends 20).
const NONCE_DIGITS: usize = 20;

/// The HTTP method a request was signed for. V3 builds the signed string differently for
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: the parameters are in the URL's query string. Also used for the WebSocket
    /// upgrade.
    Get,
    /// `POST`: the parameters are `application/x-www-form-urlencoded` body fields.
    Post,
}

impl Method {
    /// Maps an HTTP method; Plivo signs only `GET` and `POST`, so others are `None`.
    pub fn from_http(method: &axum::http::Method) -> Option<Self> {
        if method == axum::http::Method::GET {
            Some(Self::Get)
        } else if method == axum::http::Method::POST {
            Some(Self::Post)
        } else {
            None
        }
    }
}

/// Why a request's signature was not accepted. Either way the caller refuses the request
/// (answer URL: a refusal, WebSocket: close 1008) and counts it by [`SignatureError::kind`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature header, or no nonce header (or one of them empty).
    #[error("Plivo signature or nonce header missing")]
    Missing,
    /// The headers are there but no entry matches any auth token.
    #[error("Plivo signature does not match")]
    Invalid,
}

impl SignatureError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
        }
    }
}

/// Plivo's V3 signature of a request: base64 of HMAC-SHA256, keyed with `auth_token`, of
/// the string built from `method`, `url`, `params` and `nonce` (reference §6.2).
///
/// `params` are the decoded request parameters: the form fields of a POST; for a GET
/// normally none, since they are in `url`'s query (a key given in both counts once, with
/// the URL's value, as Plivo's Python SDK does).
pub fn compute_v3(
    auth_token: &str,
    method: Method,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> String {
    sign_v3(&keyed(auth_token), &base_string(method, url, params), nonce)
}

/// Plivo's deprecated V2 signature (reference §6.3): base64 of HMAC-SHA256 of
/// `scheme://host[:port]/path` followed directly by `nonce`; the query is dropped.
pub fn compute_v2(auth_token: &str, url: &str, nonce: &str) -> String {
    let (base, _query) = split_url(url);
    let mut mac = keyed(auth_token);
    mac.update(base.as_bytes());
    mac.update(nonce.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The URL Plivo signs a stream WebSocket upgrade with (reference §6.4): the stream URL
/// with `wss://` or `ws://` replaced by `http://`, port, path and query kept. Any other URL
/// comes back unchanged.
pub fn websocket_signing_url(url: &str) -> String {
    for scheme in ["wss://", "ws://"] {
        if let Some(prefix) = url.get(..scheme.len())
            && prefix.eq_ignore_ascii_case(scheme)
        {
            return format!("http://{}", &url[scheme.len()..]);
        }
    }
    url.to_owned()
}

/// Headers that make a request look signed by Plivo, for the simulator: a fresh random
/// 20-digit nonce and the V3 signature of the request with `auth_token`, as
/// `[(X-Plivo-Signature-V3, signature), (X-Plivo-Signature-V3-Nonce, nonce)]`.
pub fn sign_v3_headers(
    auth_token: &str,
    method: Method,
    url: &str,
    params: &[(String, String)],
) -> [(&'static str, String); 2] {
    let nonce: String = (0..NONCE_DIGITS)
        .map(|_| char::from(b'0' + rand::random_range(0..10u8)))
        .collect();
    let signature = compute_v3(auth_token, method, url, params, &nonce);
    [(SIGNATURE_V3_HEADER, signature), (NONCE_V3_HEADER, nonce)]
}

/// The header carrying a V3 signature's nonce.
const NONCE_HEADER: HeaderName = HeaderName::from_static("x-plivo-signature-v3-nonce");

/// The request's V3 nonce, when it has a readable one: what a replay guard remembers
/// (a captured upgrade replayed as is carries the same nonce).
pub fn nonce(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(NONCE_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|nonce| !nonce.is_empty())
}

/// Checks Plivo's V3 signatures against one or more auth tokens (the subaccount's, the
/// main account's, or both while a token is being rotated).
///
/// Each token is keyed into an HMAC state once, at construction. A verifier with no
/// (non-empty) token rejects every request as [`SignatureError::Invalid`].
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("tokens", &self.keys.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier accepting a signature made with any of `tokens`. Empty tokens are
    /// dropped: an empty key would let anyone sign.
    pub fn new(tokens: Vec<String>) -> Self {
        let keys = tokens
            .iter()
            .filter(|token| !token.is_empty())
            .map(|token| keyed(token))
            .collect();
        Self { keys }
    }

    /// Verifies one signature header (`signature_header`, possibly a comma-separated list)
    /// and its nonce: `Ok` if any entry equals the V3 signature of the request under any
    /// token.
    pub fn verify(
        &self,
        method: Method,
        url: &str,
        params: &[(String, String)],
        signature_header: Option<&str>,
        nonce_header: Option<&str>,
    ) -> Result<(), SignatureError> {
        let (Some(signatures), Some(nonce)) = (
            signature_header.filter(|s| !s.trim().is_empty()),
            nonce_header.filter(|n| !n.is_empty()),
        ) else {
            return Err(SignatureError::Missing);
        };
        let expected = self.expected(method, url, params, nonce);
        if matches_any(&expected, signatures).into() {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// Verifies a request from its headers: `X-Plivo-Signature-V3` or
    /// `X-Plivo-Signature-Ma-V3` (either may match, each may be a comma-separated list or
    /// repeated) with `X-Plivo-Signature-V3-Nonce`. Header names are case-insensitive.
    /// A header value that is not visible ASCII never matches.
    pub fn verify_headers(
        &self,
        method: Method,
        url: &str,
        params: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<(), SignatureError> {
        let nonce = match headers.get(NONCE_HEADER) {
            None => return Err(SignatureError::Missing),
            Some(value) => value.to_str().map_err(|_| SignatureError::Invalid)?,
        };
        let signature_values = || {
            headers
                .get_all(HeaderName::from_static("x-plivo-signature-v3"))
                .iter()
                .chain(
                    headers
                        .get_all(HeaderName::from_static("x-plivo-signature-ma-v3"))
                        .iter(),
                )
        };
        if nonce.is_empty() || signature_values().all(|value| value.is_empty()) {
            return Err(SignatureError::Missing);
        }
        let expected = self.expected(method, url, params, nonce);
        let mut ok = Choice::from(0);
        for value in signature_values() {
            if let Ok(signatures) = value.to_str() {
                ok |= matches_any(&expected, signatures);
            }
        }
        if ok.into() {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// The V3 signature of the request under each token.
    fn expected(
        &self,
        method: Method,
        url: &str,
        params: &[(String, String)],
        nonce: &str,
    ) -> Vec<String> {
        let base = base_string(method, url, params);
        self.keys
            .iter()
            .map(|key| sign_v3(key, &base, nonce))
            .collect()
    }
}

/// Whether any comma-separated entry of `header` equals any expected signature. Looks at
/// every pair whatever the outcome, so the time taken depends only on the lengths.
fn matches_any(expected: &[String], header: &str) -> Choice {
    let mut ok = Choice::from(0);
    for entry in header.split(',') {
        let entry = entry.trim().as_bytes();
        for signature in expected {
            ok |= entry.ct_eq(signature.as_bytes());
        }
    }
    ok
}

fn keyed(auth_token: &str) -> HmacSha256 {
    // HMAC pads or hashes the key to its block size, so no length is refused.
    HmacSha256::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length")
}

/// base64(HMAC(`base` + `.` + `nonce`)) with an already keyed state.
fn sign_v3(key: &HmacSha256, base: &str, nonce: &str) -> String {
    let mut mac = key.clone();
    mac.update(base.as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The V3 string before `.nonce` (reference §6.2, steps 1–3).
///
/// GET: `base` + (`?` + sorted `k=v` joined by `&`, if any), over the URL's query merged
/// with `params`. POST: `base` + `?` + sorted query + (`.` if the query is non-empty) +
/// sorted `kv` pairs of `params`, or just `base` (+ `?` + query) when there are no params.
fn base_string(method: Method, url: &str, params: &[(String, String)]) -> String {
    let (base, query) = split_url(url);
    let mut query_pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        form_urlencoded::parse(query.as_bytes()).collect();
    let mut out = String::with_capacity(url.len() + 64);
    out.push_str(&base);
    match method {
        Method::Get => {
            // On a key in both, the URL's value wins (Plivo's Python SDK); passing the
            // query again as params is therefore harmless.
            let url_keys: HashSet<&str> = query_pairs.iter().map(|(k, _)| k.as_ref()).collect();
            let extra: Vec<(Cow<'_, str>, Cow<'_, str>)> = params
                .iter()
                .filter(|(k, _)| !url_keys.contains(k.as_str()))
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect();
            query_pairs.extend(extra);
            query_pairs.sort_unstable();
            if !query_pairs.is_empty() {
                out.push('?');
                push_joined(&mut out, &query_pairs);
            }
        }
        Method::Post => {
            query_pairs.sort_unstable();
            if !query_pairs.is_empty() || !params.is_empty() {
                out.push('?');
                push_joined(&mut out, &query_pairs);
            }
            if !params.is_empty() {
                if !query_pairs.is_empty() {
                    out.push('.');
                }
                let mut sorted: Vec<&(String, String)> = params.iter().collect();
                sorted.sort_unstable();
                for (key, value) in sorted {
                    out.push_str(key);
                    out.push_str(value);
                }
            }
        }
    }
    out
}

/// Appends `k=v` pairs joined by `&`.
fn push_joined(out: &mut String, pairs: &[(Cow<'_, str>, Cow<'_, str>)]) {
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
}

/// Splits a URL into `scheme://host[:port]/path` (path kept exactly, scheme lowercased as
/// the SDKs' URL parsers do) and its raw query; a `#fragment` is dropped, as it never
/// reaches the server.
fn split_url(url: &str) -> (Cow<'_, str>, &str) {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match base.split_once("://") {
        Some((scheme, rest))
            if scheme.bytes().any(|b| b.is_ascii_uppercase())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            Cow::Owned(format!("{}://{rest}", scheme.to_ascii_lowercase()))
        }
        _ => Cow::Borrowed(base),
    };
    (base, query)
}
