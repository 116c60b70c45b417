#!/usr/bin/python3
"""Plays an RTSP URL with GStreamer's rtspsrc until EOS, as the tests' gst-launch line did:

    rtspsrc location=URL protocols=P buffer-mode=none [EXTRA...] name=src
      src. ! application/x-rtp,media=video ! queue ! decodebin ! checksumsink
      src. ! application/x-rtp,media=audio ! queue ! decodebin ! fakesink

but links each rtspsrc pad in its own pad-added callback. gst-launch links such caps-filtered
branches by "delayed linking", which GStreamer 1.22 gives up on when rtspsrc's no-more-pads
races a pad-added in another streaming thread ("Delayed linking failed"); the unlinked
branch then stalls the whole pipeline until the test's timeout (seen in CI and here on a
loaded machine, with and without the warning printed). Linking in the callback has no race.

Output matches gst-launch's where the tests read it: checksumsink prints one
`H:MM:SS.NNNNNNNNN <sha1>` line per decoded video frame on stdout; EOS prints `Got EOS from
element "pipeline0".`; bus warnings and errors print `WARNING: from element PATH: MESSAGE`
and `ERROR: from element PATH: MESSAGE` (with `Additional debug info:`) on stderr. The exit
status is 0 after EOS, 1 after an error. Usage: gst_play.py URL PROTOCOLS [PROPERTY=VALUE...]
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, protocols, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    Gst.init(None)
    pipeline = Gst.Pipeline.new("pipeline0")
    src = Gst.ElementFactory.make("rtspsrc", "src")
    Gst.util_set_object_arg(src, "location", url)
    Gst.util_set_object_arg(src, "protocols", protocols)
    # Timestamps from the RTP timestamps alone (see players.rs).
    Gst.util_set_object_arg(src, "buffer-mode", "none")
    for prop in extra:
        name, _, value = prop.partition("=")
        Gst.util_set_object_arg(src, name, value)
    pipeline.add(src)
    linked = set()

    def on_pad_added(_src, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_string("media") if caps.get_size() else None
        if media not in ("video", "audio") or media in linked:
            print(f"gst_play: rtspsrc pad {pad.get_name()} ({media}) left unlinked",
                  file=sys.stderr, flush=True)
            return
        linked.add(media)
        queue = Gst.ElementFactory.make("queue")
        decode = Gst.ElementFactory.make("decodebin")
        sink = Gst.ElementFactory.make("checksumsink" if media == "video" else "fakesink")
        for e in (queue, decode, sink):
            pipeline.add(e)
        queue.link(decode)

        def on_decoded_pad(_decode, dpad):
            sink_pad = sink.get_static_pad("sink")
            if not sink_pad.is_linked():
                dpad.link(sink_pad)

        decode.connect("pad-added", on_decoded_pad)
        for e in (sink, decode, queue):
            e.sync_state_with_parent()
        result = pad.link(queue.get_static_pad("sink"))
        if result != Gst.PadLinkReturn.OK:
            print(f"gst_play: linking the {media} pad failed: {result}",
                  file=sys.stderr, flush=True)

    src.connect("pad-added", on_pad_added)
    loop = GLib.MainLoop()
    status = {"code": 1}

    def on_message(_bus, msg):
        path = msg.src.get_path_string() if msg.src else "?"
        if msg.type == Gst.MessageType.EOS:
            print(f'Got EOS from element "{pipeline.get_name()}".', flush=True)
            status["code"] = 0
            loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print(f"ERROR: from element {path}: {err.message}\nAdditional debug info:\n{debug}",
                  file=sys.stderr, flush=True)
            status["code"] = 1
            loop.quit()
        elif msg.type == Gst.MessageType.WARNING:
            warn, debug = msg.parse_warning()
            print(f"WARNING: from element {path}: {warn.message}\nAdditional debug info:\n{debug}",
                  file=sys.stderr, flush=True)

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        print("ERROR: from element /GstPipeline:pipeline0: could not start", file=sys.stderr)
        return 1
    loop.run()
    # As gst-launch does after EOS: stop the pipeline (rtspsrc sends TEARDOWN).
    pipeline.set_state(Gst.State.NULL)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
