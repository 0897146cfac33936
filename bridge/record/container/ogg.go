package container

import (
	"encoding/binary"
	"time"
)

// Ogg Opus (RFC 7845), written by hand: pion's oggwriter derives granule
// positions by counting samples (lost packets and DTX shorten the timeline)
// and writes one page per packet. Here a page holds consecutive packets of
// one stream and is written when it spans 500 ms, when 255 lacing values
// are used, or before a packet that does not follow on (a gap in the PTS):
// the page's granule position is its last packet's PTS plus its duration,
// so every page (and every packet, which demuxers count back from it) keeps
// the time the recorder gave.

const (
	oggMaxPageSpan = 500 * time.Millisecond
	oggFlagCont    = 0x01
	oggFlagBOS     = 0x02
	oggFlagEOS     = 0x04
	oggHeaderLen   = 27
	// oggJitter: a packet that starts within this many samples of the
	// previous one's end continues the page.
	oggJitter = 24
)

type oggStream struct {
	serial  uint32
	seq     uint32
	granule int64 // of the last page written

	lacing   []byte
	data     []byte
	packets  int
	pageFrom int64 // sample where the page in progress starts
	started  bool
	toc      byte  // of the last packet
	end      int64 // sample where the last packet ends

	lastPage    []byte // copy of the last page written (for EOS at Close)
	lastPagePos int64
	channels    uint16
}

type ogg struct {
	out     *output
	streams []oggStream
	page    []byte
	filler  [1]byte
}

func newOgg(out *output, ts []trackState) *ogg {
	g := &ogg{out: out}
	for i, t := range ts {
		g.streams = append(g.streams, oggStream{serial: 0x72746700 + uint32(i), channels: t.Codec.Channels})
	}
	return g
}

func (g *ogg) header(_ []trackConfig) error {
	// All beginning-of-stream pages first, then the comment headers.
	for i := range g.streams {
		s := &g.streams[i]
		head := opusHead(s.channels)
		s.lacing = appendLacing(s.lacing[:0], len(head))
		s.data = append(s.data[:0], head...)
		if err := g.writePage(s, oggFlagBOS, 0); err != nil {
			return err
		}
	}
	for i := range g.streams {
		s := &g.streams[i]
		tags := opusTags()
		s.lacing = appendLacing(s.lacing[:0], len(tags))
		s.data = append(s.data[:0], tags...)
		if err := g.writePage(s, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

func appendLacing(l []byte, n int) []byte {
	for ; n >= 255; n -= 255 {
		l = append(l, 255)
	}
	return append(l, byte(n))
}

func (g *ogg) frame(f *Frame) error {
	s := &g.streams[f.Track]
	start := samples48k(f.PTS)
	if s.started && start-s.end > oggJitter {
		if err := g.fillGap(s, start-s.end); err != nil {
			return err
		}
	}
	if !s.started {
		s.end = start
	}
	s.started = true
	s.toc = f.Data[0]
	return g.appendPacket(s, f.Data, int64(opusSamples(f.Data)))
}

// fillGap covers lost packets (or DTX silence) with 1-byte Opus packets:
// a TOC byte with one zero-length frame, which decoders treat as a lost
// frame (RFC 6716 3.2.1; RFC 7845 4.1 asks muxers to fill gaps this way).
// Demuxers time an Ogg page's packets by counting their durations from the
// previous page's granule position, so without them a gap would vanish
// and everything after it would play early. The fillers use CELT
// configurations (20, 10, 5, 2.5 ms) with the stereo flag of the last
// real packet; a rest under 2.5 ms is dropped.
func (g *ogg) fillGap(s *oggStream, gap int64) error {
	stereo := s.toc & 0x04
	for _, c := range [...]struct {
		cfg     byte
		samples int64
	}{{31, 960}, {30, 480}, {29, 240}, {28, 120}} {
		for gap >= c.samples {
			g.filler[0] = c.cfg<<3 | stereo
			if err := g.appendPacket(s, g.filler[:], c.samples); err != nil {
				return err
			}
			gap -= c.samples
		}
	}
	s.end += gap
	return nil
}

// appendPacket adds a packet to the stream's page in progress and writes
// the page when it spans 500 ms or its lacing table is full.
func (g *ogg) appendPacket(s *oggStream, data []byte, n int64) error {
	if s.packets > 0 && len(s.lacing)+len(data)/255+1 > 255 {
		if err := g.flushStream(s, 0); err != nil {
			return err
		}
	}
	if s.packets == 0 {
		s.pageFrom = s.end
	}
	s.lacing = appendLacing(s.lacing, len(data))
	s.data = append(s.data, data...)
	s.packets++
	s.end += n
	if s.end-s.pageFrom >= samples48k(oggMaxPageSpan) {
		return g.flushStream(s, 0)
	}
	return nil
}

// flushStream writes the page in progress of one stream.
func (g *ogg) flushStream(s *oggStream, flags byte) error {
	if s.packets == 0 {
		return nil
	}
	granule := max(s.end+opusPreSkip, s.granule)
	s.packets = 0
	return g.writePage(s, flags, granule)
}

func (g *ogg) writePage(s *oggStream, flags byte, granule int64) error {
	p := g.page[:0]
	p = append(p, 'O', 'g', 'g', 'S', 0, flags)
	p = binary.LittleEndian.AppendUint64(p, uint64(granule))
	p = binary.LittleEndian.AppendUint32(p, s.serial)
	p = binary.LittleEndian.AppendUint32(p, s.seq)
	p = append(p, 0, 0, 0, 0, byte(len(s.lacing)))
	p = append(p, s.lacing...)
	p = append(p, s.data...)
	binary.LittleEndian.PutUint32(p[22:], oggCRC(p))
	g.page = p
	s.lacing, s.data = s.lacing[:0], s.data[:0]
	s.lastPagePos = g.out.pos
	if err := g.out.write(p); err != nil {
		return err
	}
	s.lastPage = append(s.lastPage[:0], p...)
	s.seq++
	s.granule = granule
	return nil
}

func (g *ogg) flush() error {
	for i := range g.streams {
		if err := g.flushStream(&g.streams[i], 0); err != nil {
			return err
		}
	}
	return nil
}

// finish marks each stream's last page end-of-stream: the page in progress
// is written with the flag, or the last page written gets it afterwards.
func (g *ogg) finish() error {
	for i := range g.streams {
		s := &g.streams[i]
		if s.packets > 0 {
			if err := g.flushStream(s, oggFlagEOS); err != nil {
				return err
			}
			continue
		}
		if err := setOggEOS(g.out, s.lastPage, s.lastPagePos); err != nil {
			return err
		}
	}
	return nil
}

// setOggEOS rewrites a page already in the file with the EOS flag.
func setOggEOS(o *output, page []byte, pos int64) error {
	if len(page) < oggHeaderLen || page[5]&oggFlagEOS != 0 {
		return nil
	}
	page[5] |= oggFlagEOS
	binary.LittleEndian.PutUint32(page[22:], 0)
	binary.LittleEndian.PutUint32(page[22:], oggCRC(page))
	return o.writeAt(page[:oggHeaderLen], pos)
}

var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for j := 0; j < 8; j++ {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

// oggCRC is the page checksum (polynomial 0x04c11db7, no reflection), with
// the CRC field taken as zero.
func oggCRC(p []byte) uint32 {
	var c uint32
	for i, b := range p {
		if i >= 22 && i < 26 {
			b = 0
		}
		c = c<<8 ^ oggCRCTable[byte(c>>24)^b]
	}
	return c
}
