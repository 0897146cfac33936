package file

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Ogg (RFC 3533) carrying Opus (RFC 7845).
//
// The pages are parsed here rather than with pion's oggreader, which hands
// out whole page payloads and so assumes one Opus packet per page. That
// holds only for files written with -page_duration 20000 (or by pion's own
// oggwriter); real encoders put about a second, ~50 packets, in a page.
// What a page really holds is described by its segment table: a packet is
// a run of lacing values of 255 ended by one below 255, a page may hold
// any number of packets, and a packet whose last lacing value on the page
// is 255 continues on the next page. This reader follows the lacing, joins
// packets across pages, checks every page's CRC, skips the OpusHead and
// OpusTags header packets and times each packet from its TOC byte.
const (
	oggPageHeaderSize = 27
	oggMaxPage        = oggPageHeaderSize + 255 + 255*255
	oggFlagContinued  = 0x01
	oggFlagBOS        = 0x02
	oggFlagEOS        = 0x04
	opusClockRate     = 48000
	opusMaxPacket     = 64 << 10 // 120 ms of 1275-byte frames is under 62 KiB
	opusHeaderKeep    = 64       // bytes kept of a header packet: enough to check its magic
)

var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
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

// oggCRC is Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial
// value 0, no final XOR (hash/crc32 only does the reflected kind).
func oggCRC(crc uint32, b []byte) uint32 {
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

// opusHead is what the identification header tells.
type opusHead struct {
	channels int
	preSkip  int // samples at 48 kHz that the decoder drops at the start
}

type oggPage struct {
	off     int64
	flags   byte
	granule int64
	serial  uint32
	seq     uint32
	segs    []byte // lacing values
	body    []byte
}

type oggReader struct {
	r    io.ReadSeeker
	br   *bufio.Reader
	size int64
	off  int64 // offset of the next page

	buf  []byte // page buffer, reused
	page oggPage
	seg  int // next lacing value of page
	pos  int // next byte of page.body

	serial uint32
	head   opusHead

	haveSeq  bool
	lastSeq  uint32
	eos      bool   // our stream's last page has been read
	open     bool   // a packet is being gathered on the current page, from pktStart
	pktStart int    // start in page.body of the packet being gathered
	inPkt    bool   // a packet began on an earlier page; its bytes so far are in pkt
	pkt      []byte // reassembly of packets that span pages, reused
	pktOff   int64  // offset of the page the current packet began on
	packetNo int    // packets completed in our stream: 0 OpusHead, 1 OpusTags, then audio

	samples int64 // running sample count: the next packet's RTP timestamp offset
}

// newOggReader finds the Opus stream among the beginning-of-stream pages
// and reads its OpusHead.
func newOggReader(r io.ReadSeeker, size int64) (*oggReader, error) {
	d := &oggReader{r: r, br: bufio.NewReaderSize(r, 64<<10), size: size, buf: make([]byte, oggMaxPage)}
	found := false
	for i := 0; ; i++ {
		err := d.readPage()
		if err == io.EOF {
			if i == 0 {
				return nil, truncated(0, "Ogg page", "empty file")
			}
			break
		}
		if err != nil {
			return nil, err
		}
		p := &d.page
		if p.flags&oggFlagBOS == 0 {
			if i == 0 {
				return nil, malformed(0, "Ogg page", "first page is not a beginning-of-stream page")
			}
			break // the BOS pages of all streams come first
		}
		if found {
			continue
		}
		// A BOS page holds exactly the stream's identification header.
		if len(p.segs) == 0 || p.segs[len(p.segs)-1] == 255 {
			return nil, malformed(p.off, "Ogg beginning-of-stream page", "does not hold exactly one complete packet")
		}
		n := 0
		for _, l := range p.segs {
			n += int(l)
			if l < 255 {
				break
			}
		}
		id := p.body[:n]
		if len(id) < 8 || string(id[:8]) != "OpusHead" {
			continue // another codec's stream (Theora, Vorbis, ...)
		}
		h, err := parseOpusHead(id)
		if err != nil {
			return nil, &FormatError{Offset: p.off, What: "OpusHead", Err: err}
		}
		d.head, d.serial, found = h, p.serial, true
	}
	if !found {
		return nil, unsupported(0, "Ogg stream", "no Opus stream (no OpusHead in the beginning-of-stream pages)")
	}
	if err := d.rewind(); err != nil {
		return nil, err
	}
	return d, nil
}

func parseOpusHead(b []byte) (opusHead, error) {
	if len(b) < 19 {
		return opusHead{}, fmt.Errorf("%w: %d bytes, want at least 19", ErrTruncated, len(b))
	}
	if v := b[8]; v>>4 != 0 {
		return opusHead{}, fmt.Errorf("%w: version %d", ErrUnsupported, v)
	}
	h := opusHead{channels: int(b[9]), preSkip: int(binary.LittleEndian.Uint16(b[10:12]))}
	if h.channels == 0 {
		return opusHead{}, fmt.Errorf("%w: 0 channels", ErrMalformed)
	}
	if family := b[18]; family != 0 {
		if len(b) < 21+h.channels {
			return opusHead{}, fmt.Errorf("%w: channel mapping table: %d bytes, want %d", ErrTruncated, len(b), 21+h.channels)
		}
		if streams := b[19]; streams != 1 {
			return opusHead{}, fmt.Errorf("%w: %d Opus streams (mapping family %d): RTP carries one", ErrUnsupported, streams, family)
		}
	}
	if h.channels > 2 {
		return opusHead{}, fmt.Errorf("%w: %d channels: RTP Opus carries mono or stereo", ErrUnsupported, h.channels)
	}
	return h, nil
}

func (d *oggReader) rewind() error {
	if _, err := d.r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("seek to first Ogg page: %w", err)
	}
	d.br.Reset(d.r)
	d.off = 0
	d.page = oggPage{}
	d.seg, d.pos = 0, 0
	d.haveSeq, d.eos, d.open, d.inPkt = false, false, false, false
	d.pkt = d.pkt[:0]
	d.packetNo = 0
	d.samples = 0
	return nil
}

// readPage reads the page at d.off into d.page and checks its CRC. It
// returns io.EOF only at the very end of the file.
func (d *oggReader) readPage() error {
	const what = "Ogg page"
	off := d.off
	left := d.size - off
	if left == 0 {
		return io.EOF
	}
	if left < oggPageHeaderSize {
		return truncated(off, what+" header", "want %d bytes, file has %d left", oggPageHeaderSize, left)
	}
	h := d.buf[:oggPageHeaderSize]
	if _, err := io.ReadFull(d.br, h); err != nil {
		return readError(off, what+" header", err)
	}
	if string(h[0:4]) != "OggS" {
		return malformed(off, what+" header", "capture pattern %q, want \"OggS\"", h[0:4])
	}
	if h[4] != 0 {
		return unsupported(off, what+" header", "stream structure version %d, want 0", h[4])
	}
	nseg := int(h[26])
	if left < int64(oggPageHeaderSize+nseg) {
		return truncated(off, what+" segment table", "want %d bytes, file has %d left", nseg, left-oggPageHeaderSize)
	}
	segs := d.buf[oggPageHeaderSize : oggPageHeaderSize+nseg]
	if _, err := io.ReadFull(d.br, segs); err != nil {
		return readError(off, what+" segment table", err)
	}
	n := 0
	for _, l := range segs {
		n += int(l)
	}
	total := oggPageHeaderSize + nseg + n
	if left < int64(total) {
		return truncated(off, what, "segment table says %d bytes, file has %d left", total, left)
	}
	body := d.buf[oggPageHeaderSize+nseg : total]
	if _, err := io.ReadFull(d.br, body); err != nil {
		return readError(off, what, err)
	}
	want := binary.LittleEndian.Uint32(h[22:26])
	var zero [4]byte
	crc := oggCRC(0, h[:22])
	crc = oggCRC(crc, zero[:])
	crc = oggCRC(crc, d.buf[26:total])
	if crc != want {
		return malformed(off, what, "CRC %08x, computed %08x", want, crc)
	}
	d.page = oggPage{
		off:     off,
		flags:   h[5],
		granule: int64(binary.LittleEndian.Uint64(h[6:14])),
		serial:  binary.LittleEndian.Uint32(h[14:18]),
		seq:     binary.LittleEndian.Uint32(h[18:22]),
		segs:    segs,
		body:    body,
	}
	d.off = off + int64(total)
	return nil
}

// nextPage advances to the next page of our stream.
func (d *oggReader) nextPage() error {
	for {
		if err := d.readPage(); err == io.EOF {
			if d.inPkt {
				return truncated(d.off, "Ogg stream", "file ends inside the packet begun on the page at offset %d", d.pktOff)
			}
			return truncated(d.off, "Ogg stream", "file ends without an end-of-stream page")
		} else if err != nil {
			return err
		}
		p := &d.page
		if p.serial != d.serial {
			continue // another stream's page
		}
		if d.haveSeq && p.seq != d.lastSeq+1 {
			return malformed(p.off, "Ogg page", "sequence number %d after %d: pages missing", p.seq, d.lastSeq)
		}
		d.haveSeq, d.lastSeq = true, p.seq
		continued := p.flags&oggFlagContinued != 0
		if d.inPkt && !continued {
			return malformed(p.off, "Ogg page", "not flagged as continuing the packet begun on the page at offset %d", d.pktOff)
		}
		if !d.inPkt && continued {
			return malformed(p.off, "Ogg page", "flagged as continuing a packet, but none is unfinished")
		}
		if p.flags&oggFlagEOS != 0 {
			d.eos = true
		}
		d.seg, d.pos = 0, 0
		return nil
	}
}

// appendPkt adds b to the packet being reassembled. Header packets are only
// kept as far as their magic (OpusTags may hold megabytes of cover art).
func (d *oggReader) appendPkt(b []byte) error {
	if d.packetNo < 2 {
		if room := opusHeaderKeep - len(d.pkt); room > 0 {
			d.pkt = append(d.pkt, b[:min(room, len(b))]...)
		}
		return nil
	}
	if len(d.pkt)+len(b) > opusMaxPacket {
		return unsupported(d.pktOff, "Opus packet", "larger than %d bytes", opusMaxPacket)
	}
	d.pkt = append(d.pkt, b...)
	return nil
}

func (d *oggReader) next() (frame, error) {
	for {
		p := &d.page
		for d.seg < len(p.segs) {
			if !d.open {
				d.open, d.pktStart = true, d.pos
				if !d.inPkt {
					d.pktOff = p.off
				}
			}
			l := int(p.segs[d.seg])
			d.seg++
			d.pos += l
			if l == 255 {
				continue
			}
			// The packet ends here.
			d.open = false
			pkt := p.body[d.pktStart:d.pos]
			if d.inPkt {
				if err := d.appendPkt(pkt); err != nil {
					return frame{}, err
				}
				pkt, d.inPkt = d.pkt, false
			}
			f, ok, err := d.packet(pkt)
			d.pkt = d.pkt[:0]
			if err != nil || ok {
				return f, err
			}
		}
		if d.open { // the page's last packet goes on
			if err := d.appendPkt(p.body[d.pktStart:d.pos]); err != nil {
				return frame{}, err
			}
			d.open, d.inPkt = false, true
		}
		if d.eos {
			if d.inPkt {
				return frame{}, malformed(d.pktOff, "Ogg stream", "ends inside a packet")
			}
			return frame{}, io.EOF
		}
		if err := d.nextPage(); err != nil {
			return frame{}, err
		}
	}
}

// packet handles one complete packet of our stream: it checks the two
// header packets and returns audio packets as frames.
func (d *oggReader) packet(pkt []byte) (frame, bool, error) {
	no := d.packetNo
	d.packetNo++
	switch no {
	case 0:
		if len(pkt) < 8 || string(pkt[:8]) != "OpusHead" {
			return frame{}, false, malformed(d.pktOff, "OpusHead", "first packet is not an Opus identification header")
		}
		return frame{}, false, nil
	case 1:
		if len(pkt) < 8 || string(pkt[:8]) != "OpusTags" {
			return frame{}, false, malformed(d.pktOff, "OpusTags", "second packet is not an Opus comment header")
		}
		return frame{}, false, nil
	}
	n, err := opusPacketSamples(pkt)
	if err != nil {
		return frame{}, false, &FormatError{Offset: d.pktOff, What: fmt.Sprintf("Opus packet %d", no-2), Err: err}
	}
	f := frame{data: pkt, ts: d.samples, dur: int64(n), off: d.pktOff}
	d.samples += int64(n)
	return f, true, nil
}

func (d *oggReader) end() int64 { return d.samples }

// opusPacketSamples returns the duration of an Opus packet in 48 kHz
// samples from its TOC byte (RFC 6716 §3.1): the configuration number
// gives the frame size, the frame count code how many frames there are.
func opusPacketSamples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, fmt.Errorf("%w: empty packet (an Opus packet has at least its TOC byte)", ErrMalformed)
	}
	toc := p[0]
	cfg := toc >> 3
	var frameSize int // in 48 kHz samples
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frameSize = [4]int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // hybrid: 10, 20 ms
		frameSize = [2]int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frameSize = [4]int{120, 240, 480, 960}[cfg&3]
	}
	var frames int
	switch toc & 3 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 0, fmt.Errorf("%w: code 3 packet without its frame count byte", ErrMalformed)
		}
		frames = int(p[1] & 0x3f)
		if frames == 0 {
			return 0, fmt.Errorf("%w: code 3 packet with 0 frames", ErrMalformed)
		}
	}
	if n := frames * frameSize; n <= 5760 { // RFC 6716 R5: at most 120 ms
		return n, nil
	}
	return 0, fmt.Errorf("%w: %d frames of %d samples exceed 120 ms", ErrMalformed, frames, frameSize)
}
