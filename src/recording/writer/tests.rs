use super::*;
use crate::recording::config::RecordingRate;
use std::sync::mpsc;

fn recorder(
    name: &str,
    rate: RecordingRate,
) -> (Recorder, PathBuf, mpsc::Receiver<FinishedRecording>) {
    let dir = std::env::temp_dir().join(format!("voxgate-writer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RecordingConfig {
        enabled: true,
        dir: dir.clone(),
        sample_rate: rate,
        format: crate::recording::config::RecordingFormat::Wav,
        upload_url: None,
        keep_local_days: None,
        upload_retries: 5,
        public_base_url: None,
    };
    let recorder = Recorder::start(&config).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    recorder.set_on_finished(Arc::new(move |done| {
        let _ = lock(&tx).send(done);
    }));
    (recorder, dir, rx)
}

fn wait(rx: &mpsc::Receiver<FinishedRecording>) -> FinishedRecording {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the writer hands the recording off")
}

fn channels(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let samples: Vec<i16> = hound::WavReader::open(path)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    (
        samples.iter().step_by(2).copied().collect(),
        samples.iter().skip(1).step_by(2).copied().collect(),
    )
}

#[test]
fn a_call_is_written_off_thread_and_handed_off_when_its_handle_drops() {
    let (recorder, dir, rx) = recorder("call", RecordingRate::Hz8000);
    let call = recorder.start_call("job-7");
    for n in 0..50u64 {
        call.caller(n * 20, &[n as i16 + 1; BLOCK]);
        if n == 10 {
            call.agent(220, &[-5; BLOCK]);
        }
        // Let the writer keep up, as the real pace (20 ms per frame) would.
        if n % 20 == 19 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(call);
    let done = wait(&rx);
    assert_eq!(done.call_id, "job-7");
    assert_eq!(done.path, dir.join("job-7.wav"));
    assert_eq!(done.duration, Duration::from_secs(1));
    assert_eq!(done.sample_rate, 8_000);
    let (caller, agent) = channels(&done.path);
    assert_eq!(caller.len(), 8_000);
    assert_eq!(caller[20 * 8 * 10], 11);
    assert!(agent[220 * 8..240 * 8].iter().all(|&s| s == -5));
    assert_eq!(agent.iter().filter(|&&s| s != 0).count(), BLOCK);
    recorder.shutdown(Duration::from_secs(5));
}

#[test]
fn a_second_stream_of_the_same_call_gets_its_own_file() {
    let (recorder, dir, rx) = recorder("twice", RecordingRate::Hz8000);
    for _ in 0..2 {
        let call = recorder.start_call("../../etc/passwd");
        call.caller(0, &[1; BLOCK]);
        drop(call);
        wait(&rx);
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["_.._.._etc_passwd-2.wav", "_.._.._etc_passwd.wav"]);
    recorder.shutdown(Duration::from_secs(5));
}

#[test]
fn files_left_by_a_crash_are_repaired_and_handed_off() {
    let (recorder, dir, rx) = recorder("recover", RecordingRate::Hz8000);
    let elsewhere = dir.with_extension("crashed");
    let _ = std::fs::remove_dir_all(&elsewhere);
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut sink =
        WavSink::create(elsewhere.join("crashed.wav.part"), RecordingRate::Hz8000).unwrap();
    for _ in 0..40 {
        sink.write_block(&[3; BLOCK], &[4; BLOCK]).unwrap();
    }
    sink.flush().unwrap();
    // The process died here: no destructor ran, and the kernel dropped the file's lock;
    // what reached the file is what a restart finds.
    std::mem::forget(sink);
    std::fs::copy(
        elsewhere.join("crashed.wav.part"),
        dir.join("crashed.wav.part"),
    )
    .unwrap();
    recorder.recover_left_behind();
    let done = wait(&rx);
    assert_eq!(done.call_id, "crashed");
    assert_eq!(done.duration, Duration::from_millis(800));
    let (caller, agent) = channels(&done.path);
    assert!(caller.iter().all(|&s| s == 3) && agent.iter().all(|&s| s == 4));
    assert!(!dir.join("crashed.wav.part").exists());
    recorder.shutdown(Duration::from_secs(5));
}

#[test]
fn shutdown_finishes_recordings_still_open() {
    let (recorder, _dir, rx) = recorder("shutdown", RecordingRate::Hz16000);
    let call = recorder.start_call("open");
    call.caller(0, &[1; BLOCK]);
    call.caller(20, &[1; BLOCK]);
    std::thread::sleep(Duration::from_millis(50));
    recorder.shutdown(Duration::from_secs(5));
    let done = wait(&rx);
    assert_eq!(
        (done.duration, done.sample_rate),
        (Duration::from_millis(40), 16_000)
    );
    drop(call);
}

#[test]
fn file_names_never_leave_the_folder() {
    assert_eq!(file_stem("abc-1_2.x"), "abc-1_2.x");
    assert_eq!(file_stem(""), "_");
    assert_eq!(file_stem(".."), "_..");
    assert_eq!(file_stem("a/b\\c\0d é"), "a_b_c_d__");
    assert_eq!(file_stem(&"x".repeat(500)).len(), 128);
}
