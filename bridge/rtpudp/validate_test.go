package rtpudp

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
)

// mustMarshal builds a packet with pion, so good cases are pion's idea of
// good RTP.
func mustMarshal(t testing.TB, p *rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func basePacket() *rtp.Packet {
	return &rtp.Packet{
		Header: rtp.Header{
			Version: 2, Marker: true, PayloadType: 96, SequenceNumber: 4711,
			Timestamp: 123456, SSRC: 0x11223344,
		},
		Payload: []byte{0x90, 0xe0, 0x80, 0x01, 0x02},
	}
}

// raw assembles a datagram from a first byte, the rest of a fixed header
// and what follows it.
func raw(b0 byte, rest ...[]byte) []byte {
	b := []byte{b0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}
	for _, r := range rest {
		b = append(b, r...)
	}
	return b
}

func TestValidate(t *testing.T) {
	withCSRC := basePacket()
	withCSRC.CSRC = []uint32{1, 2, 3}
	oneByte := basePacket()
	if err := oneByte.SetExtension(3, []byte{0xaa, 0xbb}); err != nil {
		t.Fatal(err)
	}
	twoByte := basePacket()
	twoByte.Extension = true
	twoByte.ExtensionProfile = rtp.ExtensionProfileTwoByte
	if err := twoByte.SetExtension(200, bytes.Repeat([]byte{7}, 20)); err != nil {
		t.Fatal(err)
	}
	padded := basePacket()
	padded.Padding = true
	padded.PaddingSize = 4

	cases := []struct {
		name string
		buf  []byte
		want Reason
	}{
		{"good minimal", raw(0x80, []byte{1}), Valid},
		{"good marker payload", mustMarshal(t, basePacket()), Valid},
		{"good csrc", mustMarshal(t, withCSRC), Valid},
		{"good one-byte extension", mustMarshal(t, oneByte), Valid},
		{"good two-byte extension", mustMarshal(t, twoByte), Valid},
		{"good rfc3550 extension", raw(0x90, []byte{0x12, 0x34, 0, 1, 9, 9, 9, 9}, []byte{1}), Valid},
		{"good empty extension block", raw(0x90, []byte{0xbe, 0xde, 0, 0}, []byte{1}), Valid},
		{"good padding", mustMarshal(t, padded), Valid},

		{"empty datagram", nil, ReasonShort},
		{"11 bytes", raw(0x80)[:11], ReasonShort},
		{"version 0", raw(0x00, []byte{1}), ReasonVersion},
		{"version 1", raw(0x40, []byte{1}), ReasonVersion},
		{"version 3", raw(0xc0, []byte{1}), ReasonVersion},
		{"csrc count 15, room for 2", raw(0x8f, make([]byte, 8)), ReasonCSRC},
		{"csrc count 1, no room", raw(0x81), ReasonCSRC},
		{"extension header missing", raw(0x90, []byte{0xbe, 0xde}), ReasonExtension},
		{"extension length past end", raw(0x90, []byte{0xbe, 0xde, 0, 3, 0x10, 1, 0, 0}, []byte{1}), ReasonExtension},
		{"extension length 0xffff", raw(0x90, []byte{0xbe, 0xde, 0xff, 0xff}, make([]byte, 64)), ReasonExtension},
		{"one-byte element past block", raw(0x90, []byte{0xbe, 0xde, 0, 1, 0x1f, 1, 2, 3}, []byte{1}), ReasonExtension},
		{"two-byte element past block", raw(0x90, []byte{0x10, 0x00, 0, 1, 5, 9, 1, 2}, []byte{1}), ReasonExtension},
		{"two-byte id at block end", raw(0x90, []byte{0x10, 0x00, 0, 1, 0, 0, 0, 5}, []byte{1}), ReasonExtension},
		{"padding length 0", raw(0xa0, []byte{1, 2, 0}), ReasonPadding},
		{"padding longer than payload", raw(0xa0, []byte{1, 2, 9}), ReasonPadding},
		{"padding flag, header only", raw(0xa0), ReasonPadding},
		{"padding only", raw(0xa0, []byte{0, 0, 3}), ReasonEmpty},
		{"header only", raw(0x80), ReasonEmpty},
		{"csrc and extension, no payload", raw(0x91, []byte{0, 0, 0, 9}, []byte{0xbe, 0xde, 0, 0}), ReasonEmpty},
	}
	var pkt rtp.Packet
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Validate(c.buf, &pkt)
			if got != c.want {
				t.Fatalf("Validate(% x) = %v, want %v", c.buf, got, c.want)
			}
			if got != Valid {
				return
			}
			if pkt.Version != 2 || len(pkt.Payload) == 0 {
				t.Fatalf("valid packet parsed as %+v", pkt.Header)
			}
			if pt := c.buf[1] & 0x7f; pkt.PayloadType != pt {
				t.Fatalf("payload type %d, want %d", pkt.PayloadType, pt)
			}
		})
	}
}

func TestValidateKeepsFields(t *testing.T) {
	p := basePacket()
	p.CSRC = []uint32{9}
	b := mustMarshal(t, p)
	var got rtp.Packet
	if r := Validate(b, &got); r != Valid {
		t.Fatal(r)
	}
	if got.SSRC != p.SSRC || got.SequenceNumber != p.SequenceNumber || got.Timestamp != p.Timestamp ||
		!got.Marker || !bytes.Equal(got.Payload, p.Payload) || len(got.CSRC) != 1 {
		t.Fatalf("got %+v", got)
	}
}

func TestValidateNoAlloc(t *testing.T) {
	b := mustMarshal(t, basePacket())
	var pkt rtp.Packet
	pkt.CSRC = make([]uint32, 0, 15)
	pkt.Extensions = make([]rtp.Extension, 0, 16)
	if n := testing.AllocsPerRun(1000, func() { Validate(b, &pkt) }); n != 0 {
		t.Fatalf("Validate allocates %.1f times per packet", n)
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := Valid; r < numReasons; r++ {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Fatalf("reason %d has name %q", r, s)
		}
		seen[s] = true
	}
	if Reason(200).String() != "unknown" {
		t.Fatal("out-of-range reason")
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(mustMarshal(f, basePacket()))
	f.Add(raw(0x80, []byte{1}))
	f.Add(raw(0x90, []byte{0xbe, 0xde, 0, 2, 0x10, 0xaa, 0, 0, 0x21, 1, 2, 0}, []byte{1, 2}))
	f.Add(raw(0x90, []byte{0x10, 0x00, 0, 1, 5, 1, 9, 0}, []byte{1}))
	f.Add(raw(0x90, []byte{0x12, 0x34, 0, 1, 9, 9, 9, 9}, []byte{1}))
	f.Add(raw(0xa3, make([]byte, 12), []byte{1, 0, 2}))
	f.Add(raw(0x8f, make([]byte, 60), []byte{5}))
	f.Add([]byte{0x80, 0xc8, 0, 6}) // an RTCP SR header
	f.Add([]byte{})

	var pkt rtp.Packet
	f.Fuzz(func(t *testing.T, b []byte) {
		if Validate(b, &pkt) != Valid {
			return
		}
		if len(pkt.Payload) == 0 || pkt.Version != 2 {
			t.Fatalf("valid but version %d, payload %d", pkt.Version, len(pkt.Payload))
		}
		m, err := pkt.Marshal()
		if err != nil {
			t.Fatalf("valid packet does not marshal: %v", err)
		}
		if len(m) != pkt.MarshalSize() {
			t.Fatalf("marshal wrote %d bytes, MarshalSize says %d", len(m), pkt.MarshalSize())
		}
		// The fixed header, CSRCs, payload and padding keep their size;
		// only an extension block may shrink (pion drops RFC 8285 padding
		// bytes and what follows ID 15 when it re-encodes).
		hdrIn := len(b) - len(pkt.Payload) - int(pkt.PaddingSize)
		hdrOut := pkt.Header.MarshalSize()
		if len(m)-hdrOut != len(b)-hdrIn {
			t.Fatalf("payload+padding: %d bytes in, %d out", len(b)-hdrIn, len(m)-hdrOut)
		}
		if hdrOut > hdrIn || (!pkt.Extension && hdrOut != hdrIn) {
			t.Fatalf("header: %d bytes in, %d out", hdrIn, hdrOut)
		}
		if fixed := fixedHeader + 4*len(pkt.CSRC); hdrIn < fixed || !bytes.Equal(m[:fixed], b[:fixed]) {
			t.Fatalf("fixed header differs: % x vs % x", m[:fixed], b[:fixed])
		}
		var again rtp.Packet
		if r := Validate(m, &again); r != Valid {
			t.Fatalf("re-marshalled packet invalid: %v", r)
		}
		if !bytes.Equal(again.Payload, pkt.Payload) || again.PaddingSize != pkt.PaddingSize ||
			again.SSRC != pkt.SSRC || again.SequenceNumber != pkt.SequenceNumber ||
			binary.BigEndian.Uint32(m[4:]) != pkt.Timestamp {
			t.Fatalf("round trip changed the packet")
		}
	})
}
