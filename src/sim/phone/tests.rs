use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;
use crate::audio::g711;

fn tick(phone: &mut Phone) -> ([i16; FRAME_SAMPLES_8K], TickOutcome) {
    let mut frame = [0; FRAME_SAMPLES_8K];
    let outcome = phone.tick(&mut frame);
    (frame, outcome)
}

fn ramp(n: usize) -> Vec<i16> {
    (1..=n as i16).collect()
}

#[test]
fn plays_in_order_one_frame_per_tick_then_silence() {
    let mut phone = Phone::new();
    let audio = ramp(400);
    phone.play_8k(&audio[..250]);
    phone.play_8k(&audio[250..]);
    let (a, first) = tick(&mut phone);
    let (b, _) = tick(&mut phone);
    let (c, last) = tick(&mut phone);
    let (d, empty) = tick(&mut phone);
    assert_eq!([&a[..], &b[..], &c[..80]].concat(), audio);
    assert!(c[80..].iter().all(|&s| s == 0), "a short frame is padded");
    assert!(d.iter().all(|&s| s == 0));
    assert_eq!(
        (first.agent_samples, last.agent_samples, empty.agent_samples),
        (160, 80, 0)
    );
    assert!(first.turn_started);
    assert_eq!(phone.played(), 400);
}

#[test]
fn a_checkpoint_is_reached_at_the_tick_after_its_audio() {
    let mut phone = Phone::new();
    phone.play_8k(&ramp(320));
    phone.checkpoint("turn-1");
    phone.play_8k(&ramp(160));
    assert_eq!(phone.pending_checkpoints(), 1);
    assert!(tick(&mut phone).1.reached.is_empty());
    assert!(tick(&mut phone).1.reached.is_empty());
    let (_, third) = tick(&mut phone);
    assert_eq!(third.reached, ["turn-1"]);
    assert!(third.turn_ended, "the marker ends the turn");
    assert!(
        third.turn_started,
        "the audio queued after it is a new turn"
    );
    assert_eq!(phone.turns_completed(), 1);
}

#[test]
fn a_checkpoint_on_an_empty_phone_is_reached_at_the_next_tick() {
    let mut phone = Phone::new();
    phone.checkpoint("now");
    let (_, outcome) = tick(&mut phone);
    assert_eq!(outcome.reached, ["now"]);
    assert!(!outcome.turn_ended, "no turn was playing");
    assert!(phone.is_idle());
}

#[test]
fn clear_drops_the_buffer_and_the_checkpoints_in_it_only() {
    let mut phone = Phone::new();
    phone.play_8k(&ramp(160));
    phone.checkpoint("played");
    phone.play_8k(&ramp(800));
    phone.checkpoint("dropped-1");
    phone.checkpoint("dropped-2");
    tick(&mut phone);
    // "played" sits at sample 160: its audio has played, its ack is still due.
    let cleared = phone.clear();
    assert_eq!(cleared.samples, 800);
    assert_eq!(cleared.checkpoints, ["dropped-1", "dropped-2"]);
    assert!(cleared.turn_ended);
    assert!(phone.is_idle());
    let (frame, outcome) = tick(&mut phone);
    assert_eq!(outcome.reached, ["played"]);
    assert!(frame.iter().all(|&s| s == 0));
    // Audio after a clear starts at the current playback position.
    phone.play_8k(&ramp(160));
    phone.checkpoint("after");
    let (frame, _) = tick(&mut phone);
    assert_eq!(frame[0], 1);
    assert_eq!(tick(&mut phone).1.reached, ["after"]);
}

#[test]
fn payloads_are_decoded_by_their_content_type() {
    let mut phone = Phone::new();
    let pcm = [1000i16, -1000, 0, 32000];
    let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::pcm_to_ulaw(s)).collect();
    let n = phone
        .play_payload("audio/x-mulaw", 8000, &BASE64.encode(&ulaw))
        .unwrap();
    assert_eq!(n, 4);
    let l16: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(
        phone.play_payload("audio/x-l16", 8000, &BASE64.encode(&l16)),
        Ok(4)
    );
    let (frame, _) = tick(&mut phone);
    let decoded: Vec<i16> = ulaw.iter().map(|&b| g711::ulaw_to_pcm(b)).collect();
    assert_eq!(frame[..4], decoded[..]);
    assert_eq!(frame[4..8], pcm);

    assert!(matches!(
        phone.play_payload("audio/x-alaw", 8000, "AAAA"),
        Err(PlayError::Format { .. })
    ));
    assert!(matches!(
        phone.play_payload("audio/x-mulaw", 16000, "AAAA"),
        Err(PlayError::Format { .. })
    ));
    assert_eq!(
        phone.play_payload("audio/x-mulaw", 8000, "!!"),
        Err(PlayError::Payload(PayloadError::Base64))
    );
    assert_eq!(
        phone.play_payload("audio/x-l16", 8000, &BASE64.encode([1u8, 2, 3])),
        Err(PlayError::Payload(PayloadError::PartialSample(3)))
    );
}

#[test]
fn wideband_audio_is_played_at_8k_and_its_checkpoint_stays_at_its_end() {
    let mut phone = Phone::new();
    let tone: Vec<i16> = (0..1600)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 16000.0).sin()) as i16)
        .collect();
    let bytes: Vec<u8> = tone.iter().flat_map(|s| s.to_le_bytes()).collect();
    // 100 ms at 16 kHz, in an odd-sized piece and the rest.
    let (a, b) = bytes.split_at(1000);
    phone
        .play_payload("audio/x-l16", 16000, &BASE64.encode(a))
        .unwrap();
    phone
        .play_payload("audio/x-l16", 16000, &BASE64.encode(b))
        .unwrap();
    assert_eq!(phone.buffered(), 800);
    phone.checkpoint("wide");
    let mut loud = 0;
    for _ in 0..5 {
        let (frame, outcome) = tick(&mut phone);
        assert_eq!(outcome.agent_samples, 160);
        loud += usize::from(frame.iter().any(|s| s.unsigned_abs() > 4000));
    }
    assert_eq!(loud, 5);
    assert_eq!(tick(&mut phone).1.reached, ["wide"]);

    // A partial block is flushed at the checkpoint: 10 ms at 16 kHz is 80 samples at 8 kHz.
    phone.play_16k(&tone[..160]);
    assert_eq!(phone.buffered(), 80);
    phone.checkpoint("short");
    let (_, outcome) = tick(&mut phone);
    assert_eq!(outcome.agent_samples, 80);
    assert_eq!(tick(&mut phone).1.reached, ["short"]);
}
