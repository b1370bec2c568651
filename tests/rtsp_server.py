"""A GStreamer RTSP server for the camera tests: serves one photo as a live H.264 stream at rtsp://127.0.0.1:PORT/cam.

Runs under Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good
and -ugly for x264enc), not the project's venv: ``python3 rtsp_server.py PORT IMAGE.jpg [FPS]``. Prints
``ready`` once it listens; runs until killed.
"""

import sys

import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]

Gst.init(None)
port, image = sys.argv[1], sys.argv[2]
fps = int(sys.argv[3]) if len(sys.argv) > 3 else 15
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# imagefreeze repeats the photo as a live video; a key frame every second, so a reconnecting reader starts soon.
factory.set_launch(f"( filesrc location={image} ! jpegdec ! imagefreeze is-live=true ! videoconvert ! "
                   f"video/x-raw,format=I420,framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast "
                   f"key-int-max={fps} ! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
