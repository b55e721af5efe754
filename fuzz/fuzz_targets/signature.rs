//! Any URL, params, tokens and headers into the V3/V2 signers and the verifier: never a
//! panic, and a signature made with a token always verifies under that token.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use voxgate::telephony::plivo::signature::{
    Method, Verifier, compute_v2, compute_v3, websocket_signing_url,
};

const HEADER_NAMES: [&str; 4] = [
    "x-plivo-signature-v3",
    "X-Plivo-Signature-Ma-V3",
    "X-PLIVO-SIGNATURE-V3-NONCE",
    "x-other",
];

type Input = (
    bool,
    String,
    Vec<(String, String)>,
    Vec<String>,
    (Option<String>, Option<String>),
    Vec<(u8, Vec<u8>)>,
);

fuzz_target!(|input: Input| {
    let (post, url, params, tokens, (signature, nonce), raw_headers) = input;
    let method = if post { Method::Post } else { Method::Get };
    let nonce_text = nonce.clone().unwrap_or_default();

    let _ = compute_v2("tok", &url, &nonce_text);
    let _ = websocket_signing_url(&url);
    let verifier = Verifier::new(tokens.clone());
    let _ = verifier.verify(
        method,
        &url,
        &params,
        signature.as_deref(),
        nonce.as_deref(),
    );

    let mut headers = HeaderMap::new();
    for (name, value) in &raw_headers {
        let name = HEADER_NAMES[usize::from(*name) % HEADER_NAMES.len()];
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let _ = verifier.verify_headers(method, &url, &params, &headers);

    // Round trip: whatever the input, a signature made with one of the tokens verifies,
    // alone or anywhere in a comma-separated list.
    if let Some(token) = tokens.iter().find(|t| !t.is_empty())
        && !nonce_text.is_empty()
    {
        let good = compute_v3(token, method, &url, &params, &nonce_text);
        let list = format!("{},{good}", signature.unwrap_or_default());
        assert!(
            verifier
                .verify(method, &url, &params, Some(&list), Some(&nonce_text))
                .is_ok()
        );
    }
});
