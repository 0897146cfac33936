package bench

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// The generator's packets are VP8 as far as anything on the path looks
// (the recorder depacketizes them): 30 frames per second, a keyframe every
// 2 s, each frame cut into packets/30 packets. Their payload is:
//
//	[0]      VP8 payload descriptor: 0x10 on a frame's first packet (S=1, PID 0), else 0
//	[1:11]   on a frame's first packet: VP8 frame tag and, on a keyframe,
//	         start code 9d 01 2a and the picture size (640x360)
//	[16:24]  send time, ns on the load process's monotonic clock
//	[24:28]  stream index
//	[28:32]  packet index in the stream
//
// The rest is filler. Nothing rewrites payloads, so the receiver finds the
// send time where the generator put it.
const (
	offStamp       = 16
	offStream      = 24
	offIndex       = 28
	minPayload     = 32
	rtpHeaderSize  = 12
	payloadTypeGen = 96
	frameRate      = 30
	keyframeEvery  = 60 // frames
)

// genStream is one generated RTP stream.
type genStream struct {
	idx  uint32
	out  io.Writer
	ssrc uint32
	buf  []byte
	n    uint64 // packets sent, owned by the generator goroutine
	sent atomic.Uint64
	errs atomic.Uint64
}

// generator sends its streams' packets at pps each, paced by the clock:
// when it wakes late it catches up, so the rate holds under load.
type generator struct {
	streams []*genStream
	pps     int
	perFrm  uint64 // packets per frame
	epoch   time.Time
	stop    chan struct{}
	done    chan struct{}
}

func newGenerator(epoch time.Time, pps, size int, outs []io.Writer, firstIdx int) *generator {
	g := &generator{pps: pps, perFrm: uint64(max(1, pps/frameRate)), epoch: epoch,
		stop: make(chan struct{}), done: make(chan struct{})}
	for i, o := range outs {
		s := &genStream{idx: uint32(firstIdx + i), out: o, ssrc: 0x5eed0000 + uint32(firstIdx+i), buf: make([]byte, size)}
		for j := rtpHeaderSize + minPayload; j < size; j++ {
			s.buf[j] = byte(j)
		}
		g.streams = append(g.streams, s)
	}
	return g
}

// start runs the generator until halt.
func (g *generator) start() {
	go func() { // owner: g; ends on halt
		defer close(g.done)
		start := time.Now()
		t := time.NewTimer(0)
		defer t.Stop()
		pps := uint64(g.pps)
		for {
			due := uint64(time.Since(start).Nanoseconds()) * pps / 1e9
			for _, s := range g.streams {
				for s.n < due {
					g.send(s)
				}
			}
			next := time.Duration((due+1)*1e9/pps) - time.Since(start)
			t.Reset(max(next, 0))
			select {
			case <-g.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (g *generator) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

// send builds packet s.n of s in its buffer and writes it.
func (g *generator) send(s *genStream) {
	b := s.buf
	n := s.n
	frame := n / g.perFrm
	first := n%g.perFrm == 0
	last := n%g.perFrm == g.perFrm-1
	b[0] = 0x80
	b[1] = payloadTypeGen
	if last {
		b[1] |= 0x80
	}
	be.PutUint16(b[2:], uint16(n))
	be.PutUint32(b[4:], uint32(frame*90000/frameRate))
	be.PutUint32(b[8:], s.ssrc)
	p := b[rtpHeaderSize:]
	clear(p[:offStamp])
	if first {
		p[0] = 0x10
		const firstPartition = 100
		tag := uint32(firstPartition<<5 | 1<<4) // show_frame, version 0
		key := frame%keyframeEvery == 0
		if !key {
			tag |= 1 // inter frame
		}
		p[1], p[2], p[3] = byte(tag), byte(tag>>8), byte(tag>>16)
		if key {
			p[4], p[5], p[6] = 0x9d, 0x01, 0x2a
			// 14-bit width and height, little-endian (RFC 6386 9.1)
			p[7], p[8] = byte(640&0xff), byte(640>>8)
			p[9], p[10] = byte(360&0xff), byte(360>>8)
		}
	}
	be.PutUint64(p[offStamp:], uint64(time.Since(g.epoch)))
	be.PutUint32(p[offStream:], s.idx)
	be.PutUint32(p[offIndex:], uint32(n))
	if _, err := s.out.Write(b); err != nil {
		s.errs.Add(1)
	}
	s.n++
	s.sent.Add(1)
}

// udpOut writes a stream's packets to one UDP address.
type udpOut struct {
	conn *net.UDPConn
	to   netip.AddrPort
}

func (u udpOut) Write(b []byte) (int, error) { return u.conn.WriteToUDPAddrPort(b, u.to) }

// sink counts the packets of one receiver: a stream (relay) or a
// subscriber (fan-out).
type sink struct {
	recv atomic.Uint64
	dead atomic.Bool // it never connected: it counts as all lost
}

// receiver turns received RTP packets into counts and latencies. Its
// methods are safe for concurrent use.
type receiver struct {
	epoch time.Time
	hist  *histogram

	mu    sync.Mutex
	sinks []*sink
}

// addSinks appends n sinks and returns them.
func (r *receiver) addSinks(n int) []*sink {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*sink, n)
	for i := range out {
		out[i] = &sink{}
	}
	r.sinks = append(r.sinks, out...)
	return out
}

func (r *receiver) allSinks() []*sink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sink(nil), r.sinks...)
}

// packet handles one received RTP packet b: it records its latency and
// returns the stream index the generator wrote into it. h is the caller's
// reused header.
func (r *receiver) packet(b []byte, h *rtp.Header) (stream uint32, ok bool) {
	n, err := h.Unmarshal(b)
	if err != nil || len(b)-n < minPayload {
		return 0, false
	}
	p := b[n:]
	sent := int64(be.Uint64(p[offStamp:]))
	r.hist.add(int64(time.Since(r.epoch)) - sent)
	return be.Uint32(p[offStream:]), true
}

// readUDP counts what arrives on conn into s until conn is closed.
func (r *receiver) readUDP(conn *net.UDPConn, s *sink) {
	var h rtp.Header
	eachDatagram(conn, func(b []byte) {
		if _, ok := r.packet(b, &h); ok {
			s.recv.Add(1)
		}
	})
}
