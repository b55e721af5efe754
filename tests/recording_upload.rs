//! Finished recordings end up in object storage and on the call: uploads to a real
//! S3-compatible server (moto, on loopback) and to a fake Google Cloud Storage speaking
//! its XML API (`common::gcs`, on loopback), each including one whose first attempt fails,
//! a large one that goes up in parts and one that never gets through; the Ogg Opus path
//! checked by an independent decoder (opus-tools), and the keep-local default through the
//! recorder's handoff.
//!
//! Needs `moto_server` (`pip install 'moto[server]'`) and `opusinfo`/`opusdec`
//! (Debian `opus-tools`); `scripts/test.sh` installs both.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use tokio::net::{TcpListener, TcpStream};
use voxgate::config::{CliOverrides, Config};
use voxgate::control::model::{CallRecord, Direction, EventType};
use voxgate::control::plane::ControlPlane;
use voxgate::control::store::{MemoryStore, SinkKind, Store};
use voxgate::ids::CallId;
use voxgate::recording::FinishedRecording;
use voxgate::recording::config::RecordingFormat;
use voxgate::recording::publish::{PublishError, Publisher};
use voxgate::recording::publish_config::PublishConfig;
use voxgate::recording::retention;
use voxgate::recording::target::UploadTarget;
use voxgate::recording::upload::{PART_BYTES, Uploader};

use common::gcs::{FakeGcs, Op};

const BUCKET: &str = "recordings";

/// A moto S3 server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_moto() -> Moto {
    let port = free_port();
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
    let child = Command::new("moto_server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .or_else(|_| {
            Command::new("python3")
                .args(["-m", "moto.server"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("moto is not installed: `pip install 'moto[server]'` (scripts/test.sh does)");
    let mut moto = Moto {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Some(status) = moto.child.try_wait().unwrap() {
            panic!("moto_server exited ({status}): is `moto[server]` installed?");
        }
        // Creating the bucket doubles as the readiness check (moto does not check
        // signatures).
        if let Ok(response) = client
            .put(format!("http://{}/{BUCKET}", moto.addr))
            .send()
            .await
            && response.status().is_success()
        {
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not answer on {} within 30 s", moto.addr);
}

/// A loopback TCP proxy to `upstream` that closes the first `refuse` connections at once
/// (an S3 endpoint that drops the request); counts what it refused.
async fn flaky_proxy(
    upstream: Option<SocketAddr>,
    refuse: usize,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&refused);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let Some(upstream) = upstream.filter(|_| count.load(Ordering::SeqCst) >= refuse) else {
                count.fetch_add(1, Ordering::SeqCst);
                drop(client);
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, refused)
}

/// A fresh folder under the system temp dir, removed on drop (also when a test fails).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("voxgate-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A stereo PCM16 WAV like the recorder's: a 440 Hz tone on the left (caller), silence
/// on the right (agent).
fn write_wav(dir: &Path, call_id: &str, sample_rate: u32, frames: usize) -> FinishedRecording {
    let path = dir.join(format!("{call_id}.wav"));
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..frames {
        let t = i as f64 / f64::from(sample_rate);
        let tone = (t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0;
        writer.write_sample(tone as i16).unwrap();
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    FinishedRecording {
        call_id: call_id.to_owned(),
        path,
        duration: Duration::from_secs_f64(frames as f64 / f64::from(sample_rate)),
        sample_rate,
    }
}

/// A control plane over an in-memory store with the queue sink, holding one ended call.
async fn plane_with_ended_call(call_id: &str) -> (Arc<ControlPlane>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(&[SinkKind::Queue]));
    let control = Config::load(None, &HashMap::new(), CliOverrides::default())
        .unwrap()
        .control;
    let plane = Arc::new(ControlPlane::new(
        Arc::clone(&store),
        None,
        control,
        Arc::new(|| {}),
    ));
    let call = CallRecord::new(call_id, Direction::Outbound, "+14155550100", "+14155550199");
    store.create_call(call, EventType::Initiated).await.unwrap();
    plane
        .on_media_started(&CallId::parse(call_id).unwrap(), Some("uuid-1".into()))
        .await
        .unwrap();
    plane
        .observe(
            call_id,
            voxgate::control::lifecycle::Observation {
                status: Some("completed".into()),
                duration_secs: Some(30),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (plane, store)
}

/// Every event the queue sink would receive, in order (claims and acks them all).
async fn delivered(store: &Arc<dyn Store>) -> Vec<EventType> {
    let mut events = Vec::new();
    loop {
        let batch = store
            .claim(SinkKind::Queue, 100, Duration::from_secs(60))
            .await
            .unwrap();
        if batch.is_empty() {
            return events;
        }
        let ids: Vec<u64> = batch.iter().map(|entry| entry.id).collect();
        events.extend(batch.into_iter().map(|entry| entry.event.event));
        store.ack(SinkKind::Queue, &ids).await.unwrap();
    }
}

/// Uploads of `dir`'s recordings to `url`, retried `retries` times, quickly.
fn upload_config(
    dir: &Path,
    url: String,
    retries: u32,
    store_options: &[(&str, String)],
) -> PublishConfig {
    PublishConfig {
        dir: dir.to_owned(),
        upload_url: Some(UploadTarget::parse(&url).unwrap()),
        upload_retries: retries,
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
        store_options: store_options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..PublishConfig::default()
    }
}

fn s3_config(dir: &Path, endpoint: SocketAddr, retries: u32) -> PublishConfig {
    upload_config(
        dir,
        format!("s3://{BUCKET}/calls"),
        retries,
        &[
            ("aws_endpoint", format!("http://{endpoint}")),
            ("aws_allow_http", "true".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", "test".into()),
            ("aws_secret_access_key", "test".into()),
        ],
    )
}

/// Uploads to `gcs` through object_store's own configuration (no environment): a service
/// account with `disable_oauth` and the fake's base URL.
fn gcs_config(dir: &Path, gcs: &FakeGcs, retries: u32) -> PublishConfig {
    upload_config(
        dir,
        format!("gs://{BUCKET}/calls"),
        retries,
        &[("google_service_account_key", gcs.service_account_key())],
    )
}

/// The bucket holds exactly the local recording, and `call.recording_ready` went out.
async fn assert_stored(object: &[u8], recording: &FinishedRecording, store: &Arc<dyn Store>) {
    assert_eq!(
        object.len() as u64,
        std::fs::metadata(&recording.path).unwrap().len()
    );
    assert!(
        object == std::fs::read(&recording.path).unwrap(),
        "bytes differ"
    );
    assert!(delivered(store).await.contains(&EventType::RecordingReady));
}

/// Reads an object back from moto directly (not through the proxy), signed like any
/// S3 client would.
async fn s3_object(moto: &Moto, key: &str) -> Vec<u8> {
    let config = s3_config(Path::new("/unused"), moto.addr, 0);
    let target = config.upload_url.clone().unwrap();
    let reader = Uploader::new(target, &config.store_options, config.retry_policy(), None).unwrap();
    let object = reader
        .store()
        .get(&ObjectPath::from(key))
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    object.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn s3_upload_survives_a_refused_first_attempt_and_announces_the_url() {
    let moto = start_moto().await;
    let (endpoint, refused) = flaky_proxy(Some(moto.addr), 1).await;
    let dir = temp_dir("s3");
    let (plane, store) = plane_with_ended_call("call-s3").await;
    assert_eq!(
        delivered(&store).await,
        [
            EventType::Initiated,
            EventType::Answered,
            EventType::MediaStarted,
            EventType::Ended
        ]
    );
    let publisher = Publisher::new(&s3_config(&dir, endpoint, 5), plane.clone()).unwrap();

    let recording = write_wav(&dir, "call-s3", 8_000, 8_000 * 3);
    let published = publisher.publish(recording.clone()).await.unwrap();

    assert_eq!(
        refused.load(Ordering::SeqCst),
        1,
        "the first attempt was refused"
    );
    assert_eq!(published.attempts, 2, "and the second went through");
    assert_eq!(published.url, "s3://recordings/calls/call-s3.wav");
    let local = std::fs::read(&recording.path).unwrap();
    assert_eq!(
        s3_object(&moto, "calls/call-s3.wav").await,
        local,
        "same bytes in the bucket"
    );
    assert!(
        retention::is_published(&recording.path),
        "local copy kept, marked for retention"
    );

    let call = plane.get("call-s3").await.unwrap().unwrap();
    assert_eq!(call.recording_url.as_deref(), Some(published.url.as_str()));
    assert!(call.state.is_terminal(), "the URL lands on an ended call");
    assert_eq!(delivered(&store).await, [EventType::RecordingReady]);

    // Handing the same recording over again changes nothing on the call.
    publisher.publish(recording).await.unwrap();
    assert_eq!(delivered(&store).await, []);
}

#[tokio::test]
async fn a_large_recording_goes_up_in_parts() {
    let moto = start_moto().await;
    let dir = temp_dir("s3-large");
    let (plane, store) = plane_with_ended_call("call-long").await;
    let publisher = Publisher::new(&s3_config(&dir, moto.addr, 0), plane.clone()).unwrap();
    // 16 kHz stereo PCM16 for 5 minutes: ~19 MiB, over two multipart parts.
    let recording = write_wav(&dir, "call-long", 16_000, 16_000 * 300);
    let size = std::fs::metadata(&recording.path).unwrap().len();
    assert!(size > 2 * PART_BYTES as u64);

    let published = publisher.publish(recording.clone()).await.unwrap();
    assert_eq!(published.attempts, 1);
    let object = s3_object(&moto, "calls/call-long.wav").await;
    assert_stored(&object, &recording, &store).await;
}

#[tokio::test]
async fn an_upload_that_never_gets_through_keeps_the_local_file_and_announces_nothing() {
    let (endpoint, refused) = flaky_proxy(None, usize::MAX).await;
    let dir = temp_dir("s3-down");
    let (plane, store) = plane_with_ended_call("call-down").await;
    delivered(&store).await;
    let publisher = Publisher::new(&s3_config(&dir, endpoint, 2), plane.clone()).unwrap();
    let recording = write_wav(&dir, "call-down", 8_000, 8_000);
    let before = std::fs::read(&recording.path).unwrap();

    let error = publisher.publish(recording.clone()).await.unwrap_err();
    let PublishError::Upload(error) = error else {
        panic!("expected an upload error, got {error}");
    };
    assert_eq!(
        error.attempts, 3,
        "one attempt and upload_retries = 2 retries"
    );
    assert_eq!(refused.load(Ordering::SeqCst), 3);
    assert_eq!(
        std::fs::read(&recording.path).unwrap(),
        before,
        "local file untouched"
    );
    assert!(
        !retention::is_published(&recording.path),
        "retention must keep it"
    );
    assert_eq!(
        plane.get("call-down").await.unwrap().unwrap().recording_url,
        None
    );
    assert_eq!(delivered(&store).await, []);
}

#[tokio::test]
async fn gcs_upload_survives_a_failed_first_attempt_and_announces_the_url() {
    let gcs = FakeGcs::start(BUCKET).await;
    gcs.fail_next(1);
    let dir = temp_dir("gcs");
    let (plane, store) = plane_with_ended_call("call-gcs").await;
    delivered(&store).await;
    let publisher = Publisher::new(&gcs_config(&dir, &gcs, 5), plane.clone()).unwrap();

    let recording = write_wav(&dir, "call-gcs", 8_000, 8_000 * 3);
    let published = publisher.publish(recording.clone()).await.unwrap();

    let seen = gcs.requests();
    let ops: Vec<_> = seen.iter().map(|r| (r.op, r.status.as_u16())).collect();
    assert_eq!(ops, [(Op::Put, 503), (Op::Put, 200)], "{seen:?}");
    assert!(
        seen.iter().all(|r| r.object == "calls/call-gcs.wav"
            && r.authorization
                .as_deref()
                .is_none_or(|a| a.trim() == "Bearer")),
        "one object, no OAuth token: {seen:?}"
    );
    assert_eq!(published.attempts, 2, "the second attempt went through");
    assert_eq!(published.url, "gs://recordings/calls/call-gcs.wav");
    let local = std::fs::read(&recording.path).unwrap();
    assert!(
        gcs.object("calls/call-gcs.wav").unwrap() == local,
        "same bytes in the bucket"
    );
    assert!(retention::is_published(&recording.path));

    let call = plane.get("call-gcs").await.unwrap().unwrap();
    assert_eq!(call.recording_url.as_deref(), Some(published.url.as_str()));
    assert_eq!(delivered(&store).await, [EventType::RecordingReady]);
}

#[tokio::test]
async fn a_large_recording_goes_up_to_gcs_as_a_multipart_upload() {
    let gcs = FakeGcs::start(BUCKET).await;
    let dir = temp_dir("gcs-large");
    let (plane, store) = plane_with_ended_call("call-gcs-long").await;
    let publisher = Publisher::new(&gcs_config(&dir, &gcs, 0), plane.clone()).unwrap();
    // 16 kHz stereo PCM16 for 5 minutes: ~19 MiB, two full parts and a short last one.
    let recording = write_wav(&dir, "call-gcs-long", 16_000, 16_000 * 300);
    let size = std::fs::metadata(&recording.path).unwrap().len();
    assert!(size > 2 * PART_BYTES as u64);

    let published = publisher.publish(recording.clone()).await.unwrap();
    assert_eq!(published.attempts, 1);
    let seen = gcs.requests();
    assert!(seen.iter().all(|r| r.status.is_success()), "{seen:?}");
    let mut ops: Vec<Op> = seen.iter().map(|r| r.op).collect();
    // Parts go up concurrently, in any order, between the initiate and the complete.
    if let [_, parts @ .., _] = ops.as_mut_slice() {
        parts.sort();
    }
    assert_eq!(
        ops,
        [
            Op::Initiate,
            Op::Part(1),
            Op::Part(2),
            Op::Part(3),
            Op::Complete
        ]
    );
    assert_eq!(gcs.open_uploads(), 0);
    let object = gcs.object("calls/call-gcs-long.wav").unwrap();
    assert_stored(&object, &recording, &store).await;
}

#[tokio::test]
async fn a_gcs_upload_that_never_gets_through_keeps_the_local_file_and_announces_nothing() {
    let gcs = FakeGcs::start(BUCKET).await;
    gcs.fail_next(usize::MAX);
    let dir = temp_dir("gcs-down");
    let (plane, store) = plane_with_ended_call("call-gcs-down").await;
    delivered(&store).await;
    let publisher = Publisher::new(&gcs_config(&dir, &gcs, 2), plane.clone()).unwrap();
    let recording = write_wav(&dir, "call-gcs-down", 8_000, 8_000);
    let before = std::fs::read(&recording.path).unwrap();

    let error = publisher.publish(recording.clone()).await.unwrap_err();
    let PublishError::Upload(error) = error else {
        panic!("expected an upload error, got {error}");
    };
    assert_eq!(error.attempts, 3, "one attempt and 2 retries");
    let ops: Vec<_> = gcs
        .requests()
        .iter()
        .map(|r| (r.op, r.status.as_u16()))
        .collect();
    assert_eq!(ops, [(Op::Put, 503); 3]);
    assert!(gcs.object("calls/call-gcs-down.wav").is_none());
    assert_eq!(std::fs::read(&recording.path).unwrap(), before);
    assert!(!retention::is_published(&recording.path));
    assert_eq!(
        plane
            .get("call-gcs-down")
            .await
            .unwrap()
            .unwrap()
            .recording_url,
        None
    );
    assert_eq!(delivered(&store).await, []);
}

/// Runs an opus-tools command, failing the test with a clear message when it is missing.
fn opus_tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} is not installed ({e}): apt-get install opus-tools (scripts/test.sh does)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{text}"
    );
    text
}

#[tokio::test]
async fn opus_recordings_decode_elsewhere_to_the_same_length_and_channels() {
    let dir = temp_dir("opus-rec");
    let target = temp_dir("opus-target");
    let (plane, store) = plane_with_ended_call("call-opus").await;
    delivered(&store).await;
    let config = PublishConfig {
        dir: dir.to_path_buf(),
        format: RecordingFormat::Opus,
        upload_url: Some(UploadTarget::File {
            dir: target.to_path_buf(),
        }),
        ..PublishConfig::default()
    };
    let publisher = Publisher::new(&config, plane.clone()).unwrap();
    // 2.57 s at 16 kHz: not a whole number of 20 ms frames.
    let frames = 41_120;
    let recording = write_wav(&dir, "call-opus", 16_000, frames);
    let published = publisher.publish(recording.clone()).await.unwrap();

    let uploaded = target.join("call-opus.opus");
    assert_eq!(published.url, format!("file://{}", uploaded.display()));
    assert!(
        !recording.path.exists(),
        "the intermediate WAV is gone once the Opus is stored"
    );
    assert_eq!(published.local, dir.join("call-opus.opus"));
    assert_eq!(
        std::fs::read(&uploaded).unwrap(),
        std::fs::read(&published.local).unwrap()
    );

    // An independent parser: opusinfo checks the Ogg and Opus framing.
    let info = opus_tool("opusinfo", &[uploaded.to_str().unwrap()]);
    assert!(
        !info.contains("WARNING") && !info.contains("ERROR"),
        "{info}"
    );
    assert!(info.contains("Channels: 2"), "{info}");
    assert!(info.contains("Original sample rate: 16000"), "{info}");
    let length: f64 = info
        .split("Playback length: 0m:")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|secs| secs.trim().parse().ok())
        .unwrap_or_else(|| panic!("no playback length in:\n{info}"));
    assert!(
        (length - 2.57).abs() < 0.002,
        "playback length {length} s:\n{info}"
    );

    // An independent decoder: exactly the input's samples (at 48 kHz), tone left,
    // silence right.
    let decoded = dir.join("decoded.wav");
    opus_tool(
        "opusdec",
        &[
            "--quiet",
            "--rate",
            "48000",
            uploaded.to_str().unwrap(),
            decoded.to_str().unwrap(),
        ],
    );
    let mut reader = hound::WavReader::open(&decoded).unwrap();
    assert_eq!(
        (reader.spec().channels, reader.spec().sample_rate),
        (2, 48_000)
    );
    assert_eq!(
        reader.duration() as usize,
        frames * 3,
        "pre-skip and end trimming"
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let energy = |channel: usize| -> f64 {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / (samples.len() / 2) as f64
    };
    let (left, right) = (energy(0).sqrt(), energy(1).sqrt());
    // The tone's RMS is 8000/√2 ≈ 5657.
    assert!(
        (4_500.0..7_000.0).contains(&left),
        "caller channel RMS {left}"
    );
    assert!(
        right < 300.0,
        "agent channel RMS {right} (should be near silence)"
    );

    let call = plane.get("call-opus").await.unwrap().unwrap();
    assert_eq!(call.recording_url, Some(published.url));
    assert_eq!(delivered(&store).await, [EventType::RecordingReady]);
}

#[tokio::test]
async fn without_an_upload_target_the_handoff_announces_the_local_file() {
    let dir = temp_dir("local");
    let (plane, store) = plane_with_ended_call("call-local").await;
    delivered(&store).await;
    let config = PublishConfig {
        dir: dir.to_path_buf(),
        ..PublishConfig::default()
    };
    let publisher = Arc::new(Publisher::new(&config, plane.clone()).unwrap());
    let handoff = publisher.handoff().unwrap();
    let recording = write_wav(&dir, "call-local", 8_000, 4_000);
    let unknown = write_wav(&dir, "no-such-call", 8_000, 4_000);
    // The recorder calls from its own (non-tokio) thread and must not wait.
    let path = recording.path.clone();
    std::thread::spawn(move || {
        handoff(recording);
        handoff(unknown);
    })
    .join()
    .unwrap();
    publisher.drain().await;

    let call = plane.get("call-local").await.unwrap().unwrap();
    let url = call.recording_url.expect("recording_url set");
    assert_eq!(url, format!("file://{}", path.display()));
    assert!(path.exists());
    assert_eq!(delivered(&store).await, [EventType::RecordingReady]);
    // A recording for a call the control plane does not know is logged, not a crash,
    // and its file stays.
    assert!(dir.join("no-such-call.wav").exists());
}

/// Set in the child process of [`s3_settings_come_from_the_standard_aws_environment`].
const ENV_CHILD: &str = "VOXGATE_TEST_S3_ENV_DIR";

#[tokio::test]
async fn s3_settings_come_from_the_standard_aws_environment() {
    // Tests cannot set the environment of their own process (it is shared and `unsafe`
    // to change), so the test runs itself again with the AWS_* variables set.
    if let Ok(dir) = std::env::var(ENV_CHILD) {
        let (plane, _store) = plane_with_ended_call("call-env").await;
        let config = PublishConfig {
            dir: PathBuf::from(&dir),
            upload_url: Some(UploadTarget::parse(&format!("s3://{BUCKET}/env")).unwrap()),
            upload_retries: 0,
            ..PublishConfig::default()
        };
        let publisher = Publisher::new(&config, plane).unwrap();
        let recording = write_wav(Path::new(&dir), "call-env", 8_000, 8_000);
        let published = publisher.publish(recording).await.unwrap();
        assert_eq!(published.url, "s3://recordings/env/call-env.wav");
        return;
    }
    let moto = start_moto().await;
    let dir = temp_dir("s3-env");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "s3_settings_come_from_the_standard_aws_environment",
            "--nocapture",
        ])
        .env(ENV_CHILD, &*dir)
        .env("AWS_ENDPOINT_URL", format!("http://{}", moto.addr))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .status()
        .unwrap();
    assert!(status.success(), "the child upload failed: {status}");
    assert_eq!(
        s3_object(&moto, "env/call-env.wav").await,
        std::fs::read(dir.join("call-env.wav")).unwrap()
    );
}
