//! A fake Google Cloud Storage on a loopback port: the subset of the GCS XML API that
//! object_store's GCS client uses to upload, answered the way GCS answers it, with the
//! objects kept in memory.
//!
//! Spoken (paths are `/{bucket}/{object}`, the object name percent-encoded):
//! - `PUT` — a whole object; `200` with `ETag: "<md5 hex>"`, `x-goog-generation`,
//!   `x-goog-metageneration`, `x-goog-hash: md5=…`, `x-goog-stored-content-length`;
//!   `411 MissingContentLength` without a `Content-Length`.
//! - `POST ?uploads` — initiate a multipart upload; an `InitiateMultipartUploadResult`.
//! - `PUT ?partNumber=N&uploadId=…` — one part (1 ≤ N ≤ 10000); `200` with its ETag.
//! - `POST ?uploadId=…` with a `CompleteMultipartUpload` body — parts in ascending order,
//!   each ETag matching what was stored, every part but the last at least 5 MiB (else
//!   `400 InvalidPartOrder` / `InvalidPart` / `EntityTooSmall`); a
//!   `CompleteMultipartUploadResult` and `x-goog-generation`.
//! - `DELETE ?uploadId=…` — abort; `204`.
//!
//! Errors are GCS's XML `<Error><Code>…</Code><Message>…</Message></Error>` with GCS's
//! codes (`NoSuchBucket`, `NoSuchUpload`, …).
//!
//! Not spoken: reads (`GET`/`HEAD`), listing, copy, object `DELETE`, conditional writes
//! (`x-goog-if-generation-match`), resumable uploads, the JSON API, crc32c hashes and
//! metadata headers — anything else is `501 NotImplemented`. There is no authentication:
//! it accepts only what object_store sends with a `"disable_oauth": true` service account
//! (no `Authorization`, or a `Bearer` with no token) and answers `401` to a real token,
//! which can only mean credentials leaked in from the environment.
//!
//! For tests: [`FakeGcs::object`] reads an object back, [`FakeGcs::fail_next`] makes the
//! next requests fail with `503`, [`FakeGcs::requests`] lists what was asked and answered.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use md5::{Digest, Md5};

/// GCS refuses smaller parts, except the last one.
const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// GCS's highest part number.
const MAX_PART_NUMBER: u32 = 10_000;
/// Larger than any part object_store sends us.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `PUT` of a whole object.
    Put,
    /// `POST ?uploads`.
    Initiate,
    /// `PUT ?partNumber=N&uploadId=…`.
    Part(u32),
    /// `POST ?uploadId=…`.
    Complete,
    /// `DELETE ?uploadId=…`.
    Abort,
    /// Anything the fake does not speak.
    Unsupported,
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Seen {
    /// What it asked for.
    pub op: Op,
    /// The object name (decoded).
    pub object: String,
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: StatusCode,
}

/// A fake GCS serving one bucket; the server stops when this is dropped.
pub struct FakeGcs {
    addr: SocketAddr,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    bucket: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    objects: HashMap<String, Bytes>,
    uploads: HashMap<String, Upload>,
    fail_next: usize,
    generation: u64,
    seen: Vec<Seen>,
}

struct Upload {
    object: String,
    parts: BTreeMap<u32, Bytes>,
}

impl FakeGcs {
    /// Serves `bucket` (empty) on 127.0.0.1 at a free port.
    pub async fn start(bucket: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Shared {
            bucket: bucket.to_owned(),
            inner: Mutex::new(Inner {
                // GCS generations are microsecond timestamps; only growth matters here.
                generation: 1_700_000_000_000_000,
                ..Inner::default()
            }),
        });
        let app = Router::new()
            .route("/{bucket}/{*object}", any(handle))
            .fallback(|| async { error(StatusCode::NOT_IMPLEMENTED, "NotImplemented") })
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            state,
            server,
        }
    }

    /// A service account key (JSON) that points object_store here, without OAuth.
    pub fn service_account_key(&self) -> String {
        serde_json::json!({
            "private_key": "unused with disable_oauth",
            "private_key_id": "fake",
            "client_email": "recorder@voxgate.test",
            "disable_oauth": true,
            "gcs_base_url": format!("http://{}", self.addr),
        })
        .to_string()
    }

    /// The stored bytes of `object`, if it exists.
    pub fn object(&self, object: &str) -> Option<Bytes> {
        self.lock().objects.get(object).cloned()
    }

    /// Multipart uploads initiated and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// The next `n` requests are answered `503 ServiceUnavailable` and change nothing.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap()
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path((bucket, object)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = classify(&method, &query);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut inner = shared.inner.lock().unwrap();
    let response = if inner.fail_next > 0 {
        inner.fail_next -= 1;
        error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
    } else if authorization
        .as_deref()
        .is_some_and(|a| a.trim() != "Bearer")
    {
        error(StatusCode::UNAUTHORIZED, "AuthenticationRequired")
    } else if bucket != shared.bucket {
        error(StatusCode::NOT_FOUND, "NoSuchBucket")
    } else {
        let upload_id = query.get("uploadId").map(String::as_str);
        match op {
            Op::Put if headers.contains_key(header::CONTENT_LENGTH) => {
                put(&mut inner, &object, body)
            }
            Op::Put => error(StatusCode::LENGTH_REQUIRED, "MissingContentLength"),
            Op::Initiate => initiate(&mut inner, &shared.bucket, &object),
            Op::Part(n) => part(&mut inner, &object, upload_id, n, body),
            Op::Complete => complete(&mut inner, &shared.bucket, &object, upload_id, &body),
            Op::Abort => match inner.uploads.get(upload_id.unwrap_or_default()) {
                Some(upload) if upload.object == object => {
                    inner.uploads.remove(upload_id.unwrap_or_default());
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => error(StatusCode::NOT_FOUND, "NoSuchUpload"),
            },
            Op::Unsupported => error(StatusCode::NOT_IMPLEMENTED, "NotImplemented"),
        }
    };
    inner.seen.push(Seen {
        op,
        object,
        authorization,
        status: response.status(),
    });
    response
}

fn classify(method: &Method, query: &HashMap<String, String>) -> Op {
    let upload_id = query.contains_key("uploadId");
    match *method {
        Method::PUT if query.is_empty() => Op::Put,
        Method::PUT if upload_id => match query.get("partNumber").map(|n| n.parse()) {
            Some(Ok(n)) => Op::Part(n),
            _ => Op::Unsupported,
        },
        Method::POST if query.contains_key("uploads") => Op::Initiate,
        Method::POST if upload_id => Op::Complete,
        Method::DELETE if upload_id => Op::Abort,
        _ => Op::Unsupported,
    }
}

fn put(inner: &mut Inner, object: &str, body: Bytes) -> Response {
    let digest = Md5::digest(&body);
    let etag = format!("\"{}\"", hex(&digest));
    let hash = format!(
        "md5={}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    let length = body.len();
    inner.objects.insert(object.to_owned(), body);
    let generation = next_generation(inner);
    (
        [
            (header::ETAG.as_str(), etag),
            ("x-goog-generation", generation),
            ("x-goog-metageneration", "1".to_owned()),
            ("x-goog-hash", hash),
            ("x-goog-stored-content-length", length.to_string()),
            ("x-goog-stored-content-encoding", "identity".to_owned()),
        ],
        (),
    )
        .into_response()
}

fn initiate(inner: &mut Inner, bucket: &str, object: &str) -> Response {
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    inner.uploads.insert(
        upload_id.clone(),
        Upload {
            object: object.to_owned(),
            parts: BTreeMap::new(),
        },
    );
    xml(format!(
        "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Bucket>{bucket}</Bucket><Key>{}</Key><UploadId>{upload_id}</UploadId>\
         </InitiateMultipartUploadResult>",
        escape(object)
    ))
}

fn part(
    inner: &mut Inner,
    object: &str,
    upload_id: Option<&str>,
    number: u32,
    body: Bytes,
) -> Response {
    if !(1..=MAX_PART_NUMBER).contains(&number) {
        return error(StatusCode::BAD_REQUEST, "InvalidArgument");
    }
    let Some(upload) = inner
        .uploads
        .get_mut(upload_id.unwrap_or_default())
        .filter(|u| u.object == object)
    else {
        return error(StatusCode::NOT_FOUND, "NoSuchUpload");
    };
    let etag = format!("\"{}\"", hex(&Md5::digest(&body)));
    upload.parts.insert(number, body);
    ([(header::ETAG, etag)], ()).into_response()
}

fn complete(
    inner: &mut Inner,
    bucket: &str,
    object: &str,
    upload_id: Option<&str>,
    body: &[u8],
) -> Response {
    let upload_id = upload_id.unwrap_or_default();
    let Some(upload) = inner.uploads.get(upload_id).filter(|u| u.object == object) else {
        return error(StatusCode::NOT_FOUND, "NoSuchUpload");
    };
    let Some(listed) = listed_parts(body) else {
        return error(StatusCode::BAD_REQUEST, "MalformedXML");
    };
    if !listed.windows(2).all(|w| w[0].0 < w[1].0) {
        return error(StatusCode::BAD_REQUEST, "InvalidPartOrder");
    }
    let mut data = Vec::new();
    let mut digests = Vec::new();
    for (i, (number, etag)) in listed.iter().enumerate() {
        let Some(part) = upload.parts.get(number) else {
            return error(StatusCode::BAD_REQUEST, "InvalidPart");
        };
        let digest = Md5::digest(part);
        if etag.trim_matches('"') != hex(&digest) {
            return error(StatusCode::BAD_REQUEST, "InvalidPart");
        }
        if i + 1 < listed.len() && part.len() < MIN_PART_BYTES {
            return error(StatusCode::BAD_REQUEST, "EntityTooSmall");
        }
        data.extend_from_slice(part);
        digests.extend_from_slice(&digest);
    }
    inner.uploads.remove(upload_id);
    inner.objects.insert(object.to_owned(), data.into());
    // A composed object has no MD5 of its own; its ETag is opaque to clients.
    let etag = format!("\"{}-{}\"", hex(&Md5::digest(&digests)), listed.len());
    let generation = next_generation(inner);
    let mut response = xml(format!(
        "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Location>http://{bucket}.storage.googleapis.com/{key}</Location>\
         <Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{etag}</ETag>\
         </CompleteMultipartUploadResult>",
        key = escape(object),
        etag = escape(&etag),
    ));
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.parse().unwrap());
    headers.insert("x-goog-generation", generation.parse().unwrap());
    response
}

/// `(PartNumber, ETag)` of each `<Part>` of a `CompleteMultipartUpload` body, or `None`
/// when it is not one (no part, or a part without both).
fn listed_parts(body: &[u8]) -> Option<Vec<(u32, String)>> {
    let body = std::str::from_utf8(body).ok()?;
    let inside = |text: &str, tag: &str| -> Option<String> {
        let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = start + text[start..].find(&format!("</{tag}>"))?;
        Some(text[start..end].replace("&quot;", "\""))
    };
    let listed: Option<Vec<_>> = body
        .split("<Part>")
        .skip(1)
        .map(|part| {
            Some((
                inside(part, "PartNumber")?.parse().ok()?,
                inside(part, "ETag")?,
            ))
        })
        .collect();
    listed.filter(|parts| !parts.is_empty())
}

fn next_generation(inner: &mut Inner) -> String {
    inner.generation += 1;
    inner.generation.to_string()
}

fn xml(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/xml; charset=UTF-8")],
        format!("<?xml version='1.0' encoding='UTF-8'?>{body}"),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str) -> Response {
    let mut response = xml(format!(
        "<Error><Code>{code}</Code><Message>fake GCS: {code}</Message></Error>"
    ));
    *response.status_mut() = status;
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
