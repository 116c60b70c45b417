//! nginx as the reference HLS server of `shardcast bench --protocol hls --against nginx`: the
//! same media cut into fMP4 HLS by ffmpeg (`-c copy -f hls -hls_segment_type fmp4`, 2 s
//! segments at the file's keyframes), served as static files by nginx with `sendfile on`.
//!
//! - **VOD**: ffmpeg cuts the whole file once (`-hls_playlist_type vod`) before nginx starts.
//! - **live**: ffmpeg runs for the whole run with `-re -stream_loop -1`, writing a sliding
//!   window of 6 segments (`-hls_list_size 6 -hls_flags delete_segments+temp_file`: a
//!   segment appears under its name only when complete, by rename, so nginx never serves a
//!   partial one; the playlist is always replaced by rename). Viewers reload the playlist
//!   every half target duration — nginx has no blocking reload, so this is plain HLS, the
//!   way nginx deployments serve live HLS written by a packager. ffmpeg's CPU is not the
//!   server's and is not counted (with `-c copy` it is small).
//!
//! nginx runs in the foreground (`daemon off`) as this process's child, pinned like a
//! started shardcast: `worker_processes` equals the shardcast shards it is compared with
//! (1 by default) so both servers get the same one core; more workers would only contend
//! for it. Access log off (shardcast keeps no per-request log either), keep-alive with no
//! request cap, `tcp_nopush on` (full frames with sendfile). Stopped with SIGTERM (nginx's
//! fast shutdown, which ends its workers too; a SIGKILL would orphan them) at drop, and the
//! temporary folder is removed.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::LoadError;

/// Where the nginx executable is looked for (Debian's package puts it in /usr/sbin).
const NGINX_PATHS: [&str; 3] = [
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
];
/// Segment length asked of ffmpeg (it cuts at the next keyframe at or after it).
pub(crate) const SEGMENT_SECS: u32 = 2;
/// Segments in the live sliding window.
const LIVE_WINDOW: u32 = 6;

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct NginxSetup {
    /// The MP4 to serve; `None`: the bundled sample.
    pub(crate) media: Option<PathBuf>,
    /// Live (ffmpeg writing a sliding window in real time) instead of VOD.
    pub(crate) live: bool,
    /// `worker_processes`.
    pub(crate) workers: usize,
    /// Core to pin nginx to, if any.
    pub(crate) pin_core: Option<usize>,
    /// Core the harness returns to after spawning, if any.
    pub(crate) harness_core: Option<usize>,
}

/// A running nginx serving HLS; stopped (and its folder removed) on drop.
pub(crate) struct NginxHls {
    nginx: Option<Child>,
    packager: Option<Child>,
    dir: PathBuf,
    /// The multivariant playlist's URL.
    pub(crate) url: String,
}

/// The nginx executable, if installed.
pub(crate) fn nginx_exe() -> Option<PathBuf> {
    NGINX_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl NginxHls {
    /// Cuts the media, writes the configuration and starts nginx; returns once it accepts
    /// connections and (live) the playlist has three segments.
    pub(crate) fn start(setup: &NginxSetup) -> Result<Self, LoadError> {
        let exe = nginx_exe().ok_or_else(|| {
            LoadError::Refused(
                "nginx is not installed (apt-get install -y nginx, or scripts/install-test-deps.sh --bench)".into(),
            )
        })?;
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shardcast-nginx-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut this = Self {
            nginx: None,
            packager: None,
            dir: dir.clone(),
            url: String::new(),
        };
        let io = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| LoadError::io(what, e)
        };
        let hls = dir.join("root").join("hls");
        std::fs::create_dir_all(&hls).map_err(io("creating the nginx folder"))?;
        std::fs::create_dir_all(dir.join("tmp")).map_err(io("creating the nginx folder"))?;
        // nginx's workers run as an unprivileged user when the bench runs as root: whatever
        // the umask, they must be able to read the tree.
        for d in [dir.as_path(), &dir.join("root"), &hls] {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .map_err(io("opening the nginx folder to its workers"))?;
        }
        let media = match &setup.media {
            Some(m) => m.clone(),
            None => {
                let p = dir.join("sample.mp4");
                std::fs::write(&p, shardcast::media::library::SAMPLE_MP4)
                    .map_err(io("writing the bundled sample"))?;
                p
            }
        };
        let mut ffmpeg = Command::new("ffmpeg");
        ffmpeg.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
        if setup.live {
            ffmpeg.args(["-re", "-stream_loop", "-1"]);
        }
        ffmpeg.arg("-i").arg(&media).args([
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            &SEGMENT_SECS.to_string(),
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
            "-master_pl_name",
            "index.m3u8",
        ]);
        if setup.live {
            ffmpeg.args([
                "-hls_list_size",
                &LIVE_WINDOW.to_string(),
                "-hls_flags",
                "delete_segments+temp_file",
            ]);
        } else {
            ffmpeg.args(["-hls_playlist_type", "vod"]);
        }
        ffmpeg
            .arg("-hls_segment_filename")
            .arg(hls.join("seg%d.m4s"))
            .arg(hls.join("media.m3u8"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if setup.live {
            let child = ffmpeg.spawn().map_err(io("spawning ffmpeg"))?;
            this.packager = Some(child);
        } else {
            let out = ffmpeg.output().map_err(io("running ffmpeg"))?;
            if !out.status.success() {
                return Err(LoadError::Protocol(format!(
                    "ffmpeg could not cut {}: {}",
                    media.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, setup.workers.max(1)))
            .map_err(io("writing nginx.conf"))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(core) = setup.pin_core {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        let spawned = cmd.spawn();
        if let Some(core) = setup.harness_core {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        this.nginx = Some(spawned.map_err(io("spawning nginx"))?);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = this.nginx.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(LoadError::ServerStart {
                    args: format!("nginx -c {}", conf.display()),
                    detail: format!("exit {status}: {}", log.trim()),
                });
            }
            if Instant::now() > deadline {
                return Err(LoadError::Protocol(
                    "nginx did not listen within 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if setup.live {
            this.wait_for_live_window(&hls.join("media.m3u8"))?;
        }
        this.url = format!("http://127.0.0.1:{port}/hls/index.m3u8");
        Ok(this)
    }

    /// nginx's master pid (its workers are its children).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.nginx.as_ref().map(Child::id)
    }

    /// Waits until the live playlist lists three segments, so viewers can join three target
    /// durations from its end (RFC 8216 §6.3.3) from the start.
    fn wait_for_live_window(&mut self, playlist: &Path) -> Result<(), LoadError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(playlist).unwrap_or_default();
            if text.matches("#EXTINF").count() >= 3 {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.packager.as_mut().map(Child::try_wait) {
                let mut err = String::new();
                if let Some(mut e) = self.packager.as_mut().and_then(|c| c.stderr.take()) {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(LoadError::Protocol(format!(
                    "ffmpeg (live packager) exited {status}: {}",
                    err.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(LoadError::Protocol(
                    "the live playlist had no three segments within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NginxHls {
    fn drop(&mut self) {
        if let Some(mut c) = self.packager.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.nginx.take() {
            // SIGTERM: nginx's fast shutdown, which stops its workers too.
            if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port free a moment ago (nginx binds it by number).
fn free_port() -> Result<u16, LoadError> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| LoadError::io("finding a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| LoadError::io("finding a free port", e))
}

/// The nginx configuration (see the module doc for each choice).
pub(crate) fn config(dir: &Path, port: u16, workers: usize) -> String {
    let d = dir.display();
    let mut c = String::new();
    let _ = write!(
        c,
        "# Written by shardcast bench: nginx serving ffmpeg-cut HLS from {d}/root.
worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 30000;
    use epoll;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp4 mp4 m4s;
    }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {d}/root;
        location ~ \\.m3u8$ {{
            add_header Cache-Control \"max-age=1\";
        }}
    }}
}}
"
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_comparison_settings() {
        let c = config(Path::new("/tmp/x"), 8123, 1);
        for line in [
            "worker_processes 1;",
            "sendfile on;",
            "tcp_nopush on;",
            "access_log off;",
            "listen 127.0.0.1:8123 backlog=4096;",
            "root /tmp/x/root;",
            "location ~ \\.m3u8$",
        ] {
            assert!(c.contains(line), "{line} missing in\n{c}");
        }
    }
}
