#!/usr/bin/python3
"""A WHIP client (RFC 9725) over GStreamer's webrtcbin, for rtgate's tests.

It publishes a live VP8 test pattern and an Opus tone to a WHIP endpoint:
POST the SDP offer (ICE gathered first, no trickle), apply the 201's answer,
play until --duration ends or SIGINT/SIGTERM, then DELETE the resource.
Debian's simple-whip-client is broken and whipsink is not packaged, hence
this script (shared/TESTING.md).

    /usr/bin/python3 whip_client.py URL [--token T] [--duration S]
        [--responses FILE] [--connect-timeout S]

Run it with Debian's /usr/bin/python3: it needs python3-gi, python3-gst-1.0
and the gir1.2-gst* packages. ICE uses 127.0.0.1 only. It prints progress
lines ("whip: ...") on stdout, "whip: connected" once ICE and DTLS are up,
and exits 0 after a clean DELETE, 1 on any failure, 2 on bad usage. Every
HTTP response is appended to --responses as a JSON line (method, url,
status, headers, body) for the test to search.
"""

import argparse
import json
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = """
webrtcbin name=wb bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1
  ! videoconvert ! queue
  ! vp8enc deadline=1 cpu-used=8 target-bitrate=800000 keyframe-max-dist=60 threads=1
  ! rtpvp8pay pt=96 mtu=1200 picture-id-mode=15-bit
  ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000,rtcp-fb-nack-pli=true,rtcp-fb-nack=true
  ! wb.
audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! queue
  ! opusenc bitrate=64000
  ! rtpopuspay pt=111 mtu=1200
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000
  ! wb.
"""


def log(msg):
    print(f"whip: {msg}", flush=True)


class Client:
    def __init__(self, opts):
        self.opts = opts
        self.loop = GLib.MainLoop()
        self.resource = None
        self.connected = False
        self.posted = False
        self.status = 0
        self.pipe = Gst.parse_launch(PIPELINE)
        self.wb = self.pipe.get_by_name("wb")
        # Loopback only: with a local address given, libnice gathers on it
        # alone, and no TCP candidates. PyGObject takes over webrtcbin's
        # reference to the agent here: keep it for the client's lifetime or
        # the agent is freed under webrtcbin.
        self.ice = self.wb.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.ice.set_property("ice-tcp", False)
        # The sink pads made a sendrecv transceiver each; WHIP sends only.
        i = 0
        while (t := self.wb.emit("get-transceiver", i)) is not None:
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
            i += 1
        self.wb.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.wb.connect("notify::ice-gathering-state", self.on_gathering)
        self.wb.connect("notify::connection-state", self.on_connection_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def record(self, method, url, status, headers, body):
        if not self.opts.responses:
            return
        rec = {"method": method, "url": url, "status": status,
               "headers": {k.lower(): v for k, v in headers.items()},
               "body": body.decode("latin-1")}
        with open(self.opts.responses, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def request(self, method, url, body=None, content_type=None):
        headers = {}
        if self.opts.token:
            headers["Authorization"] = "Bearer " + self.opts.token
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                data = resp.read()
                self.record(method, url, resp.status, resp.headers, data)
                return resp.status, resp.headers, data
        except urllib.error.HTTPError as e:
            data = e.read()
            self.record(method, url, e.code, e.headers, data)
            return e.code, e.headers, data

    def fail(self, msg):
        log(f"error: {msg}")
        self.status = 1
        self.loop.quit()

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.fail(f"pipeline: {err.message} ({dbg})")

    def on_negotiation_needed(self, wb):
        promise = Gst.Promise.new_with_change_func(self.on_offer, wb, None)
        wb.emit("create-offer", None, promise)

    def on_offer(self, promise, wb, _data):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            GLib.idle_add(self.fail, "create-offer gave no offer")
            return
        wb.emit("set-local-description", offer, Gst.Promise.new())
        # Without trickle the offer carries every candidate: POST it once
        # gathering is complete, or after 3 s with what there is.
        GLib.timeout_add_seconds(3, self.post_offer)

    def on_gathering(self, wb, _pspec):
        if wb.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        if self.posted:
            return False
        desc = self.wb.get_property("local-description")
        if desc is None:
            return False
        self.posted = True
        sdp = desc.sdp.as_text()
        log(f"POST {self.opts.url} ({len(sdp)} bytes of offer)")
        try:
            status, headers, body = self.request("POST", self.opts.url, sdp.encode(), "application/sdp")
        except OSError as e:
            self.fail(f"POST {self.opts.url}: {e}")
            return False
        if status != 201:
            self.fail(f"POST {self.opts.url}: {status}: {body.decode(errors='replace').strip()}")
            return False
        loc = headers.get("Location")
        if not loc:
            self.fail("201 without Location")
            return False
        self.resource = urllib.parse.urljoin(self.opts.url, loc)
        log(f"201 Created, resource {self.resource}, ETag {headers.get('ETag')}")
        res, msg = GstSdp.SDPMessage.new_from_text(body.decode())
        if res != GstSdp.SDPResult.OK:
            self.fail(f"answer does not parse: {res}")
            return False
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.wb.emit("set-remote-description", answer, Gst.Promise.new())
        return False

    def on_connection_state(self, wb, _pspec):
        state = wb.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and not self.connected:
            self.connected = True
            GLib.idle_add(log, "connected")
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(self.fail, "connection failed (ICE or DTLS)")

    def check_connected(self):
        if not self.connected:
            self.fail(f"not connected after {self.opts.connect_timeout} s")
        return False

    def stop(self):
        log("stopping")
        self.loop.quit()
        return False

    def run(self):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, self.stop)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self.stop)
        GLib.timeout_add_seconds(self.opts.connect_timeout, self.check_connected)
        if self.opts.duration > 0:
            GLib.timeout_add_seconds(self.opts.duration, self.stop)
        if self.pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            log("error: the pipeline does not start")
            return 1
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        if self.resource:
            try:
                status, _, body = self.request("DELETE", self.resource)
                log(f"DELETE {self.resource}: {status}")
                if status >= 300:
                    log(f"error: DELETE: {status}: {body.decode(errors='replace').strip()}")
                    self.status = 1
            except OSError as e:
                log(f"error: DELETE {self.resource}: {e}")
                self.status = 1
        return self.status


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url", help="the WHIP endpoint, e.g. http://127.0.0.1:8080/whip/cam1")
    p.add_argument("--token", default="", help="bearer token")
    p.add_argument("--duration", type=int, default=0, help="seconds to publish (0: until SIGINT/SIGTERM)")
    p.add_argument("--connect-timeout", type=int, default=15, help="seconds to wait for ICE and DTLS")
    p.add_argument("--responses", default="", help="append each HTTP response to this file (JSON lines)")
    opts = p.parse_args()
    Gst.init(None)
    for name in ("webrtcbin", "nicesrc", "vp8enc", "rtpvp8pay", "opusenc", "rtpopuspay", "videotestsrc"):
        if Gst.ElementFactory.find(name) is None:
            log(f"error: GStreamer element {name} is missing")
            return 1
    return Client(opts).run()


if __name__ == "__main__":
    sys.exit(main())
