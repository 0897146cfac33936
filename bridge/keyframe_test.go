package bridge

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// TestKeyframeStartVP8 packetizes the demo file's frames as a browser
// does (pion's VP8 payloader, with and without a picture id): the first
// packet of each keyframe, and no other, is a keyframe start.
func TestKeyframeStartVP8(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "deploy", "demo", "demo.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}
	for _, pid := range []bool{false, true} {
		p := &codecs.VP8Payloader{EnablePictureID: pid}
		keys, starts := 0, 0
		for i, fr := range frames {
			key := fr[0]&0x01 == 0
			if key {
				keys++
			}
			for j, pl := range p.Payload(1000, fr) {
				got := PayloadVP8.KeyframeStart(pl)
				if got != (key && j == 0) {
					t.Fatalf("picture id %v: frame %d (keyframe %v) packet %d: keyframe start %v", pid, i, key, j, got)
				}
				if got {
					starts++
				}
			}
		}
		if keys < 2 || starts != keys {
			t.Errorf("picture id %v: %d keyframe starts for %d keyframes", pid, starts, keys)
		}
	}
}

// TestKeyframeStartH264 packetizes an IDR access unit (SPS, PPS, IDR
// slice) and a P slice with pion's H.264 payloader, small and large: the
// STAP-A of the parameter sets and the first fragment of the IDR slice are
// keyframe starts; its other fragments and the P slice's packets are not.
func TestKeyframeStartH264(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	annexB := func(nalus ...[]byte) []byte {
		var b []byte
		for _, n := range nalus {
			b = append(append(b, 0, 0, 0, 1), n...)
		}
		return b
	}
	slice := func(hdr byte, n int) []byte {
		s := make([]byte, n)
		s[0] = hdr
		for i := 1; i < n; i++ {
			s[i] = byte(i)
		}
		return s
	}
	for _, size := range []int{200, 3000} {
		var p codecs.H264Payloader
		idr := p.Payload(1200, annexB(sps, pps, slice(0x65, size)))
		if len(idr) == 0 || !PayloadH264.KeyframeStart(idr[0]) {
			t.Fatalf("IDR unit of %d bytes: first packet %x is not a keyframe start", size, idr[0][:4])
		}
		for j, pl := range idr[1:] {
			fuStart := pl[0]&0x1f == 28 && pl[1]&0x80 != 0
			if pl[0]&0x1f == 28 && PayloadH264.KeyframeStart(pl) != fuStart {
				t.Errorf("IDR unit of %d bytes: FU-A %d (start %v): keyframe start %v", size, j+1, fuStart, !fuStart)
			}
		}
		for j, pl := range p.Payload(1200, annexB(slice(0x41, size))) {
			if PayloadH264.KeyframeStart(pl) {
				t.Errorf("P slice of %d bytes: packet %d is a keyframe start", size, j)
			}
		}
	}
	if PayloadOther.KeyframeStart([]byte{0x10, 0}) || PayloadVP8.KeyframeStart(nil) {
		t.Error("no codec or no payload: a keyframe start")
	}
}
