//! The Plivo REST client logs each retry at warn and the give-up once at error, and never
//! its auth token. In its own test binary: tracing's per-call-site caches are global, so
//! counting log lines is only reliable with no other test running alongside.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxgate::sim::plivo_rest::FakePlivo;
use voxgate::telephony::plivo::rest::{MakeCall, PlivoApi, PlivoRest, RestConfig};

const ID: &str = "MAZDQ1ZDU2NDE4MTNHMQ";
const TOKEN: &str = "auth-token-for-tests";

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn count(&self, level: &str, message: &str) -> usize {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains(message))
            .count()
    }
}

#[tokio::test]
async fn each_retry_warns_and_the_give_up_errors_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let mut config = RestConfig::new(ID, TOKEN);
    config.base_url = fake.base_url();
    config.request_timeout = Duration::from_secs(2);
    config.retry.base = Duration::from_millis(1);
    config.retry.cap = Duration::from_millis(5);
    let rest = PlivoRest::new(config).unwrap();
    let call = MakeCall::new(
        "14155550100",
        "14155550199",
        "https://vg.example/answer?call_id=c1",
    );
    let uuid = rest.make_call(&call).await.unwrap().request_uuid;

    fake.fail_next(4, 503);
    rest.cdr(&uuid).await.unwrap_err();
    assert_eq!(captured.count("WARN", "retrying"), 3);
    assert_eq!(captured.count("ERROR", "giving up"), 1);
    assert!(!captured.text().contains(TOKEN));

    // Not retriable at all: the caller owns the outcome, no error line here.
    fake.fail_next(1, 503);
    rest.make_call(&call).await.unwrap_err();
    assert_eq!(captured.count("ERROR", "giving up"), 1);
}
