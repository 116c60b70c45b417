#!/usr/bin/python3
"""Plays an RTSP URL with GStreamer's rtspsrc until EOS: what the tests' gst-launch lines

    rtspsrc location=URL PROPERTY=VALUE... name=src
      src. ! application/x-rtp,media=video ! VIDEO-BRANCH
      src. ! application/x-rtp,media=audio ! AUDIO-BRANCH

did, but each rtspsrc pad is linked to its media's branch in rtspsrc's pad-added callback.
gst-launch links such caps-filtered branches by "delayed linking", which GStreamer 1.22 gives
up on when rtspsrc's no-more-pads races a pad-added in another streaming thread ("Delayed
linking failed"); the unlinked branch then stalls the whole pipeline until the test's timeout
(seen in CI and here on a loaded machine, with and without the warning printed). Linking in
the callback has no race.

Usage: gst_play.py URL [PROPERTY=VALUE...] [--video BRANCH] [--audio BRANCH] [-v]

PROPERTY=VALUE pairs set rtspsrc properties as gst-launch would (e.g. protocols=tcp,
tls-validation-flags=0). A BRANCH is a chain of elements as gst-launch writes it (`queue !
decodebin ! checksumsink`, `identity silent=false`; no caps filters or bins); with no --video/--audio the branches are `queue ! decodebin ! checksumsink`
and `queue ! decodebin ! fakesink`. A pad of a media without a branch is reported and left
unlinked (as a gst-launch line without that branch did). -v prints property changes as
gst-launch -v does (`/GstPipeline:pipeline0/GstIdentity:identity0: last-message = ...`).

Output matches gst-launch's where the tests read it: checksumsink prints one
`H:MM:SS.NNNNNNNNN <sha1>` line per decoded video frame on stdout; EOS prints `Got EOS from
element "pipeline0".`; bus warnings and errors print `WARNING: from element PATH: MESSAGE`
and `ERROR: from element PATH: MESSAGE` (with `Additional debug info:`) on stderr. The exit
status is 0 after EOS, 1 after an error.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

DEFAULT_BRANCHES = {
    "video": "queue ! decodebin ! checksumsink",
    "audio": "queue ! decodebin ! fakesink",
}


def parse_args(argv):
    url, props, branches, verbose = None, [], {}, False
    args = iter(argv)
    for arg in args:
        if arg in ("--video", "--audio"):
            branches[arg[2:]] = next(args)
        elif arg == "-v":
            verbose = True
        elif url is None:
            url = arg
        else:
            name, _, value = arg.partition("=")
            props.append((name, value))
    return url, props, branches or dict(DEFAULT_BRANCHES), verbose


def build_branch(pipeline, description):
    """Makes the elements of `description` (`queue ! decodebin ! checksumsink`, each element
    `FACTORY [PROPERTY=VALUE...]`) in `pipeline`, links them, and starts them; returns them.
    An element whose source pad comes later (decodebin) is linked to the next when it adds the
    pad. (Gst.parse_bin_from_description stalled here with decodebin inside a bin.)"""
    elements = []
    for part in description.split("!"):
        factory, *props = part.split()
        element = Gst.ElementFactory.make(factory)
        if element is None:
            raise SystemExit(f"ERROR: no GStreamer element {factory!r}")
        for prop in props:
            name, _, value = prop.partition("=")
            Gst.util_set_object_arg(element, name, value)
        pipeline.add(element)
        elements.append(element)
    for upstream, downstream in zip(elements, elements[1:]):
        if not upstream.link(downstream):
            def link_later(_element, pad, downstream=downstream):
                sink = downstream.get_static_pad("sink")
                if not sink.is_linked():
                    pad.link(sink)

            upstream.connect("pad-added", link_later)
    for element in reversed(elements):
        element.sync_state_with_parent()
    return elements


def main() -> int:
    url, props, branches, verbose = parse_args(sys.argv[1:])
    if url is None:
        print(__doc__, file=sys.stderr)
        return 2
    Gst.init(None)
    pipeline = Gst.Pipeline.new("pipeline0")
    src = Gst.ElementFactory.make("rtspsrc", "src")
    Gst.util_set_object_arg(src, "location", url)
    for name, value in props:
        Gst.util_set_object_arg(src, name, value)
    pipeline.add(src)
    linked = set()

    def on_pad_added(_src, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_string("media") if caps.get_size() else None
        if media not in branches or media in linked:
            print(f"gst_play: rtspsrc pad {pad.get_name()} ({media}) left unlinked",
                  file=sys.stderr, flush=True)
            return
        linked.add(media)
        elements = build_branch(pipeline, branches[media])
        result = pad.link(elements[0].get_static_pad("sink"))
        if result != Gst.PadLinkReturn.OK:
            print(f"gst_play: linking the {media} pad failed: {result}",
                  file=sys.stderr, flush=True)

    src.connect("pad-added", on_pad_added)
    if verbose:
        def on_deep_notify(_bin, obj, pspec):
            try:
                value = obj.get_property(pspec.name)
            except (TypeError, ValueError):
                return
            if hasattr(value, "to_string"):  # caps, structures: as gst-launch prints them
                value = value.to_string()
            print(f"{obj.get_path_string()}: {pspec.name} = {value}", flush=True)

        pipeline.connect("deep-notify", on_deep_notify)
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
    # As gst-launch does after EOS or an error: stop the pipeline (rtspsrc sends TEARDOWN).
    pipeline.set_state(Gst.State.NULL)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
