#!/usr/bin/python3
"""GStreamer's RTSP server (gst-rtsp-server) serving one MP4 with a shared pipeline: the
reference peer `scripts/bench-vs-gst.sh` measures shardcast against.

Usage: gst-rtsp-server.py FILE [--port 8554] [--path /live]

One pipeline for all viewers (`set_shared(True)`), as a live channel is one stream for all
(a PLAY with `Range: npt=0-` seeks it back to the start for everyone, so the load generator
sends none):
the file is demuxed and payloaded once (H.264 as rtph264pay, AAC as rtpmp4gpay), and
every viewer gets the same packets, over UDP or TCP interleaved as it asks. Listens on
127.0.0.1 only. Stops on SIGTERM/SIGINT.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/live")
    ap.add_argument(
        "--client-threads",
        type=int,
        default=1,
        help="threads serving client connections (gst-rtsp-server's pool; -1: one each)",
    )
    args = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    pool = server.get_thread_pool()
    pool.set_max_threads(args.client_threads)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{args.file}" ! qtdemux name=d '
        "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
