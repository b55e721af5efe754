//! The header walk that repairs recordings left behind by a crash: any bytes, any length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::recording::wav::plan_repair;

fuzz_target!(|data: &[u8]| {
    let Some((len, header)) = data.split_first_chunk::<8>() else { return };
    let file_len = u64::from_le_bytes(*len);
    if let Ok(plan) = plan_repair(header, file_len) {
        assert!(plan.file_len <= file_len);
        assert!(plan.data_size_offset + 4 <= plan.file_len);
        assert_eq!(plan.data_size % u32::from(plan.block_align), 0);
    }
});
