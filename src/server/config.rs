//! The `[http]` configuration section: the bounds every HTTP connection is held to (a
//! header read timeout, an idle timeout, how many may be open at once, and each socket's
//! kernel send buffer).
//!
//! Values are checked once here, at start; the accept loop takes them as they are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::{InvalidSetting, invalid};

/// `[http]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// A request's header must arrive within this long, ms (also the longest a keep-alive
    /// connection waits for its next request's header).
    pub header_timeout_ms: Option<u64>,
    /// A connection that neither reads nor writes for this long is closed, seconds.
    pub idle_timeout_secs: Option<u64>,
    /// Connections open at once; beyond it new ones are closed at once.
    pub max_connections: Option<usize>,
    /// Each accepted socket's kernel send buffer, bytes (0: the kernel's own).
    pub send_buffer_bytes: Option<usize>,
}

/// The bounds every connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// A request's header must arrive within this long of the connection (or its previous
    /// response) being ready for it.
    pub header_timeout: Duration,
    /// A connection that neither reads nor writes for this long is closed (keep-alive
    /// connections and upgraded sockets alike).
    pub idle_timeout: Duration,
    /// Connections open at once; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// The kernel send buffer of each accepted socket, bytes (`None`: the kernel's own).
    /// Small, so a media peer that stops reading is found within a few hundred ms of
    /// audio plus the session's write timeout.
    pub send_buffer_bytes: Option<usize>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4_096,
            send_buffer_bytes: Some(16 * 1024),
        }
    }
}

impl RawHttp {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<HttpConfig, InvalidSetting> {
        let d = HttpConfig::default();
        let header_timeout = match self.header_timeout_ms {
            Some(0) => return Err(invalid("http.header_timeout_ms", "must be more than 0")),
            Some(ms) if ms > 300_000 => {
                return Err(invalid("http.header_timeout_ms", "must be at most 300000"));
            }
            Some(ms) => Duration::from_millis(ms),
            None => d.header_timeout,
        };
        let idle_timeout = match self.idle_timeout_secs {
            Some(0) => return Err(invalid("http.idle_timeout_secs", "must be more than 0")),
            Some(secs) if secs > 86_400 => {
                return Err(invalid("http.idle_timeout_secs", "must be at most 86400"));
            }
            Some(secs) => Duration::from_secs(secs),
            None => d.idle_timeout,
        };
        let max_connections = match self.max_connections {
            Some(0) => return Err(invalid("http.max_connections", "must be at least 1")),
            Some(n) => n,
            None => d.max_connections,
        };
        let send_buffer_bytes = match self.send_buffer_bytes {
            Some(0) => None,
            Some(n) if n < 2_048 => {
                return Err(invalid(
                    "http.send_buffer_bytes",
                    "must be 0 (the kernel's own) or at least 2048",
                ));
            }
            Some(n) => Some(n),
            None => d.send_buffer_bytes,
        };
        Ok(HttpConfig {
            header_timeout,
            idle_timeout,
            max_connections,
            send_buffer_bytes,
        })
    }
}

/// The file's form of validated settings.
impl From<&HttpConfig> for RawHttp {
    fn from(config: &HttpConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let HttpConfig {
            header_timeout,
            idle_timeout,
            max_connections,
            send_buffer_bytes,
        } = *config;
        Self {
            header_timeout_ms: Some(header_timeout.as_millis() as u64),
            idle_timeout_secs: Some(idle_timeout.as_secs()),
            max_connections: Some(max_connections),
            send_buffer_bytes: Some(send_buffer_bytes.unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bound_every_connection() {
        let config = RawHttp::default().validate().unwrap();
        assert_eq!(config, HttpConfig::default());
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.send_buffer_bytes, Some(16 * 1024));
        let again = RawHttp::from(&config).validate().unwrap();
        assert_eq!(again, config, "the printed form reads back the same");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (raw, key) in [
            (
                RawHttp {
                    header_timeout_ms: Some(0),
                    ..RawHttp::default()
                },
                "http.header_timeout_ms",
            ),
            (
                RawHttp {
                    idle_timeout_secs: Some(0),
                    ..RawHttp::default()
                },
                "http.idle_timeout_secs",
            ),
            (
                RawHttp {
                    max_connections: Some(0),
                    ..RawHttp::default()
                },
                "http.max_connections",
            ),
            (
                RawHttp {
                    send_buffer_bytes: Some(100),
                    ..RawHttp::default()
                },
                "http.send_buffer_bytes",
            ),
        ] {
            assert_eq!(raw.validate().unwrap_err().key, key);
        }
        let kernel = RawHttp {
            send_buffer_bytes: Some(0),
            ..RawHttp::default()
        };
        assert_eq!(kernel.validate().unwrap().send_buffer_bytes, None);
    }
}
