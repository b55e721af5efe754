//! Any text as an `upload_url`, and any text as a call id: never a panic, and a parsed
//! target's object keys always stay one segment under its prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::recording::target::UploadTarget;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (url, call_id) = text.split_once('\n').unwrap_or((&text, "c1"));
    let Ok(target) = UploadTarget::parse(url) else {
        return;
    };
    let key = target.key(call_id, "wav");
    let prefix_parts = target.key("x", "wav").parts().count() - 1;
    assert_eq!(
        key.parts().count(),
        prefix_parts + 1,
        "{url:?} {call_id:?} -> {key}"
    );
    let _ = target.url(&key, None);
});
