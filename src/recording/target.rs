//! Where recordings are uploaded: the `upload_url` setting parsed into a typed target,
//! the object key of a call's recording, and the URL announced for it.
//!
//! Accepted forms (anything else is a clear error at start, never a guess):
//! - `file:///abs/folder` — a local (or mounted) folder;
//! - `s3://bucket[/prefix]` — S3 or any S3-compatible server;
//! - `gs://bucket[/prefix]` — Google Cloud Storage.
//!
//! The object key is `{prefix}/{call_id}.{ext}`; the `call_id` is one key segment (a `/`
//! or other unsafe character in it is percent-encoded, so no id can escape the prefix).
//! Pure: no I/O. The configuration holds the parsed target (`recording.upload_url`).

use std::path::{Path, PathBuf};

use object_store::path::{Path as ObjectPath, PathPart};
use thiserror::Error;

/// A parsed `upload_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadTarget {
    /// `file:///abs/folder`.
    File {
        /// The folder (absolute).
        dir: PathBuf,
    },
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix (may be empty).
        prefix: ObjectPath,
    },
    /// `gs://bucket/prefix`.
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Key prefix (may be empty).
        prefix: ObjectPath,
    },
}

/// Why an `upload_url` was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    /// Not `file://`, `s3://` or `gs://`.
    #[error("upload_url must start with file://, s3:// or gs:// (got {0:?})")]
    Scheme(String),
    /// `file://` with a host or a relative path.
    #[error("upload_url file:// needs an absolute local path, like file:///var/recordings")]
    FilePath,
    /// No bucket, or a bucket name with characters no store allows.
    #[error("upload_url needs a bucket name of letters, digits, '.', '-' or '_'")]
    Bucket,
    /// The prefix has an empty, `.` or `..` segment, or characters a key cannot hold.
    #[error("upload_url prefix {0:?} is not a valid object key prefix")]
    Prefix(String),
    /// Query strings and fragments mean nothing here.
    #[error("upload_url must not have a query (?) or fragment (#)")]
    Query,
}

impl UploadTarget {
    /// Parses `upload_url`.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let url = url.trim();
        if url.contains(['?', '#']) {
            return Err(TargetError::Query);
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(TargetError::Scheme(clip(url)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // file:///abs: empty host, then the absolute path.
                if !rest.starts_with('/') || rest.chars().any(char::is_control) {
                    return Err(TargetError::FilePath);
                }
                let dir = PathBuf::from(rest);
                if !dir.is_absolute()
                    || dir
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(TargetError::FilePath);
                }
                Ok(Self::File { dir })
            }
            "s3" => {
                let (bucket, prefix) = bucket_and_prefix(rest)?;
                Ok(Self::S3 { bucket, prefix })
            }
            "gs" => {
                let (bucket, prefix) = bucket_and_prefix(rest)?;
                Ok(Self::Gcs { bucket, prefix })
            }
            _ => Err(TargetError::Scheme(clip(url))),
        }
    }

    /// A fixed label for metrics and logs: `file`, `s3` or `gcs`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File { .. } => "file",
            Self::S3 { .. } => "s3",
            Self::Gcs { .. } => "gcs",
        }
    }

    /// The object key of `call_id`'s recording with extension `ext` (`wav`, `opus`).
    pub fn key(&self, call_id: &str, ext: &str) -> ObjectPath {
        let name = PathPart::from(format!("{call_id}.{ext}"));
        match self {
            Self::File { .. } => ObjectPath::from_iter([name]),
            Self::S3 { prefix, .. } | Self::Gcs { prefix, .. } => prefix.clone().join(name),
        }
    }

    /// The URL announced for the object at `key`: under `public_base` when one is
    /// configured (`{public_base}/{key}`), else `file:///abs/folder/{key}`,
    /// `s3://bucket/{key}` or `gs://bucket/{key}`.
    pub fn url(&self, key: &ObjectPath, public_base: Option<&str>) -> String {
        if let Some(base) = public_base {
            return format!("{}/{key}", base.trim_end_matches('/'));
        }
        match self {
            Self::File { dir } => file_url(&dir.join(key.as_ref())),
            Self::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
            Self::Gcs { bucket, .. } => format!("gs://{bucket}/{key}"),
        }
    }
}

/// The `upload_url` it was parsed from, normalised (no trailing `/`).
impl std::fmt::Display for UploadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, bucket, prefix) = match self {
            Self::File { dir } => return write!(f, "file://{}", dir.display()),
            Self::S3 { bucket, prefix } => ("s3", bucket, prefix),
            Self::Gcs { bucket, prefix } => ("gs", bucket, prefix),
        };
        match prefix.as_ref() {
            "" => write!(f, "{scheme}://{bucket}"),
            prefix => write!(f, "{scheme}://{bucket}/{prefix}"),
        }
    }
}

/// `file://` URL of a local file (percent-encoded where a URL needs it).
pub fn file_url(path: &Path) -> String {
    match url::Url::from_file_path(path) {
        Ok(url) => url.into(),
        // Only relative paths fail; callers pass absolute ones.
        Err(()) => format!("file://{}", path.display()),
    }
}

fn bucket_and_prefix(rest: &str) -> Result<(String, ObjectPath), TargetError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = !bucket.is_empty()
        && bucket.len() <= 222
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !bucket_ok {
        return Err(TargetError::Bucket);
    }
    let trimmed = prefix.trim_matches('/');
    let prefix = ObjectPath::parse(trimmed)
        .ok()
        .filter(|_| trimmed.chars().all(|c| !c.is_control() && c != '\\'))
        .ok_or_else(|| TargetError::Prefix(clip(prefix)))?;
    Ok((bucket.to_owned(), prefix))
}

/// Error messages quote at most this much of the input.
fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_documented_forms() {
        assert_eq!(
            UploadTarget::parse("file:///var/rec").unwrap(),
            UploadTarget::File {
                dir: "/var/rec".into()
            }
        );
        let s3 = UploadTarget::parse("s3://calls/voxgate/recordings/").unwrap();
        assert_eq!(s3.kind(), "s3");
        let key = s3.key("c-1", "wav");
        assert_eq!(key.as_ref(), "voxgate/recordings/c-1.wav");
        assert_eq!(s3.url(&key, None), "s3://calls/voxgate/recordings/c-1.wav");
        assert_eq!(
            s3.url(&key, Some("https://cdn.example/rec/")),
            "https://cdn.example/rec/voxgate/recordings/c-1.wav"
        );
        let gs = UploadTarget::parse("gs://bucket").unwrap();
        assert_eq!(gs.key("c-1", "opus").as_ref(), "c-1.opus");
        assert_eq!(gs.url(&gs.key("c-1", "opus"), None), "gs://bucket/c-1.opus");
    }

    #[test]
    fn prints_back_as_the_url_it_came_from() {
        for url in ["file:///var/rec", "s3://calls/a/b", "gs://bucket"] {
            assert_eq!(UploadTarget::parse(url).unwrap().to_string(), url);
        }
        let trailing = UploadTarget::parse("s3://calls/rec/").unwrap();
        assert_eq!(trailing.to_string(), "s3://calls/rec");
        assert_eq!(UploadTarget::parse(&trailing.to_string()), Ok(trailing));
    }

    #[test]
    fn a_call_id_cannot_escape_the_prefix() {
        let s3 = UploadTarget::parse("s3://b/p").unwrap();
        let key = s3.key("../../etc/passwd", "wav");
        assert_eq!(key.parts().count(), 2, "{key}");
        assert!(key.as_ref().starts_with("p/"));
        let file = UploadTarget::parse("file:///srv/rec").unwrap();
        let key = file.key("a/b", "wav");
        assert_eq!(key.parts().count(), 1, "{key}");
        let url = file.url(&key, None);
        assert!(url.starts_with("file:///srv/rec/"), "{url}");
        assert!(!url["file:///srv/rec/".len()..].contains('/'), "{url}");
    }

    #[test]
    fn file_urls_are_percent_encoded() {
        let file = UploadTarget::parse("file:///srv/my rec").unwrap();
        assert_eq!(
            file.url(&file.key("c 1", "wav"), None),
            "file:///srv/my%20rec/c%201.wav"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_call_id_is_one_key_segment_under_the_prefix(
            prefix in "[a-z0-9/._-]{0,20}",
            call_id in "(?s).{0,40}",
        ) {
            if let Ok(target) = UploadTarget::parse(&format!("s3://b/{prefix}")) {
                let prefix_parts = target.key("x", "wav").parts().count() - 1;
                let key = target.key(&call_id, "wav");
                proptest::prop_assert_eq!(key.parts().count(), prefix_parts + 1, "{}", key);
                proptest::prop_assert!(target.url(&key, None).starts_with("s3://b/"));
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (url, want) in [
            ("", TargetError::Scheme(String::new())),
            ("/var/rec", TargetError::Scheme("/var/rec".into())),
            ("http://x/y", TargetError::Scheme("http://x/y".into())),
            ("file://host/var/rec", TargetError::FilePath),
            ("file://relative", TargetError::FilePath),
            ("file:///var/../etc", TargetError::FilePath),
            ("s3://", TargetError::Bucket),
            ("s3:///prefix", TargetError::Bucket),
            ("gs://bad bucket/x", TargetError::Bucket),
            ("s3://b/a//b", TargetError::Prefix("a//b".into())),
            ("s3://b/a/../b", TargetError::Prefix("a/../b".into())),
            ("s3://b/p?x=1", TargetError::Query),
        ] {
            assert_eq!(UploadTarget::parse(url), Err(want), "{url:?}");
        }
    }
}
