"""A real RTSP server for the tests (GStreamer's gst-rtsp-server), run as its own process.

Run it with the SYSTEM python (``/usr/bin/python3``, which has ``python3-gi`` and ``gir1.2-gst-rtsp-server-1.0``);
the project's virtual environment cannot import ``gi``. ``tests/support/rtsp.py`` starts and stops it.

    /usr/bin/python3 gst_rtsp_server.py --wav tone.wav [--port N] [--user U --password P]

Mounts, all streaming the WAV file in real time (each client gets its own pipeline, from the file's start):

* ``/audio``: one AAC audio track (what most cameras send besides video);
* ``/pcmu``: one G.711 mu-law audio track at 8 kHz (cheap cameras, doorbells);
* ``/av``: a small MJPEG video track (``stream=0``) and the AAC audio track (``stream=1``);
* ``/video``: video only (a camera without a microphone).

Lines on stdout: ``READY <port>`` once listening, then ``SETUP <path>`` for every SETUP request (e.g.
``SETUP /av/stream=1``), so a test can tell which tracks a client asked for.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

AUDIO_AAC = (
    "filesrc location={wav} ! wavparse ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1 "
    "! avenc_aac ! rtpmp4gpay name=pay{n} pt={pt}"
)
AUDIO_PCMU = (
    "filesrc location={wav} ! wavparse ! audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 "
    "! mulawenc ! rtppcmupay name=pay{n} pt=0"
)
# Tiny and cheap: the tests run on busy 2-core machines.
VIDEO = (
    "videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=5/1 "
    "! jpegenc ! rtpjpegpay name=pay{n} pt=26"
)


def launch_lines(wav: str) -> dict[str, str]:
    """The gst-launch description of every mount."""
    return {
        "/audio": f"( {AUDIO_AAC.format(wav=wav, n=0, pt=96)} )",
        "/pcmu": f"( {AUDIO_PCMU.format(wav=wav, n=0)} )",
        "/av": f"( {VIDEO.format(n=0)} {AUDIO_AAC.format(wav=wav, n=1, pt=97)} )",
        "/video": f"( {VIDEO.format(n=0)} )",
    }


def say(line: str) -> None:
    """One line to the test, at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def add_auth(server: GstRtspServer.RTSPServer, factories: list, user: str, password: str) -> None:
    """Basic authentication: only ``user`` with ``password`` may open and play the mounts."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    role = Gst.Structure.new_from_string(
        "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    )
    for factory in factories:
        factory.add_role_from_structure(role)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    factories = []
    for path, line in launch_lines(args.wav).items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(line)
        mounts.add_factory(path, factory)
        factories.append(factory)
    if args.user:
        add_auth(server, factories, args.user, args.password or "")

    def on_setup(_client: GstRtspServer.RTSPClient, ctx: GstRtspServer.RTSPContext) -> None:
        say(f"SETUP {ctx.uri.abspath}")

    def on_client(_server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
        client.connect("setup-request", on_setup)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {args.port}")
    say(f"READY {server.get_bound_port()}")
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
