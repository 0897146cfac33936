package peer

import (
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// connectPair connects a sending PeerConnection of api a (one VP8 track)
// to a receiving one of api b over loopback and returns the track and what
// b receives, in order.
func connectPair(t *testing.T, a, b *API) (*webrtc.TrackLocalStaticRTP, <-chan *rtp.Packet) {
	t.Helper()
	tx, err := a.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	rx, err := b.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = tx.Close()
		_ = rx.Close()
	})
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	snd, err := tx.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	go DrainKeyframeRequests(snd, nil) // ends with tx
	got := make(chan *rtp.Packet, 4096)
	rx.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			got <- p
		}
	})
	connected := make(chan struct{})
	tx.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	offer, err := tx.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(tx)
	if err := tx.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := rx.SetRemoteDescription(*tx.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := rx.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(rx)
	if err := rx.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := tx.SetRemoteDescription(*rx.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		t.Fatal("not connected within 20 s")
	}
	return track, got
}

func loopbackAPI(t *testing.T) *API {
	t.Helper()
	a, err := New(Options{ListenIP: "127.0.0.1", RemoteIPFilter: func(ip net.IP) bool { return ip.IsLoopback() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// Media written by a real PeerConnection between Cork and Flush goes
// through SRTP, the interceptors and the shared port's ring, and arrives
// whole and in order, in far fewer sendmmsg calls than packets.
func TestCorkFlushPeerConnection(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("writes are batched on Linux only")
	}
	a, b := loopbackAPI(t), loopbackAPI(t)
	track, got := connectPair(t, a, b)
	const bursts, per = 20, 25
	payload := make([]byte, 1000)
	seq := uint16(0)
	for range bursts {
		a.Cork()
		for range per {
			binary.BigEndian.PutUint16(payload, seq)
			if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000},
				Payload: payload}); err != nil {
				t.Fatal(err)
			}
			seq++
		}
		a.Flush()
		time.Sleep(2 * time.Millisecond) // a paced sender
	}
	timeout := time.After(20 * time.Second)
	for i := range bursts * per {
		select {
		case p := <-got:
			if p.SequenceNumber != uint16(i) || len(p.Payload) != len(payload) || binary.BigEndian.Uint16(p.Payload) != uint16(i) {
				t.Fatalf("packet %d: got sequence %d with %d bytes", i, p.SequenceNumber, len(p.Payload))
			}
		case <-timeout:
			t.Fatalf("received %d of %d packets", i, bursts*per)
		}
	}
	s := a.BatchStats()
	t.Logf("sender's port: %+v", s)
	if s.Datagrams < bursts*per || s.Batches > s.Datagrams/10 || s.Errors != 0 {
		t.Errorf("sender's port sent %+v, want at least %d datagrams in about one sendmmsg per burst", s, bursts*per)
	}
}

// On every interface (no ListenIP), each of the sockets pion opens, one
// per interface address, is batched.
func TestBatchEveryInterface(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("writes are batched on Linux only")
	}
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	if len(a.Addrs()) == 0 {
		t.Skip("no interface address besides loopback")
	}
	if len(a.batch) != len(a.Addrs()) {
		t.Fatalf("%d batched sockets for %d addresses %v", len(a.batch), len(a.Addrs()), a.Addrs())
	}
	a.Cork()
	a.Flush()
	for _, c := range a.batch {
		if c.corks.Load() != 0 {
			t.Fatal("Flush left a socket corked")
		}
	}
}
