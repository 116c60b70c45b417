#!/usr/bin/env bash
# nginx serving an MP4 as fMP4 HLS cut by ffmpeg, for hand runs of
# `shardcast bench --protocol hls --url … --server-pid …` against a reference HTTP server.
# (`shardcast bench --protocol hls --against nginx` does the same by itself, in
# src/bin/shardcast/loadgen/nginx.rs; keep the two configurations alike.)
#
#   scripts/nginx-hls.sh FILE.mp4 [--live] [PORT]      (default port 8089)
#
# VOD: ffmpeg cuts the file once (-c copy, 2 s segments at keyframes). --live: ffmpeg runs
# `-re -stream_loop -1` writing a 6-segment sliding window (delete_segments+temp_file: a
# segment appears only complete, by rename). nginx: worker_processes 1 (the bench pins one
# shardcast shard to one core; one worker on one core is the like-for-like comparison),
# sendfile on, tcp_nopush on, keep-alive without a request cap, access log off, no
# open_file_cache (it would keep serving a live playlist ffmpeg replaced by rename).
# Prints the URL and nginx's master pid; Ctrl-C or SIGTERM stops nginx and ffmpeg and
# removes the temporary folder.
set -euo pipefail
file=${1:?usage: nginx-hls.sh FILE.mp4 [--live] [PORT]}
live=0; port=8089
for a in "${@:2}"; do
  case "$a" in --live) live=1 ;; *) port=$a ;; esac
done
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "nginx missing: scripts/install-test-deps.sh" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
dir=$(mktemp -d /tmp/nginx-hls.XXXXXX)
chmod 755 "$dir"  # nginx workers run as an unprivileged user when started by root
mkdir -p "$dir/root/hls" "$dir/tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
hls=(-map 0 -c copy -f hls -hls_time 2 -hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4
     -master_pl_name index.m3u8 -hls_segment_filename "$dir/root/hls/seg%d.m4s")
if [ "$live" = 1 ]; then
  ffmpeg -hide_banner -loglevel error -nostdin -y -re -stream_loop -1 -i "$file" "${hls[@]}" \
    -hls_list_size 6 -hls_flags delete_segments+temp_file "$dir/root/hls/media.m3u8" &
  pids+=($!)
  until [ "$(grep -c EXTINF "$dir/root/hls/media.m3u8" 2>/dev/null || echo 0)" -ge 3 ]; do sleep 0.2; done
else
  ffmpeg -hide_banner -loglevel error -nostdin -y -i "$file" "${hls[@]}" -hls_playlist_type vod \
    "$dir/root/hls/media.m3u8"
fi
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 30000; use epoll; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    types { application/vnd.apple.mpegurl m3u8; video/mp4 mp4 m4s; }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $dir/root;
        location ~ \.m3u8\$ { add_header Cache-Control "max-age=1"; }
    }
}
CONF
"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
pids+=($!)
echo "nginx-hls ready url=http://127.0.0.1:$port/hls/index.m3u8 pid=${pids[-1]}"
wait "${pids[-1]}"
