// Package rtpudp is RTP over UDP at the edge of rtgate: in, from encoders
// (ffmpeg, GStreamer, hardware) as a bridge.Source, and out, to players and
// recorders, as a bridge.Sink (Sender, with the SDP file that describes it).
//
// A Source is described by a URL (rtp://HOST:PORT?codec=...) or by an SDP
// file (sdp:///path.sdp); see ParseURL. It binds one socket per local port,
// demultiplexes tracks by port and, on a shared port, by payload type,
// validates every packet, reads RTCP sender reports and sends PLI/FIR
// keyframe requests back to the sender. It knows nothing of WebRTC or the
// SFU.
package rtpudp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/rtgate/rtgate/bridge"
)

const (
	// readBuffer is the socket receive buffer asked for (SO_RCVBUF); the
	// kernel caps it at net.core.rmem_max.
	readBuffer = 4 << 20
	// maxDatagram is the read buffer size per datagram (jumbo frames);
	// larger datagrams are counted as ReasonTruncated.
	maxDatagram = 9216
	// ephemeralTries bounds the search for a free port pair (RTP, RTP+1)
	// when a track asks for port 0.
	ephemeralTries = 32
)

var _ bridge.Source = (*Source)(nil)

// Source receives the RTP streams of a Spec. Its methods are safe for
// concurrent use; Run runs at most once at a time.
type Source struct {
	name    string
	bridged []bridge.Track
	tracks  []track
	ports   []*port
	ssrc    uint32 // our own SSRC for the RTCP we send
	cname   string

	running atomic.Bool
	closed  atomic.Bool
	lastBad atomic.Uint32 // Reason
}

// track is the state of one track.
type track struct {
	spec     TrackSpec
	rtpPort  *port
	rtcpPort *port
	ctr      trackCounters

	// Owned by the goroutine reading rtpPort (one at a time).
	seen     bool
	lastSSRC uint32
	lastFrom netip.AddrPort

	mu     sync.Mutex
	sender sender // guarded by mu
}

// sender is what is known of the encoder sending a track.
type sender struct {
	ssrc     uint32
	haveSSRC bool
	rtpFrom  netip.AddrPort // source address of its RTP
	rtcpFrom netip.AddrPort // source address of its RTCP
	sr       srInfo         // its last sender report; sr.ok once one arrived
	firSeq   uint8
}

// port is one bound UDP socket, carrying RTP of some tracks, RTCP of some
// tracks, or both (rtcp-mux).
type port struct {
	conn       *net.UDPConn
	local      netip.AddrPort
	byPT       [128]int16 // track index + 1 by payload type; 0: none
	rtpTracks  int
	rtcpTracks []int
	ctr        portCounters

	pendingMu   sync.Mutex
	pending     [maxPending]srInfo // guarded by pendingMu
	pendingNext int                // guarded by pendingMu

	// Reader state, used by the one goroutine reading this port.
	batch *mmsgReader // recvmmsg into bufs; nil: single reads into bufs[0]
	bufs  [][]byte
	pkt   rtp.Packet
	// growTo is the batch the reader takes on at its first datagram (0:
	// none): until a port carries media it holds one buffer, not a
	// batch's slab (DefaultBatch x 9216 bytes, 288 KiB), which was most
	// of the memory of an idle published track.
	growTo int
}

// Open parses raw (see ParseURL) and opens the source: its sockets are
// bound when Open returns, so a port conflict is reported here.
func Open(raw string) (*Source, error) {
	sp, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return OpenSpec(sp)
}

// OpenSpec opens a source from a parsed Spec.
func OpenSpec(sp *Spec) (_ *Source, err error) {
	name := sp.URL
	if name == "" {
		name = "rtpudp"
	}
	if len(sp.Tracks) == 0 {
		return nil, fmt.Errorf("%s: no tracks", name)
	}
	s := &Source{
		name:   name,
		tracks: make([]track, len(sp.Tracks)),
		ssrc:   rand.Uint32() | 1,
	}
	s.cname = fmt.Sprintf("rtgate-%08x", s.ssrc)
	defer func() {
		if err != nil {
			_ = s.closePorts()
		}
	}()

	var ifi *net.Interface
	if sp.Iface != "" {
		if ifi, err = net.InterfaceByName(sp.Iface); err != nil {
			return nil, fmt.Errorf("%s: iface %s: %w", name, sp.Iface, err)
		}
	}
	byAddr := map[netip.AddrPort]*port{}
	get := func(local netip.AddrPort, group netip.Addr) (*port, error) {
		if p := byAddr[local]; p != nil {
			return p, nil
		}
		p, err := listen(local, group, ifi)
		if err != nil {
			return nil, err
		}
		s.ports = append(s.ports, p)
		byAddr[local] = p
		return p, nil
	}

	for i := range sp.Tracks {
		ts := sp.Tracks[i]
		t := &s.tracks[i]
		t.spec = ts
		s.bridged = append(s.bridged, ts.Track)
		if err := checkTrack(&ts); err != nil {
			return nil, fmt.Errorf("%s: track %d: %w", name, i, err)
		}
		if ts.Local.Port() == 0 {
			t.rtpPort, t.rtcpPort, err = s.listenEphemeral(ts, ifi)
		} else {
			t.rtpPort, err = get(ts.Local, ts.Group)
			if err == nil {
				t.rtcpPort = t.rtpPort
				if !ts.RTCPMux {
					t.rtcpPort, err = get(netip.AddrPortFrom(ts.Local.Addr(), ts.rtcpPort()), ts.Group)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: track %d (%s): %w", name, i, ts.Codec.MimeType, err)
		}
		pt := ts.Codec.PayloadType & 0x7f
		if t.rtpPort.byPT[pt] != 0 {
			return nil, fmt.Errorf("%s: track %d: payload type %d on %s already used by track %d",
				name, i, pt, t.rtpPort.local, t.rtpPort.byPT[pt]-1)
		}
		t.rtpPort.byPT[pt] = int16(i + 1)
		t.rtpPort.rtpTracks++
		t.rtcpPort.rtcpTracks = append(t.rtcpPort.rtcpTracks, i)
	}

	batch := sp.Batch
	if batch == 0 {
		batch = DefaultBatch
	}
	for _, p := range s.ports {
		p.setupReader(batch)
	}
	return s, nil
}

// listenEphemeral binds a free port for the RTP of ts and, unless ts uses
// rtcp-mux or names its RTCP port, the port after it for RTCP.
func (s *Source) listenEphemeral(ts TrackSpec, ifi *net.Interface) (rtpP, rtcpP *port, err error) {
	addr := ts.Local.Addr()
	for range ephemeralTries {
		rp, err := listen(netip.AddrPortFrom(addr, 0), ts.Group, ifi)
		if err != nil {
			return nil, nil, err
		}
		if ts.RTCPMux {
			s.ports = append(s.ports, rp)
			return rp, rp, nil
		}
		want := ts.RTCPPort
		if want == 0 {
			if rp.local.Port() == 65535 {
				_ = rp.conn.Close()
				continue
			}
			want = rp.local.Port() + 1
		} else if rp.local.Port() == want {
			_ = rp.conn.Close() // the free port picked is the RTCP port asked for
			continue
		}
		cp, err := listen(netip.AddrPortFrom(addr, want), ts.Group, ifi)
		if err != nil {
			_ = rp.conn.Close()
			if ts.RTCPPort == 0 && isAddrInUse(err) {
				continue
			}
			return nil, nil, err
		}
		s.ports = append(s.ports, rp, cp)
		return rp, cp, nil
	}
	return nil, nil, fmt.Errorf("no free port pair on %s after %d tries", addr, ephemeralTries)
}

// listen binds one UDP socket and joins group if it is valid.
func listen(local netip.AddrPort, group netip.Addr, ifi *net.Interface) (*port, error) {
	network := "udp4"
	if local.Addr().Is6() {
		network = "udp6"
		if local.Addr().IsUnspecified() {
			network = "udp" // [::] receives IPv4 too
		}
	}
	var lc net.ListenConfig
	if group.IsValid() {
		lc.Control = reuseAddr // let several receivers share a group
	}
	pc, err := lc.ListenPacket(context.Background(), network, local.String())
	if err != nil {
		return nil, err
	}
	conn := pc.(*net.UDPConn)
	_ = conn.SetReadBuffer(readBuffer) // best effort: capped by rmem_max
	if group.IsValid() {
		ga := &net.UDPAddr{IP: group.AsSlice()}
		if group.Is4() {
			err = ipv4.NewPacketConn(conn).JoinGroup(ifi, ga)
		} else {
			err = ipv6.NewPacketConn(conn).JoinGroup(ifi, ga)
		}
		if err != nil {
			_ = conn.Close()
			where := "default interface"
			if ifi != nil {
				where = ifi.Name
			}
			return nil, fmt.Errorf("join multicast group %s on %s: %w", group, where, err)
		}
	}
	p := &port{conn: conn, local: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
	return p, nil
}

// setupReader allocates the reused read state: a single buffer. A port
// with RTP moves to a batch of buffers read with recvmmsg (Linux) at its
// first datagram (growReader); RTCP-only ports (about one packet per
// second), batch 1, or a system without recvmmsg keep single reads.
func (p *port) setupReader(batch int) {
	p.bufs = [][]byte{make([]byte, maxDatagram)}
	if p.rtpTracks > 0 && batch > 1 {
		p.growTo = batch
	}
	// Room for the most CSRCs and a typical number of extensions, so that
	// Unmarshal does not grow them on the hot path.
	p.pkt.CSRC = make([]uint32, 0, 15)
	p.pkt.Extensions = make([]rtp.Extension, 0, 16)
}

// growReader allocates the batch setupReader deferred: once per port,
// after its first datagram was handled.
func (p *port) growReader() {
	n := p.growTo
	p.growTo = 0
	slab := make([]byte, n*maxDatagram)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = slab[i*maxDatagram : (i+1)*maxDatagram : (i+1)*maxDatagram]
	}
	if r := newBatchReader(p.conn, bufs); r != nil {
		p.batch, p.bufs = r, bufs
	}
}

// String returns the URL the source was opened from.
func (s *Source) String() string { return s.name }

// Tracks describes the tracks, in the order of the URL or SDP.
func (s *Source) Tracks() []bridge.Track {
	return append([]bridge.Track(nil), s.bridged...)
}

// LocalAddr returns the local addresses a track's RTP and RTCP arrive on
// (equal with rtcp-mux), with the ports actually bound.
func (s *Source) LocalAddr(track int) (rtpAddr, rtcpAddr netip.AddrPort) {
	if track < 0 || track >= len(s.tracks) {
		return netip.AddrPort{}, netip.AddrPort{}
	}
	t := &s.tracks[track]
	return t.rtpPort.local, t.rtcpPort.local
}

// Close closes the sockets; a running Run returns. It is idempotent.
func (s *Source) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := s.closePorts(); err != nil {
		return fmt.Errorf("%s: close: %w", s.name, err)
	}
	return nil
}

func (s *Source) closePorts() error {
	var errs []error
	for _, p := range s.ports {
		if err := p.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("%s: %w", p.local, err))
		}
	}
	return errors.Join(errs...)
}
