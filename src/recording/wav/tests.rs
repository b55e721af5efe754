use super::*;
use proptest::prelude::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxgate-wav-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn block(first: i16) -> Vec<i16> {
    (0..BLOCK as i16).map(|i| first.wrapping_add(i)).collect()
}

fn read(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let samples = reader.samples::<i16>().map(Result::unwrap).collect();
    (spec, samples)
}

#[test]
fn blocks_become_an_interleaved_stereo_wav_renamed_at_finalize() {
    let dir = temp_dir("finalize");
    let part = dir.join("call-1.wav.part");
    let mut sink = WavSink::create(part.clone(), RecordingRate::Hz8000).unwrap();
    let mut bytes = 0;
    for n in 0..100 {
        bytes += sink.write_block(&block(n * 200), &block(-n * 200)).unwrap();
    }
    assert_eq!(bytes, 100 * BLOCK as u64 * 4);
    let (path, duration) = sink.finalize().unwrap();
    assert_eq!(path, dir.join("call-1.wav"));
    assert!(!part.exists());
    assert_eq!(duration, Duration::from_secs(2));
    let (spec, samples) = read(&path);
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8_000, 16)
    );
    assert_eq!(samples.len(), 100 * BLOCK * 2);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left[..BLOCK], block(0)[..]);
    assert_eq!(right[99 * BLOCK..], block(-99 * 200)[..]);
}

#[test]
fn a_file_cut_off_by_a_crash_is_readable_and_repair_recovers_what_reached_disk() {
    let dir = temp_dir("crash");
    let part = dir.join("call-2.wav.part");
    let mut sink = WavSink::create(part.clone(), RecordingRate::Hz8000).unwrap();
    // 3 s of audio: the header was last rewritten at 2.5 s.
    for n in 0..150 {
        sink.write_block(&block(n), &block(n)).unwrap();
    }
    // A crash: nothing more runs, not even the destructor (the write buffer is lost). The
    // kernel would drop the file's lock with the process; this one lives on, so what
    // reached the file is copied to where a restarted instance finds it.
    std::mem::forget(sink);
    let crashed = dir.join("left");
    std::fs::create_dir_all(&crashed).unwrap();
    let part = {
        let left = crashed.join("call-2.wav.part");
        std::fs::copy(&part, &left).unwrap();
        left
    };
    let as_left = hound::WavReader::open(&part).unwrap().duration();
    assert!(
        (20_000..=24_000).contains(&as_left),
        "readable as left behind, up to the last flush: {as_left} frames"
    );
    let on_disk = std::fs::metadata(&part).unwrap().len();
    let (path, duration, rate) = repair(&part).unwrap();
    assert_eq!(rate, 8_000);
    assert_eq!(path, crashed.join("call-2.wav"));
    let frames = hound::WavReader::open(&path).unwrap().duration();
    assert_eq!(
        u64::from(frames) * 4,
        on_disk - 44,
        "every whole frame on disk kept"
    );
    assert!(frames >= as_left);
    assert!(duration >= Duration::from_millis(2_500) && duration <= Duration::from_secs(3));
}

#[test]
fn repair_leaves_a_file_that_a_live_writer_holds() {
    let dir = temp_dir("busy");
    let part = dir.join("call-live.wav.part");
    let mut sink = WavSink::create(part.clone(), RecordingRate::Hz8000).unwrap();
    for n in 0..50 {
        sink.write_block(&block(n), &block(n)).unwrap();
    }
    sink.flush().unwrap();
    let before = std::fs::read(&part).unwrap();
    // Another instance starting on the same folder finds it mid-call.
    assert!(matches!(repair(&part), Err(WavError::Busy { .. })));
    assert_eq!(std::fs::read(&part).unwrap(), before, "untouched");
    for n in 50..100 {
        sink.write_block(&block(n), &block(n)).unwrap();
    }
    let (path, duration) = sink.finalize().unwrap();
    assert_eq!(
        duration,
        Duration::from_secs(2),
        "the writer finished it whole"
    );
    assert_eq!(read(&path).1.len(), 100 * BLOCK * 2);
    // And once finished, there is nothing left to repair.
    assert!(matches!(repair(&part), Err(WavError::Busy { .. })));
}

#[test]
fn repair_drops_a_torn_last_sample_frame() {
    let dir = temp_dir("torn");
    let part = dir.join("call-3.wav.part");
    let mut sink = WavSink::create(part.clone(), RecordingRate::Hz8000).unwrap();
    sink.write_block(&block(1), &block(2)).unwrap();
    sink.flush().unwrap();
    std::mem::forget(sink);
    // What reached the file, where a restarted instance finds it (see the crash test).
    let part = {
        let left = dir.join("left");
        std::fs::create_dir_all(&left).unwrap();
        std::fs::copy(&part, left.join("call-3.wav.part")).unwrap();
        left.join("call-3.wav.part")
    };
    let mut file = OpenOptions::new().append(true).open(&part).unwrap();
    file.write_all(&[1, 2, 3]).unwrap();
    drop(file);
    let (path, duration, _) = repair(&part).unwrap();
    assert_eq!(duration, Duration::from_millis(20));
    let (_, samples) = read(&path);
    assert_eq!(samples.len(), 2 * BLOCK);
}

#[test]
fn repair_refuses_what_is_not_a_wav_and_leaves_it() {
    let dir = temp_dir("refuse");
    let part = dir.join("junk.wav.part");
    std::fs::write(&part, b"not a wav file at all").unwrap();
    let error = repair(&part).unwrap_err();
    assert_eq!(error.kind(), "unrepairable");
    assert!(part.exists());
}

#[test]
fn sixteen_khz_recordings_keep_both_channels_aligned() {
    let dir = temp_dir("wide");
    let part = dir.join("wide.wav.part");
    let mut sink = WavSink::create(part, RecordingRate::Hz16000).unwrap();
    // Caller: a 500 Hz tone; agent: silence, then a click at 1 s.
    let tone: Vec<i16> = (0..8_000 * 2)
        .map(|n| (8_000.0 * (2.0 * std::f64::consts::PI * 500.0 * n as f64 / 8_000.0).sin()) as i16)
        .collect();
    let mut agent = vec![0i16; 8_000 * 2];
    agent[8_000..8_160].fill(10_000);
    for (c, a) in tone.chunks(BLOCK).zip(agent.chunks(BLOCK)) {
        sink.write_block(c, a).unwrap();
    }
    let (path, duration) = sink.finalize().unwrap();
    assert_eq!(duration, Duration::from_secs(2));
    let (spec, samples) = read(&path);
    assert_eq!(spec.sample_rate, 16_000);
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let onset = right.iter().position(|&s| s > 5_000).unwrap();
    // 1 s at 16 kHz plus the converter's delay (2.63 ms = 42 samples).
    assert!((16_000..16_000 + 60).contains(&onset), "onset at {onset}");
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let peak = left[8_000..]
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!(
        (7_000..9_000).contains(&peak),
        "tone kept its level: {peak}"
    );
}

proptest! {
    #[test]
    fn plan_repair_never_panics_and_stays_inside_the_file(
        header in proptest::collection::vec(any::<u8>(), 0..200),
        len in any::<u64>(),
    ) {
        if let Ok(plan) = plan_repair(&header, len) {
            prop_assert!(plan.file_len <= len);
            prop_assert!(plan.data_size_offset + 4 <= plan.file_len);
            prop_assert_eq!(u64::from(plan.data_size) % u64::from(plan.block_align), 0);
        }
    }
}
