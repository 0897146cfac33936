package peer

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// BenchmarkSRTPEncrypt is the SRTP cost of one sent 1200-byte RTP packet
// under each profile rtgate could negotiate, to choose their order
// (srtpProfiles in peer.go):
//
//	go test -run '^$' -bench SRTPEncrypt -benchmem -count=5 ./gateway/peer/
func BenchmarkSRTPEncrypt(b *testing.B) {
	for _, c := range []struct {
		name    string
		profile srtp.ProtectionProfile
	}{
		{"aead-aes-128-gcm", srtp.ProtectionProfileAeadAes128Gcm},
		{"aead-aes-256-gcm", srtp.ProtectionProfileAeadAes256Gcm},
		{"aes-128-cm-hmac-sha1-80", srtp.ProtectionProfileAes128CmHmacSha1_80},
	} {
		b.Run(c.name, func(b *testing.B) {
			keyLen, err := c.profile.KeyLen()
			if err != nil {
				b.Fatal(err)
			}
			saltLen, err := c.profile.SaltLen()
			if err != nil {
				b.Fatal(err)
			}
			key, salt := make([]byte, keyLen), make([]byte, saltLen)
			for i := range key {
				key[i] = byte(i * 7)
			}
			ctx, err := srtp.CreateContext(key, salt, c.profile)
			if err != nil {
				b.Fatal(err)
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x1234}, Payload: make([]byte, 1188)}
			plain, err := pkt.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, 1500)
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// A new sequence number (and a rollover now and then)
				// each time, as on the wire.
				pkt.SequenceNumber = uint16(i)
				if _, err := ctx.EncryptRTP(dst[:0], plain, &pkt.Header); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
