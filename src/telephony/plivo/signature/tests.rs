use super::*;

/// Auth token, nonce and params of the vectors in Plivo's Go SDK (`utils_test.go`).
const TOKEN: &str = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4";
const NONCE: &str = "31627761595286130198";
const URL_QUERY: &str =
    "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml/?a=b&c=d";
const URL_PLAIN: &str = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml";

fn vector_params() -> Vec<(String, String)> {
    pairs(&[
        ("Direction", "outbound"),
        ("From", "19792014278"),
        ("ALegUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("CallStatus", "in-progress"),
        ("BillRate", "0.002"),
        ("ParentAuthID", "MANWVLYTK4ZWU1YTY4QA"),
        (
            "To",
            "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
        ),
        ("ALegRequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("CallUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        ("RequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
        (
            "SIP-H-To",
            "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
        ),
        ("SessionStart", "2020-04-08 11:34:33.238707"),
        ("Event", "StartApp"),
    ])
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in list {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

#[test]
fn v3_matches_plivo_sdk_vectors() {
    let params = vector_params();
    let cases = [
        (
            Method::Post,
            URL_QUERY,
            "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c=",
        ),
        (
            Method::Get,
            URL_QUERY,
            "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ=",
        ),
        (
            Method::Post,
            URL_PLAIN,
            "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0=",
        ),
        (
            Method::Get,
            URL_PLAIN,
            "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc=",
        ),
    ];
    let verifier = Verifier::new(vec![TOKEN.to_owned()]);
    for (method, url, expected) in cases {
        assert_eq!(
            compute_v3(TOKEN, method, url, &params, NONCE),
            expected,
            "{method:?} {url}"
        );
        assert_eq!(
            verifier.verify(method, url, &params, Some(expected), Some(NONCE)),
            Ok(())
        );
    }
}

#[test]
fn v2_matches_plivo_sdk_vector() {
    assert_eq!(
        compute_v2("my_auth_token", "https://answer.url", "12345"),
        "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
    );
    // The query is not part of V2.
    assert_eq!(
        compute_v2("my_auth_token", "https://answer.url?x=1&y=2", "12345"),
        "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
    );
}

#[test]
fn base_string_matches_reference_examples() {
    let post = pairs(&[("To", "1"), ("From", "2")]);
    assert_eq!(
        base_string(Method::Post, "https://h/p", &post),
        "https://h/p?From2To1"
    );
    assert_eq!(
        base_string(Method::Post, "https://h/p?a=b", &post),
        "https://h/p?a=b.From2To1"
    );
    assert_eq!(
        base_string(Method::Get, "https://h/p?To=1&From=2", &[]),
        "https://h/p?From=2&To=1"
    );
    // No POST params: the query alone, and no `?` without one.
    assert_eq!(
        base_string(Method::Post, "https://h/p?b=2&a=1", &[]),
        "https://h/p?a=1&b=2"
    );
    assert_eq!(base_string(Method::Post, "https://h/p", &[]), "https://h/p");
    assert_eq!(base_string(Method::Get, "https://h/p", &[]), "https://h/p");
    // The full message is base + `.` + nonce.
    let key = keyed("t");
    let mut mac = HmacSha256::new_from_slice(b"t").unwrap();
    mac.update(b"https://h/p?From2To1.n1");
    assert_eq!(
        sign_v3(&key, "https://h/p?From2To1", "n1"),
        BASE64.encode(mac.finalize().into_bytes())
    );
}

#[test]
fn keys_sort_by_byte_order_and_repeated_values_sort() {
    let post = pairs(&[("b", "1"), ("a", "2"), ("a", "1"), ("B", "0")]);
    assert_eq!(
        base_string(Method::Post, "https://h/p", &post),
        "https://h/p?B0a1a2b1"
    );
    assert_eq!(
        base_string(Method::Get, "https://h/p?b=1&a=2&a=1&B=0", &[]),
        "https://h/p?B=0&a=1&a=2&b=1"
    );
}

#[test]
fn get_merges_params_with_the_url_value_winning() {
    let url = "https://h/p?CallUUID=u&From=2";
    assert_eq!(
        base_string(Method::Get, url, &pairs(&[("To", "1")])),
        "https://h/p?CallUUID=u&From=2&To=1"
    );
    // Passing the query again as params changes nothing.
    let again = pairs(&[("From", "2"), ("CallUUID", "u")]);
    assert_eq!(
        base_string(Method::Get, url, &again),
        base_string(Method::Get, url, &[])
    );
    assert_eq!(
        base_string(Method::Get, url, &pairs(&[("From", "9")])),
        "https://h/p?CallUUID=u&From=2"
    );
}

#[test]
fn query_values_are_decoded_before_signing() {
    assert_eq!(
        base_string(Method::Get, "https://h/p?a=x%20y&b=x+y&c=%26%3D", &[]),
        "https://h/p?a=x y&b=x y&c=&="
    );
    let decoded = compute_v3(
        "t",
        Method::Get,
        "https://h/p",
        &pairs(&[("a", "x y")]),
        "1",
    );
    assert_eq!(
        compute_v3("t", Method::Get, "https://h/p?a=x%20y", &[], "1"),
        decoded
    );
    assert_eq!(
        compute_v3("t", Method::Get, "https://h/p?a=x+y", &[], "1"),
        decoded
    );
}

#[test]
fn port_and_trailing_slash_are_kept_and_fragment_dropped() {
    assert_eq!(
        base_string(Method::Get, "https://h:8443/p/?a=1", &[]),
        "https://h:8443/p/?a=1"
    );
    assert_ne!(
        compute_v3("t", Method::Get, "https://h:8443/p", &[], "1"),
        compute_v3("t", Method::Get, "https://h/p", &[], "1")
    );
    assert_ne!(
        compute_v3("t", Method::Get, "https://h/p/", &[], "1"),
        compute_v3("t", Method::Get, "https://h/p", &[], "1")
    );
    assert_eq!(
        base_string(Method::Post, "https://h/answer?a=1#ct=2000&rt=3000", &[]),
        "https://h/answer?a=1"
    );
    assert_eq!(base_string(Method::Get, "HTTPS://H/P", &[]), "https://H/P");
}

#[test]
fn comma_separated_list_accepts_any_entry() {
    let verifier = Verifier::new(vec![TOKEN.to_owned()]);
    let params = vector_params();
    let good = compute_v3(TOKEN, Method::Post, URL_PLAIN, &params, NONCE);
    let other = compute_v3("old-token", Method::Post, URL_PLAIN, &params, NONCE);
    for header in [
        format!("{other},{good}"),
        format!("{other}, {good}"),
        format!("{good},{other}"),
        format!(",,{good},"),
    ] {
        assert_eq!(
            verifier.verify(Method::Post, URL_PLAIN, &params, Some(&header), Some(NONCE)),
            Ok(()),
            "{header}"
        );
    }
    assert_eq!(
        verifier.verify(
            Method::Post,
            URL_PLAIN,
            &params,
            Some(&format!("{other},{other}")),
            Some(NONCE)
        ),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn any_of_several_tokens_verifies_and_empty_tokens_never_do() {
    let verifier = Verifier::new(vec!["sub".into(), String::new(), "main".into()]);
    for token in ["sub", "main"] {
        let sig = compute_v3(token, Method::Get, "https://h/p", &[], "7");
        assert_eq!(
            verifier.verify(Method::Get, "https://h/p", &[], Some(&sig), Some("7")),
            Ok(())
        );
    }
    let empty = compute_v3("", Method::Get, "https://h/p", &[], "7");
    assert_eq!(
        verifier.verify(Method::Get, "https://h/p", &[], Some(&empty), Some("7")),
        Err(SignatureError::Invalid)
    );
    let none = Verifier::new(vec![String::new()]);
    assert_eq!(
        none.verify(Method::Get, "https://h/p", &[], Some(&empty), Some("7")),
        Err(SignatureError::Invalid)
    );
    let shown = format!("{verifier:?}");
    assert!(!shown.contains("sub") && !shown.contains("main"), "{shown}");
}

#[test]
fn wrong_token_and_tampering_are_invalid() {
    let verifier = Verifier::new(vec![TOKEN.to_owned()]);
    let params = vector_params();
    let wrong = compute_v3("not-the-token", Method::Post, URL_QUERY, &params, NONCE);
    assert_eq!(
        verifier.verify(Method::Post, URL_QUERY, &params, Some(&wrong), Some(NONCE)),
        Err(SignatureError::Invalid)
    );

    let good = compute_v3(TOKEN, Method::Post, URL_QUERY, &params, NONCE);
    let mut tampered = params.clone();
    tampered[1].1 = "19792014279".into();
    assert_eq!(
        verifier.verify(Method::Post, URL_QUERY, &tampered, Some(&good), Some(NONCE)),
        Err(SignatureError::Invalid)
    );
    let mut added = params.clone();
    added.push(("X-PH-Extra".into(), "1".into()));
    assert_eq!(
        verifier.verify(Method::Post, URL_QUERY, &added, Some(&good), Some(NONCE)),
        Err(SignatureError::Invalid)
    );
    let other_url = URL_QUERY.replace("a=b", "a=c");
    assert_eq!(
        verifier.verify(Method::Post, &other_url, &params, Some(&good), Some(NONCE)),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verifier.verify(Method::Get, URL_QUERY, &params, Some(&good), Some(NONCE)),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verifier.verify(Method::Post, URL_QUERY, &params, Some(&good), Some("1")),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn missing_headers_are_missing() {
    let verifier = Verifier::new(vec![TOKEN.to_owned()]);
    let sig = compute_v3(TOKEN, Method::Get, URL_PLAIN, &[], NONCE);
    for (signature, nonce) in [
        (None, Some(NONCE)),
        (Some(sig.as_str()), None),
        (None, None),
        (Some(""), Some(NONCE)),
        (Some(" "), Some(NONCE)),
        (Some(sig.as_str()), Some("")),
    ] {
        let err = verifier
            .verify(Method::Get, URL_PLAIN, &[], signature, nonce)
            .unwrap_err();
        assert_eq!(err, SignatureError::Missing);
        assert_eq!(err.kind(), "missing");
    }
    assert_eq!(SignatureError::Invalid.kind(), "invalid");
}

#[test]
fn verify_headers_accepts_v3_or_ma_v3_case_insensitively() {
    let verifier = Verifier::new(vec!["sub".into(), "main".into()]);
    let url = "https://h/answer";
    let form = pairs(&[("CallUUID", "u"), ("From", "1")]);
    let sub = compute_v3("sub", Method::Post, url, &form, "42");
    let main = compute_v3("main", Method::Post, url, &form, "42");
    let bad = compute_v3("stranger", Method::Post, url, &form, "42");

    let ok_cases = [
        headers(&[
            ("X-Plivo-Signature-V3", &sub),
            ("x-plivo-signature-v3-nonce", "42"),
        ]),
        headers(&[
            ("X-Plivo-Signature-V3", &bad),
            ("X-PLIVO-SIGNATURE-MA-V3", &main),
            ("X-Plivo-Signature-V3-Nonce", "42"),
        ]),
        headers(&[
            ("X-Plivo-Signature-V3", &bad),
            ("X-Plivo-Signature-V3", &sub),
            ("X-Plivo-Signature-V3-Nonce", "42"),
        ]),
        headers(&[
            ("X-Plivo-Signature-V3", &format!("{bad},{sub}")),
            ("X-Plivo-Signature-V3-Nonce", "42"),
        ]),
    ];
    for map in &ok_cases {
        assert_eq!(
            verifier.verify_headers(Method::Post, url, &form, map),
            Ok(()),
            "{map:?}"
        );
    }

    let invalid = headers(&[
        ("X-Plivo-Signature-V3", &bad),
        ("X-Plivo-Signature-Ma-V3", &bad),
        ("X-Plivo-Signature-V3-Nonce", "42"),
    ]);
    assert_eq!(
        verifier.verify_headers(Method::Post, url, &form, &invalid),
        Err(SignatureError::Invalid)
    );
    let missing = [
        headers(&[("X-Plivo-Signature-V3", &sub)]),
        headers(&[("X-Plivo-Signature-V3-Nonce", "42")]),
        headers(&[
            ("X-Plivo-Signature-V3", ""),
            ("X-Plivo-Signature-V3-Nonce", "42"),
        ]),
        HeaderMap::new(),
    ];
    for map in &missing {
        assert_eq!(
            verifier.verify_headers(Method::Post, url, &form, map),
            Err(SignatureError::Missing),
            "{map:?}"
        );
    }
}

#[test]
fn websocket_upgrade_verifies_only_in_http_form() {
    let stream = "wss://media.example.net:8443/plivo/ws?call_id=a%2Bb&tenant=7";
    let signing = websocket_signing_url(stream);
    assert_eq!(
        signing,
        "http://media.example.net:8443/plivo/ws?call_id=a%2Bb&tenant=7"
    );
    assert_eq!(websocket_signing_url("ws://h/ws"), "http://h/ws");
    assert_eq!(websocket_signing_url("WSS://h/ws"), "http://h/ws");
    assert_eq!(websocket_signing_url("https://h/ws"), "https://h/ws");
    assert_eq!(websocket_signing_url("wß"), "wß");

    let verifier = Verifier::new(vec!["tok".into()]);
    let [(_, signature), (_, nonce)] = sign_v3_headers("tok", Method::Get, &signing, &[]);
    assert_eq!(
        verifier.verify(Method::Get, &signing, &[], Some(&signature), Some(&nonce)),
        Ok(())
    );
    for wrong in [stream, stream.replacen("wss", "https", 1).as_str()] {
        assert_eq!(
            verifier.verify(Method::Get, wrong, &[], Some(&signature), Some(&nonce)),
            Err(SignatureError::Invalid)
        );
    }
}

#[test]
fn signer_makes_plivo_like_headers() {
    let url = "https://h/answer?call_id=1";
    let form = pairs(&[("CallUUID", "u")]);
    let [(sig_name, signature), (nonce_name, nonce)] =
        sign_v3_headers("tok", Method::Post, url, &form);
    assert_eq!(sig_name, SIGNATURE_V3_HEADER);
    assert_eq!(nonce_name, NONCE_V3_HEADER);
    assert_eq!(nonce.len(), 20);
    assert!(nonce.bytes().all(|b| b.is_ascii_digit()), "{nonce}");
    assert_eq!(
        signature,
        compute_v3("tok", Method::Post, url, &form, &nonce)
    );

    let map = headers(&[(sig_name, &signature), (nonce_name, &nonce)]);
    let verifier = Verifier::new(vec!["tok".into()]);
    assert_eq!(
        verifier.verify_headers(Method::Post, url, &form, &map),
        Ok(())
    );
    let [(_, _), (_, second)] = sign_v3_headers("tok", Method::Post, url, &form);
    assert_ne!(nonce, second);
}

#[test]
fn http_methods_map() {
    assert_eq!(
        Method::from_http(&axum::http::Method::GET),
        Some(Method::Get)
    );
    assert_eq!(
        Method::from_http(&axum::http::Method::POST),
        Some(Method::Post)
    );
    assert_eq!(Method::from_http(&axum::http::Method::PUT), None);
}

#[test]
fn garbage_never_panics() {
    let verifier = Verifier::new(vec!["tok".into(), "ключ".into()]);
    let urls = [
        "",
        "?",
        "#",
        "://",
        "?&&=&==&%",
        "%zz%%%E9%80",
        "https://h/p?%FF%FE=%C3%28&a=%",
        "ΩΩΩ://ü/ö?ä=ß#ñ",
        "wsß://x",
        "https://[::1]:99999/p;x=1?q=1;2",
        "\0\u{1}\u{7f}",
    ];
    let params = pairs(&[("", ""), ("ключ", "значение"), ("\0", "\u{fffd}")]);
    let signatures = [
        "",
        ",",
        ",,,,",
        "ü,ö",
        "====",
        "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c=,\u{202e}",
    ];
    for url in urls {
        for method in [Method::Get, Method::Post] {
            for params in [&params[..], &[]] {
                let _ = compute_v3("tok", method, url, params, "n");
                let _ = compute_v2("tok", url, "n");
                let _ = websocket_signing_url(url);
                for signature in signatures {
                    for nonce in ["", "ü", "1"] {
                        assert!(
                            verifier
                                .verify(method, url, params, Some(signature), Some(nonce))
                                .is_err()
                        );
                    }
                }
            }
        }
    }
    let mut map = HeaderMap::new();
    map.insert(
        HeaderName::from_static("x-plivo-signature-v3"),
        axum::http::HeaderValue::from_bytes(b"\xff\xfe,abc").unwrap(),
    );
    map.insert(
        HeaderName::from_static("x-plivo-signature-v3-nonce"),
        axum::http::HeaderValue::from_bytes(b"\xe9").unwrap(),
    );
    assert_eq!(
        verifier.verify_headers(Method::Get, "https://h/p", &[], &map),
        Err(SignatureError::Invalid)
    );
    map.insert(
        HeaderName::from_static("x-plivo-signature-v3-nonce"),
        axum::http::HeaderValue::from_static("1"),
    );
    assert_eq!(
        verifier.verify_headers(Method::Get, "https://h/p", &[], &map),
        Err(SignatureError::Invalid)
    );
}
