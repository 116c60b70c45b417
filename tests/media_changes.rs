//! Media files changing under their viewers: truncating a file in place (which would SIGBUS
//! a naive mmap server) ends its viewers cleanly with RTCP BYE and releases the mapping, so
//! the writer proceeds and the server keeps running; new viewers see the new file. Replacing a
//! file by rename, or deleting it, leaves current viewers on their consistent old copy.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{parse_rtp, setup_udp_stream, wait_for_bye, RawRtsp};

#[test]
fn truncation_in_place_ends_viewers_with_bye_and_the_server_survives() {
    let dir = std::env::temp_dir().join(format!("shardcast-change-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sample = std::fs::read(format!(
        "{}/tests/media/sample.mp4",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let clip = dir.join("clip.mp4");
    std::fs::write(&clip, &sample).unwrap();
    let mut server = common::Server::start(&["--media", dir.to_str().unwrap()]);

    let mut v = setup_udp_stream(server.addr, "clip", 1);
    assert_eq!(
        v.rtsp
            .request("PLAY", &v.url, &[("Session", &v.session)])
            .status,
        200
    );
    let mut buf = [0u8; 2048];
    let n = v.socks[0].0.recv(&mut buf).expect("streaming");
    assert!(parse_rtp(&buf[..n]).is_some());

    // Truncate in place, as `cp` over an existing file or a careless editor would.
    let t0 = Instant::now();
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&clip)
        .unwrap();
    f.write_all(b"not an mp4 any more").unwrap();
    drop(f);
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "the writer was held {waited:?}"
    );
    assert!(
        wait_for_bye(&v.socks[0].1, Duration::from_secs(3)),
        "viewer got RTCP BYE"
    );
    assert!(server.is_running(), "no SIGBUS");

    // New requests see the new (now broken) file, then a good one again.
    let mut c = RawRtsp::connect(server.addr);
    assert_eq!(c.request("DESCRIBE", &server.url("clip"), &[]).status, 404);
    std::fs::write(&clip, &sample).unwrap();
    assert_eq!(c.request("DESCRIBE", &server.url("clip"), &[]).status, 200);
    let mut again = setup_udp_stream(server.addr, "clip", 1);
    assert_eq!(
        again
            .rtsp
            .request("PLAY", &again.url, &[("Session", &again.session)])
            .status,
        200
    );
    assert!(
        again.socks[0].0.recv(&mut buf).is_ok(),
        "re-indexed file plays"
    );
    assert!(server.wait_exit(Duration::from_millis(100)).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replacing_by_rename_or_deleting_keeps_current_viewers_on_the_old_copy() {
    let dir = std::env::temp_dir().join(format!("shardcast-rename-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::copy(
        format!("{root}/tests/media/sample.mp4"),
        dir.join("clip.mp4"),
    )
    .unwrap();
    let server = common::Server::start(&["--media", dir.to_str().unwrap()]);
    let mut v = setup_udp_stream(server.addr, "clip", 1);
    assert_eq!(
        v.rtsp
            .request("PLAY", &v.url, &[("Session", &v.session)])
            .status,
        200
    );
    // The viewer is streaming before the file is replaced: wait for its first packet.
    let mut buf = [0u8; 2048];
    v.socks[0]
        .0
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = v.socks[0].0.recv(&mut buf).expect("the viewer streams");
    let mut last: Option<u16> = parse_rtp(&buf[..n]).map(|p| p.seq);
    v.socks[0]
        .0
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::fs::copy(format!("{root}/tests/media/short.mp4"), dir.join("new.tmp")).unwrap();
    std::fs::rename(dir.join("new.tmp"), dir.join("clip.mp4")).unwrap();
    // The old viewer keeps a gapless stream.
    let end = Instant::now() + Duration::from_secs(1);
    let mut got = 0;
    while Instant::now() < end {
        if let Ok(n) = v.socks[0].0.recv(&mut buf) {
            let seq = parse_rtp(&buf[..n]).unwrap().seq;
            if let Some(l) = last {
                assert_eq!(seq, l.wrapping_add(1));
            }
            last = Some(seq);
            got += 1;
        }
    }
    assert!(got > 20);
    // A new viewer gets the new file (2 s long).
    let mut c = RawRtsp::connect(server.addr);
    let d = c.request("DESCRIBE", &server.url("clip"), &[]);
    assert!(
        String::from_utf8_lossy(&d.body).contains("a=range:npt=0-2.0"),
        "new file served"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
