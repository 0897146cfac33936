package sfu_test

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// dropper loses the first copy of every 7th media packet the SFU sends
// (by RTP sequence number, which SRTP leaves in the clear); RTX packets
// (another payload type) pass.
type dropper struct {
	net.PacketConn
	mu      sync.Mutex
	dropped map[uint16]bool
	rtx     int
}

func (c *dropper) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || n <= 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
			return n, addr, err
		}
		seq := binary.BigEndian.Uint16(b[2:])
		c.mu.Lock()
		if b[1]&0x7f == 97 { // VP8's RTX payload type in gateway/peer
			c.rtx++
		} else if seq%7 == 3 && !c.dropped[seq] {
			c.dropped[seq] = true
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		return n, addr, err
	}
}

// TestNACKFromTrackHistory: a subscriber whose wire loses packets gets them
// back by RTX, answered from the published track's history (the SFU's NACK
// responder keeps no copy per subscriber), before and after a switch to
// another track: the resent packets carry the subscriber's rebased
// sequence numbers and the right payloads.
func TestNACKFromTrackHistory(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, _ := publisherOf(t, e, "one", "two")

	drop := &dropper{dropped: map[uint16]bool{}}
	api, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: rtctest.LoopbackOnly,
		WrapConn: func(c net.PacketConn) net.PacketConn { drop.PacketConn = c; return drop }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	pc, err := api.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	tracks := make(chan *webrtc.TrackRemote, 1)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { tracks <- tr })
	c := rtctest.Ctx(t)
	ns, err := e.Client.NewSession(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	answer := func(_ context.Context, offer rtapi.SessionDescription) (rtapi.SessionDescription, error) {
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
			return rtapi.SessionDescription{}, err
		}
		ans, err := pc.CreateAnswer(nil)
		if err != nil {
			return rtapi.SessionDescription{}, err
		}
		done := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(ans); err != nil {
			return rtapi.SessionDescription{}, err
		}
		<-done
		return rtapi.SessionDescription{Type: "answer", SDP: pc.LocalDescription().SDP}, nil
	}
	pulled, err := e.Client.PullTracks(c, ns.SessionID, []rtapi.TrackObject{{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "one"}}, answer)
	if err != nil {
		t.Fatal(err)
	}
	if err := realtime.ItemErrors(pulled); err != nil {
		t.Fatal(err)
	}
	var tr *webrtc.TrackRemote
	select {
	case tr = <-tracks:
	case <-time.After(10 * time.Second):
		t.Fatal("no track within 10 s")
	}

	// What arrived, by sequence number: the source tag and index of its
	// payload (checked byte for byte).
	type got struct {
		tag string
		idx uint32
	}
	seen := map[uint16]got{}
	var first, last uint16
	var switchAt uint16 // first sequence number of "two"
	read := func(until func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !until() {
			if time.Now().After(deadline) {
				t.Fatalf("%d packets within 15 s", len(seen))
			}
			_ = tr.SetReadDeadline(deadline)
			p, _, err := tr.ReadRTP()
			if err != nil {
				t.Fatal(err)
			}
			idx := binary.BigEndian.Uint32(p.Payload)
			tag := string(p.Payload[4:7])
			if string(p.Payload) != string(rtctest.PayloadFor(tag, idx)) {
				t.Fatalf("packet %d: payload is not what source %q sent", p.SequenceNumber, tag)
			}
			if g, ok := seen[p.SequenceNumber]; ok && g != (got{tag, idx}) {
				t.Fatalf("packet %d came as %s #%d and as %s #%d", p.SequenceNumber, g.tag, g.idx, tag, idx)
			}
			if len(seen) == 0 {
				first, last = p.SequenceNumber, p.SequenceNumber
			}
			seen[p.SequenceNumber] = got{tag, idx}
			if d := p.SequenceNumber - last; d < 1<<15 {
				last = p.SequenceNumber
			}
			if tag == "two" && (switchAt == 0 || p.SequenceNumber-switchAt >= 1<<15) {
				switchAt = p.SequenceNumber
			}
		}
	}
	read(func() bool { return len(seen) >= 80 })
	res, err := e.Client.UpdateTracks(c, ns.SessionID, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, Mid: pulled[0].Mid, SessionID: sid, TrackName: "two"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		t.Fatal(err)
	}
	read(func() bool { return switchAt != 0 && last-switchAt >= 80 })

	// Every sequence number from the first to 20 before the last (those
	// may still be under repair) arrived, each source's run consecutive.
	end := last - 20
	var prev got
	for s := first; s != end; s++ {
		g, ok := seen[s]
		if !ok {
			drop.mu.Lock()
			lost := drop.dropped[s]
			drop.mu.Unlock()
			t.Fatalf("packet %d (of %d..%d, switch at %d) never arrived (dropped on the wire: %v)", s, first, end, switchAt, lost)
		}
		if s != first && g.tag == prev.tag && g.idx != prev.idx+1 {
			t.Fatalf("packet %d is %s #%d after #%d", s, g.tag, g.idx, prev.idx)
		}
		prev = g
	}
	drop.mu.Lock()
	defer drop.mu.Unlock()
	var before, after int
	for s := range drop.dropped {
		if s-first < end-first {
			if s-switchAt < 1<<15 {
				after++
			} else {
				before++
			}
		}
	}
	t.Logf("%d..%d: %d packets dropped before the switch and %d after, all repaired (%d RTX packets arrived)", first, end, before, after, drop.rtx)
	if before == 0 || after == 0 {
		t.Fatalf("no loss to repair: %d dropped before the switch, %d after", before, after)
	}
}
