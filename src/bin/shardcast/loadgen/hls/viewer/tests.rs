//! The viewer's walk against scripted playlists and a fake clock.

use super::*;

const MULTI: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\nmedia.m3u8\n";

fn vod(n: usize) -> String {
    let mut s = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n".to_owned();
    for i in 0..n {
        s.push_str(&format!("#EXTINF:2.0,\nseg{i}.m4s\n"));
    }
    s + "#EXT-X-ENDLIST\n"
}

fn path(next: &Next) -> &str {
    match next {
        Next::Get(u, _) => &u.path,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn viewer() -> Viewer {
    Viewer::new(Url::parse("http://127.0.0.1:9/live/index.m3u8").unwrap())
}

#[test]
fn vod_walks_playlists_init_then_segments_three_ahead_and_loops() {
    let t0 = Instant::now();
    let mut v = viewer();
    assert_eq!(path(&v.begin(t0)), "/live/index.m3u8");
    let n = v.on_response(t0, 200, MULTI.as_bytes(), 60);
    assert_eq!(path(&n), "/live/media.m3u8");
    let pl = vod(5);
    let n = v.on_response(t0, 200, pl.as_bytes(), 300);
    assert_eq!(path(&n), "/live/init.mp4");
    assert_eq!(v.mode(), FollowMode::Vod);
    let t1 = t0 + Duration::from_millis(50);
    assert_eq!(path(&v.on_response(t1, 200, &[], 800)), "/live/seg0.m4s");
    // Segments 0..2 arrive at once: 6 s ahead is the bound, so after the third it waits.
    assert_eq!(path(&v.on_response(t1, 200, &[], 1000)), "/live/seg1.m4s");
    assert_eq!(v.stats().ttfs, Some(Duration::from_millis(50)));
    assert_eq!(path(&v.on_response(t1, 200, &[], 1000)), "/live/seg2.m4s");
    let wait = v.on_response(t1, 200, &[], 1000);
    let Next::WakeAt(at) = wait else {
        panic!("three segments ahead: {wait:?}")
    };
    assert!(at > t1 && at <= t1 + Duration::from_millis(2));
    // 1 s later one second has played: the next segment.
    let t2 = t1 + Duration::from_secs(1);
    assert_eq!(path(&v.wake(t2)), "/live/seg3.m4s");
    let Next::WakeAt(at) = v.on_response(t2, 200, &[], 1000) else {
        panic!("7 s ahead")
    };
    assert!((at - t2).as_secs_f64() > 0.99 && (at - t2).as_secs_f64() < 1.01);
    assert_eq!(path(&v.wake(at)), "/live/seg4.m4s");
    let Next::WakeAt(at) = v.on_response(at, 200, &[], 1000) else {
        panic!("ahead again")
    };
    let t3 = at;
    assert_eq!(path(&v.wake(t3)), "/live/seg0.m4s", "loops to the start");
    assert_eq!(v.stats().loops, 1);
    assert_eq!(v.stats().segments, 5);
    assert_eq!(v.stats().body_bytes, 60 + 300 + 800 + 5000);
    assert_eq!(v.playback().stalls_at(t3).0, 0);
}

/// A live LL-HLS playlist: segment `msn_done` complete (parts 0..3 of 0.5 s), the next in
/// progress with `partial` parts; only part 0 of a segment is independent; PART-HOLD-BACK
/// is 1.0 s.
fn ll(msn_done: u64, partial: usize) -> String {
    let mut s = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0\n#EXT-X-PART-INF:PART-TARGET=0.5\n".to_owned();
    s.push_str(&format!(
        "#EXT-X-MEDIA-SEQUENCE:{msn_done}\n#EXT-X-MAP:URI=\"init.mp4\"\n"
    ));
    for k in 0..4 {
        let ind = if k == 0 { ",INDEPENDENT=YES" } else { "" };
        s.push_str(&format!(
            "#EXT-X-PART:DURATION=0.5,URI=\"part{msn_done}.{k}.m4s\"{ind}\n"
        ));
    }
    s.push_str(&format!("#EXTINF:2.0,\nseg{msn_done}.m4s\n"));
    let next = msn_done + 1;
    for k in 0..partial {
        let ind = if k == 0 { ",INDEPENDENT=YES" } else { "" };
        s.push_str(&format!(
            "#EXT-X-PART:DURATION=0.5,URI=\"part{next}.{k}.m4s\"{ind}\n"
        ));
    }
    s.push_str(&format!(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{next}.{partial}.m4s\"\n"
    ));
    s
}

#[test]
fn ll_hls_joins_at_an_independent_part_hold_back_from_the_edge_then_blocks() {
    let t0 = Instant::now();
    let mut v = viewer();
    v.begin(t0);
    v.on_response(t0, 200, MULTI.as_bytes(), 1);
    assert_eq!(
        path(&v.on_response(t0, 200, ll(10, 2).as_bytes(), 1)),
        "/live/init.mp4"
    );
    assert_eq!(v.mode(), FollowMode::LowLatency);
    // From the end: 11.1 + 11.0 = 1.0 s → 11.0, which is independent.
    assert_eq!(path(&v.on_response(t0, 200, &[], 1)), "/live/part11.0.m4s");
    assert_eq!(path(&v.on_response(t0, 200, &[], 1)), "/live/part11.1.m4s");
    let n = v.on_response(t0, 200, &[], 1);
    assert_eq!(path(&n), "/live/media.m3u8?_HLS_msn=11&_HLS_part=2");
    assert!(matches!(n, Next::Get(_, Fetch::Media { blocking: true })));
    // The reload answers with segment 11 complete (4 parts) and 12.0 listed.
    let t1 = t0 + Duration::from_millis(500);
    let n = v.on_response(t1, 200, ll(11, 1).as_bytes(), 1);
    assert_eq!(path(&n), "/live/part11.2.m4s");
    assert_eq!(path(&v.on_response(t1, 200, &[], 1)), "/live/part11.3.m4s");
    assert_eq!(path(&v.on_response(t1, 200, &[], 1)), "/live/part12.0.m4s");
    assert_eq!(
        path(&v.on_response(t1, 200, &[], 1)),
        "/live/media.m3u8?_HLS_msn=12&_HLS_part=1"
    );
    // Had segment 12 completed with just one part, a reload for 12.1 moves on to 13.0.
    let t2 = t1 + Duration::from_millis(500);
    let mut done12 = ll(12, 0)
        .replace("part12.1", "x")
        .replace("part12.2", "x")
        .replace("part12.3", "x");
    done12 = done12.replace("#EXT-X-PART:DURATION=0.5,URI=\"x.m4s\"\n", "");
    assert_eq!(
        path(&v.on_response(t2, 200, done12.as_bytes(), 1)),
        "/live/media.m3u8?_HLS_msn=13&_HLS_part=0"
    );
    assert_eq!(v.stats().parts, 5);
    assert_eq!(v.stats().blocking_reloads, 2);
    assert_eq!(v.playback().stalls_at(t2).0, 0);
}

#[test]
fn ll_hls_hold_back_walks_back_to_an_independent_part() {
    let pl = playlist::parse_media(ll(10, 3).as_bytes()).unwrap();
    // 1.0 s from the end is 11.1 (11.2 + 11.1); 11.1 is not independent → 11.0.
    assert_eq!(start_point(&pl, FollowMode::LowLatency), (11, 0));
    let pl = playlist::parse_media(ll(10, 1).as_bytes()).unwrap();
    // 11.0 + 10.3 = 1.0 s → 10.3, dependent → 10.0.
    assert_eq!(start_point(&pl, FollowMode::LowLatency), (10, 0));
}

fn live(first: u64, n: u64) -> String {
    let mut s = format!("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-MAP:URI=\"init.mp4\"\n");
    for i in first..first + n {
        s.push_str(&format!("#EXTINF:2.0,\nseg{i}.m4s\n"));
    }
    s
}

#[test]
fn plain_live_joins_three_targets_back_and_reloads_every_half_target() {
    let t0 = Instant::now();
    let mut v = viewer();
    v.begin(t0);
    v.on_response(t0, 200, MULTI.as_bytes(), 1);
    v.on_response(t0, 200, live(20, 6).as_bytes(), 1);
    assert_eq!(v.mode(), FollowMode::Live);
    assert_eq!(path(&v.on_response(t0, 200, &[], 1)), "/live/seg23.m4s");
    assert_eq!(path(&v.on_response(t0, 200, &[], 1)), "/live/seg24.m4s");
    assert_eq!(path(&v.on_response(t0, 200, &[], 1)), "/live/seg25.m4s");
    let n = v.on_response(t0, 200, &[], 1);
    assert_eq!(
        n,
        Next::WakeAt(t0 + Duration::from_secs(1)),
        "half the target duration"
    );
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(path(&v.wake(t1)), "/live/media.m3u8");
    // Nothing new yet: wait another half target.
    assert_eq!(
        v.on_response(t1, 200, live(20, 6).as_bytes(), 1),
        Next::WakeAt(t1 + Duration::from_secs(1))
    );
    let t2 = t1 + Duration::from_secs(1);
    v.wake(t2);
    assert_eq!(
        path(&v.on_response(t2, 200, live(21, 6).as_bytes(), 1)),
        "/live/seg26.m4s"
    );
    // Far behind: the window moved past the next segment → rejoin the edge, counted.
    v.on_response(t2, 200, &[], 1);
    let t3 = t2 + Duration::from_secs(1);
    v.wake(t3);
    assert_eq!(
        path(&v.on_response(t3, 200, live(40, 6).as_bytes(), 1)),
        "/live/seg43.m4s"
    );
    assert_eq!(v.stats().fell_behind, 1);
}

/// A 404 on a segment is counted by status and skipped after a playlist reload; a
/// connection cut mid-body is counted and the same request retried; endless failures end
/// the viewer instead of spinning.
#[test]
fn refusals_and_cut_connections_are_counted_and_retried() {
    let t0 = Instant::now();
    let mut v = viewer();
    v.begin(t0);
    v.on_response(t0, 200, MULTI.as_bytes(), 1);
    v.on_response(t0, 200, live(0, 6).as_bytes(), 1);
    assert_eq!(path(&v.on_response(t0, 200, &[], 1)), "/live/seg3.m4s");
    let n = v.on_response(t0, 404, &[], 0);
    let Next::WakeAt(at) = n else { panic!("{n:?}") };
    assert_eq!(path(&v.wake(at)), "/live/media.m3u8");
    assert_eq!(
        path(&v.on_response(at, 200, live(0, 6).as_bytes(), 1)),
        "/live/seg4.m4s"
    );
    assert_eq!(v.stats().errors_by_status, [(404, 1)]);
    let Next::WakeAt(at) = v.on_transport_error(at, "closed mid-body") else {
        panic!()
    };
    assert_eq!(
        path(&v.wake(at)),
        "/live/seg4.m4s",
        "the same request again"
    );
    assert_eq!(v.stats().transport_errors, 1);
    let mut last = Next::Stop;
    for _ in 0..MAX_FAILURES_IN_A_ROW {
        last = v.on_transport_error(at, "refused");
        if let Next::WakeAt(t) = last {
            v.wake(t);
        }
    }
    assert_eq!(last, Next::Stop);
    assert!(v.stopped());
}
