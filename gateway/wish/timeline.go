package wish

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// viewerTimeline is when each step of a WHEP viewer's start happened, from
// its POST to the first keyframe rtgate wrote to it: where its time to
// first frame goes. It is logged once, at Debug, when the viewer ends
// ("WHEP viewer timeline"; `rtgate bench` reads it). In proxy mode rtgate
// sees only the signalling; the media steps are the SFU's.
//
// The steps after the answer are set from pion's callbacks and the
// fan-out's writer; each is a Unix time in ns, 0 until it happened.
type viewerTimeline struct {
	post time.Time // the POST arrived
	cold bool      // relay: this viewer started the stream's pull

	media, answer atomic.Int64 // relay: the pull delivered the tracks; the 201 was written
	ice, dtls     atomic.Int64 // ICE connected; DTLS connected (SRTP can carry packets)
	// kfRequest is the first keyframe request the fan-out sent upstream
	// since the POST (none when the viewer got the keyframe the fan-out
	// held since its pull started).
	kfRequest atomic.Int64
	// viewerPLIs counts the viewer's own keyframe requests (PLI, FIR)
	// until its first keyframe; firstPLI is when the first came.
	viewerPLIs, firstPLI atomic.Int64
	// firstRTP and keyframe are the first packet and the first keyframe
	// written to the viewer once its DTLS was up; earlyKeyframe is a
	// keyframe that reached the fan-out after the POST but before then:
	// pion drops what is written before SRTP is up, so it is lost to the
	// viewer unless the fan-out held it (the cold start: fanTrack.hold).
	firstRTP, keyframe, earlyKeyframe atomic.Int64

	ready atomic.Bool // DTLS is up
}

func newViewerTimeline(post time.Time) *viewerTimeline { return &viewerTimeline{post: post} }

// stamp records now into a step that has not happened yet.
func stamp(v *atomic.Int64) { v.CompareAndSwap(0, time.Now().UnixNano()) }

// watch follows the viewer's ICE and DTLS transports. pion has one
// handler per transport: these are rtgate's only ones (the PeerConnection's
// state, which superviseICE follows, has its own).
func (t *viewerTimeline) watch(pc *webrtc.PeerConnection) {
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			stamp(&t.ice)
		}
	})
	if sctp := pc.SCTP(); sctp != nil {
		sctp.Transport().OnStateChange(func(s webrtc.DTLSTransportState) {
			if s == webrtc.DTLSTransportStateConnected {
				stamp(&t.dtls)
				t.ready.Store(true)
			}
		})
	}
}

// packet is called by the fan-out's writer for each packet written to the
// viewer's video, until the first keyframe: no lock, no allocation.
func (t *viewerTimeline) packet(keyframe bool, now int64) {
	if t.keyframe.Load() != 0 {
		return
	}
	if !t.ready.Load() {
		if keyframe {
			t.earlyKeyframe.CompareAndSwap(0, now)
		}
		return
	}
	t.firstRTP.CompareAndSwap(0, now)
	if keyframe {
		t.keyframe.Store(now)
	}
}

// viewerPLI counts one of the viewer's keyframe requests.
func (t *viewerTimeline) viewerPLI() {
	if t.keyframe.Load() == 0 {
		t.viewerPLIs.Add(1)
		stamp(&t.firstPLI)
	}
}

// upstream records a keyframe request sent upstream at ns (Unix), if it is
// the viewer's first since its POST.
func (t *viewerTimeline) upstream(ns int64) {
	if ns >= t.post.UnixNano() && t.keyframe.Load() == 0 {
		t.kfRequest.CompareAndSwap(0, ns)
	}
}

// log writes the timeline: each step as the time since the POST.
func (t *viewerTimeline) log(log *slog.Logger, stream, mode, resource string) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{"stream", stream, "mode", mode, "resource", resource}
	if mode == ModeRelay {
		attrs = append(attrs, "cold", t.cold)
	}
	post := t.post.UnixNano()
	for _, s := range []struct {
		name string
		v    *atomic.Int64
	}{{"media", &t.media}, {"answer", &t.answer}, {"ice", &t.ice}, {"dtls", &t.dtls},
		{"keyframe_request", &t.kfRequest}, {"viewer_pli", &t.firstPLI}, {"first_rtp", &t.firstRTP},
		{"early_keyframe", &t.earlyKeyframe}, {"keyframe", &t.keyframe}} {
		if ns := s.v.Load(); ns != 0 {
			attrs = append(attrs, s.name, time.Duration(ns-post))
		}
	}
	if n := t.viewerPLIs.Load(); n > 0 {
		attrs = append(attrs, "viewer_plis", n)
	}
	log.Debug("WHEP viewer timeline", attrs...)
}
