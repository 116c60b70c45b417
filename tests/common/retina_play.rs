//! retina (a strict independent RTSP client) plays the bundled sample and every frame is
//! checked: count, keyframes, no loss, presentation timestamps equal to the file's.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, ParametersRef};
use shardcast::media::library::SAMPLE_MP4;
use shardcast::media::track::{Codec, TrackKind};
use shardcast::media::MediaFile;

/// What the bundled sample must deliver, from our own index of it (the index itself is
/// checked against ffprobe in the mp4 reader's tests).
pub struct Expected {
    pub video_frames: usize,
    pub video_keyframes: usize,
    pub audio_frames: usize,
    /// Presentation times (90 kHz ticks from the first) of every video frame.
    pub video_pts: BTreeSet<i64>,
    /// Coded width and height of the video track.
    pub video_dimensions: (u32, u32),
}

/// Frame counts and timestamps of the bundled sample, from our own index.
pub fn expected() -> Expected {
    expected_of(&MediaFile::from_static("sample", SAMPLE_MP4).unwrap())
}

/// Frame counts, timestamps and picture size of `media`, from our own index.
pub fn expected_of(media: &MediaFile) -> Expected {
    let video = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    let audio = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .unwrap();
    let first = video
        .samples
        .iter()
        .map(|s| video.pts_ticks(s))
        .min()
        .unwrap();
    let video_dimensions = match &video.codec {
        Codec::H264(c) => (u32::from(c.width), u32::from(c.height)),
        Codec::H265(c) => (u32::from(c.width), u32::from(c.height)),
        other => panic!("video track is H.264 or H.265, not {}", other.name()),
    };
    Expected {
        video_dimensions,
        video_frames: video.samples.len(),
        video_keyframes: video.samples.iter().filter(|s| s.sync).count(),
        audio_frames: audio.samples.len(),
        video_pts: video
            .samples
            .iter()
            .map(|s| (video.pts_ticks(s) - first) * 90_000 / i64::from(video.timescale))
            .collect(),
    }
}

/// Plays `url` (the bundled sample) to the end over `transport`; panics on any missing, lost
/// or mistimed frame.
pub async fn play_all(url: &str, transport: Transport) {
    play_all_of(url, transport, &expected()).await;
}

/// Plays `url` to the end over `transport` and checks it delivers exactly `exp`; panics on
/// any missing, lost or mistimed frame.
pub async fn play_all_of(url: &str, transport: Transport, exp: &Expected) {
    let mut session = Session::describe(url::Url::parse(url).unwrap(), SessionOptions::default())
        .await
        .expect("DESCRIBE");
    assert_eq!(session.streams().len(), 2);
    match session.streams()[0].parameters() {
        Some(ParametersRef::Video(v)) => assert_eq!(v.pixel_dimensions(), exp.video_dimensions),
        other => panic!("video parameters from SDP: {other:?}"),
    }
    assert_eq!(session.streams()[1].clock_rate_hz(), 48_000);
    for i in 0..2 {
        session
            .setup(i, SetupOptions::default().transport(transport.clone()))
            .await
            .expect("SETUP");
    }
    let playing = session.play(PlayOptions::default()).await.expect("PLAY");
    let mut demuxed = playing.demuxed().expect("demuxed");

    let (mut video, mut audio, mut keyframes) = (Vec::new(), Vec::new(), 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    while video.len() < exp.video_frames || audio.len() < exp.audio_frames {
        let item = tokio::time::timeout_at(deadline, demuxed.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out with {} video / {} audio frames",
                    video.len(),
                    audio.len()
                )
            });
        match item {
            Some(Ok(CodecItem::VideoFrame(f))) => {
                assert_eq!(f.loss(), 0, "video loss before frame {}", video.len());
                keyframes += usize::from(f.is_random_access_point());
                video.push(f.timestamp().elapsed());
            }
            Some(Ok(CodecItem::AudioFrame(f))) => {
                assert_eq!(f.loss(), 0, "audio loss before frame {}", audio.len());
                audio.push(f.timestamp().elapsed());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("retina error: {e}"),
            None => break,
        }
    }
    assert_eq!(video.len(), exp.video_frames, "every video frame arrives");
    assert_eq!(audio.len(), exp.audio_frames, "every audio frame arrives");
    assert_eq!(keyframes, exp.video_keyframes);
    // Audio has no reordering: its timestamps must strictly increase.
    assert!(
        audio.windows(2).all(|w| w[0] < w[1]),
        "audio timestamps monotonic"
    );
    // Video may carry B-frames (the bundled sample does not; a recording of a B-frame
    // source does), and then RTP timestamps (presentation times, RFC 6184 §5.1) are not
    // monotonic in decode order; in presentation order they must be exactly the file's.
    let min = *video.iter().min().unwrap();
    let got: BTreeSet<i64> = video.iter().map(|t| t - min).collect();
    assert_eq!(got.len(), video.len(), "no duplicate video timestamps");
    assert_eq!(
        &got, &exp.video_pts,
        "video presentation timestamps match the file"
    );
}

/// What a background retina player reports.
#[derive(Debug)]
pub enum PlayerEvent {
    /// PLAY was answered.
    Playing,
    /// The stream ended (`error` is `None` at a clean end) after `frames` audio+video frames.
    Ended {
        frames: usize,
        error: Option<String>,
    },
}

/// Plays every track of `url` with retina on its own thread until the stream ends or fails,
/// reporting on the returned channel.
pub fn spawn_player(url: String, transport: Transport) -> std::sync::mpsc::Receiver<PlayerEvent> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut frames = 0usize;
            let result: Result<(), String> = async {
                let mut session =
                    Session::describe(url::Url::parse(&url).unwrap(), SessionOptions::default())
                        .await
                        .map_err(|e| format!("DESCRIBE: {e}"))?;
                for i in 0..session.streams().len() {
                    session
                        .setup(i, SetupOptions::default().transport(transport.clone()))
                        .await
                        .map_err(|e| format!("SETUP: {e}"))?;
                }
                let playing = session
                    .play(PlayOptions::default())
                    .await
                    .map_err(|e| format!("PLAY: {e}"))?;
                let _ = tx.send(PlayerEvent::Playing);
                let mut demuxed = playing.demuxed().map_err(|e| e.to_string())?;
                loop {
                    match tokio::time::timeout(Duration::from_secs(30), demuxed.next()).await {
                        Err(_) => return Err("no frame for 30 s".into()),
                        Ok(None) => return Ok(()),
                        Ok(Some(Ok(CodecItem::VideoFrame(_) | CodecItem::AudioFrame(_)))) => {
                            frames += 1
                        }
                        Ok(Some(Ok(_))) => {}
                        Ok(Some(Err(e))) => return Err(e.to_string()),
                    }
                }
            }
            .await;
            let _ = tx.send(PlayerEvent::Ended {
                frames,
                error: result.err(),
            });
        });
    });
    rx
}

/// What retina received of a live stream, from its join to its end.
#[derive(Debug, Default)]
pub struct LivePlay {
    /// Each video frame: presentation time (90 kHz ticks since the first frame) and whether
    /// it is a random access point.
    pub video: Vec<(i64, bool)>,
    /// Audio frames.
    pub audio: usize,
}

/// Plays the live stream `url` over `transport` from its join until no frame has come for
/// 3 s (retina does not end on RTCP BYE) or the stream ends; panics on any loss, error, or
/// if nothing comes within 3 s of PLAY or it still plays after 40 s.
pub async fn play_live(url: &str, transport: Transport) -> LivePlay {
    let mut session = Session::describe(url::Url::parse(url).unwrap(), SessionOptions::default())
        .await
        .expect("DESCRIBE");
    assert_eq!(session.streams().len(), 2, "video and audio announced");
    for i in 0..2 {
        session
            .setup(i, SetupOptions::default().transport(transport.clone()))
            .await
            .expect("SETUP");
    }
    let playing = session.play(PlayOptions::default()).await.expect("PLAY");
    let mut demuxed = playing.demuxed().expect("demuxed");
    let mut got = LivePlay::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still playing after 40 s"
        );
        match tokio::time::timeout(Duration::from_secs(3), demuxed.next()).await {
            Err(_) if !got.video.is_empty() => break,
            Err(_) => panic!("no frame within 3 s"),
            Ok(Some(Ok(CodecItem::VideoFrame(f)))) => {
                assert_eq!(f.loss(), 0, "video loss before frame {}", got.video.len());
                got.video
                    .push((f.timestamp().elapsed(), f.is_random_access_point()));
            }
            Ok(Some(Ok(CodecItem::AudioFrame(f)))) => {
                assert_eq!(f.loss(), 0, "audio loss before frame {}", got.audio);
                got.audio += 1;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("retina error after {} frames: {e}", got.video.len()),
            Ok(None) => break,
        }
    }
    got
}

/// Checks a live play of `file` (an MP4 published from its start) against the file: the
/// first frame is a keyframe, and the frames are the file's last ones from that keyframe on,
/// each with the file's presentation time relative to it, within `tolerance` 90 kHz ticks
/// (0 for RTP publishers; RTMP carries milliseconds, so 90). Returns the video frames played.
pub fn assert_live_matches_file(
    got: &LivePlay,
    file: &std::path::Path,
    min_frames: usize,
    tolerance: i64,
) -> usize {
    let media = MediaFile::open(file, "published").unwrap();
    let track = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .unwrap();
    let pts_90k: Vec<i64> = track
        .samples
        .iter()
        .map(|s| track.pts_ticks(s) * 90_000 / i64::from(track.timescale))
        .collect();
    assert!(
        got.video.first().is_some_and(|f| f.1),
        "the first frame is a keyframe"
    );
    let n = got.video.len();
    assert!(n >= min_frames, "{n} video frames, want ≥ {min_frames}");
    assert!(
        n <= track.samples.len(),
        "{n} frames, the file has {}",
        track.samples.len()
    );
    let start = track.samples.len() - n;
    assert!(
        track.samples[start].sync,
        "the frames are the file's last {n}, from a keyframe"
    );
    for (k, (t, _)) in got.video.iter().enumerate() {
        let want = pts_90k[start + k] - pts_90k[start];
        assert!(
            (t - want).abs() <= tolerance,
            "video frame {k} after the join at {t}, the file's at {want} (±{tolerance})"
        );
    }
    assert!(
        got.audio > n,
        "{} audio frames beside {n} video frames",
        got.audio
    );
    n
}
