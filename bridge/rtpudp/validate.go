package rtpudp

import (
	"encoding/binary"

	"github.com/pion/rtp"
)

// Reason says why a datagram was rejected as an RTP packet.
type Reason uint8

// Reasons a datagram is not used. Validate returns all but
// ReasonTruncated, which the socket reports.
const (
	Valid           Reason = iota
	ReasonShort            // shorter than the 12-byte fixed header
	ReasonVersion          // RTP version is not 2
	ReasonCSRC             // the CSRC list runs past the end
	ReasonExtension        // header extension length or elements run past the end
	ReasonPadding          // padding flag set, but padding length 0 or longer than the payload
	ReasonEmpty            // no payload (after removing padding)
	ReasonTruncated        // the datagram was larger than the read buffer
	numReasons
)

var reasonNames = [numReasons]string{
	Valid:           "valid",
	ReasonShort:     "short",
	ReasonVersion:   "version",
	ReasonCSRC:      "csrc",
	ReasonExtension: "extension",
	ReasonPadding:   "padding",
	ReasonEmpty:     "empty",
	ReasonTruncated: "truncated",
}

// String returns a short name, usable as a metric label.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

const fixedHeader = 12

// Validate checks that buf is a well-formed RTP packet and unmarshals it
// into pkt, whose slices (CSRC, extensions, payload) it reuses and which
// then refers to buf. It returns Valid or the first problem found. It
// checks what pion's Unmarshal does not (version, empty payload) before
// letting it parse, and never panics.
func Validate(buf []byte, pkt *rtp.Packet) Reason {
	if len(buf) < fixedHeader {
		return ReasonShort
	}
	if buf[0]>>6 != 2 {
		return ReasonVersion
	}
	n := fixedHeader + 4*int(buf[0]&0x0f)
	if len(buf) < n {
		return ReasonCSRC
	}
	if buf[0]&0x10 != 0 {
		if len(buf) < n+4 {
			return ReasonExtension
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(buf[n+2:]))
		if len(buf) < n {
			return ReasonExtension
		}
	}
	end := len(buf)
	if buf[0]&0x20 != 0 {
		pad := int(buf[end-1])
		if pad == 0 || pad > end-n {
			return ReasonPadding
		}
		end -= pad
	}
	if end == n {
		return ReasonEmpty
	}
	if err := pkt.Unmarshal(buf); err != nil {
		// Everything else was checked above: what is left is an RFC 8285
		// extension element running past the extension block.
		return ReasonExtension
	}
	return Valid
}
