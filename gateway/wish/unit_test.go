package wish

import (
	"fmt"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
)

const offerSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"a=fingerprint:sha-256 AA:BB\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 102 103 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=sendonly\r\n" +
	"a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n" +
	"a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:96 VP8/90000\r\n" +
	"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=sendonly\r\n" +
	"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n"

func TestParseSDP(t *testing.T) {
	ms, err := parseSDP(offerSDP)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].mid != "0" || ms[0].kind != "video" || !ms[0].sends() || ms[0].receives() ||
		ms[1].kind != "audio" || ms[1].direction != "sendonly" {
		t.Fatalf("parseSDP = %+v", ms)
	}
	want := []codecDesc{
		{pt: 102, name: "H264", clock: 90000, fmtp: "packetization-mode=1;profile-level-id=42e01f"},
		{pt: 103, name: "rtx", clock: 90000, fmtp: "apt=102"},
		{pt: 96, name: "VP8", clock: 90000},
	}
	if !reflect.DeepEqual(ms[0].codecs, want) {
		t.Errorf("video codecs = %+v, want %+v", ms[0].codecs, want)
	}
	if c := ms[1].codecs[0]; c.name != "opus" || c.channels != 2 || c.clock != 48000 {
		t.Errorf("audio codec = %+v", c)
	}
	if apt, ok := ms[0].codecs[1].apt(); !ok || apt != 102 {
		t.Errorf("apt = %d, %v", apt, ok)
	}

	for _, bad := range []struct{ sdp, want string }{
		{"", "empty"},
		{"hello", "not an SDP"},
		{strings.ReplaceAll(offerSDP, "a=mid:0\r\n", ""), "no a=mid"},
		{strings.ReplaceAll(offerSDP, "a=ice-ufrag:abcd\r\n", ""), "no a=ice-ufrag"},
		{strings.ReplaceAll(offerSDP, "a=fingerprint:sha-256 AA:BB\r\n", ""), "no a=fingerprint"},
		{"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n", "no audio or video"},
	} {
		if _, err := parseSDP(bad.sdp); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("parseSDP(%.20q) = %v, want an error with %q", bad.sdp, err, bad.want)
		}
	}
}

func TestSameCodec(t *testing.T) {
	h264 := bridge.Codec{MimeType: "video/H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	tests := []struct {
		c    codecDesc
		want bool
	}{
		{codecDesc{name: "H264", clock: 90000, fmtp: "packetization-mode=1;profile-level-id=42e034"}, true}, // level differs
		{codecDesc{name: "h264", clock: 90000, fmtp: "profile-level-id=42c01f;packetization-mode=1"}, true},
		{codecDesc{name: "H264", clock: 90000, fmtp: "packetization-mode=0;profile-level-id=42e01f"}, false},
		{codecDesc{name: "H264", clock: 90000, fmtp: "packetization-mode=1;profile-level-id=640032"}, false},
		{codecDesc{name: "VP8", clock: 90000}, false},
	}
	for _, tt := range tests {
		if got := sameCodec("video", tt.c, h264); got != tt.want {
			t.Errorf("sameCodec(%+v) = %v, want %v", tt.c, got, tt.want)
		}
	}
	a := []bridge.Track{{Kind: "video", Codec: h264}, {Kind: "audio", Codec: bridge.Codec{MimeType: "audio/opus", ClockRate: 48000}}}
	b := []bridge.Track{{Kind: "video", Codec: h264}, {Kind: "audio", Codec: bridge.Codec{MimeType: "audio/OPUS", ClockRate: 48000, PayloadType: 109}}}
	if !sameTracks(a, b) || sameTracks(a, b[:1]) || sameTracks(a, []bridge.Track{b[1], b[0]}) {
		t.Error("sameTracks: want equal for the same codecs in the same order only")
	}
}

func TestFrag(t *testing.T) {
	f, err := parseFrag("a=ice-options:trickle ice2\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
		"a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n" +
		"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw\r\na=end-of-candidates\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if f.ufrag != "EsAw" || f.pwd != "bP+XJMM09aR8AiX1jdukzR6Y" || !f.end || len(f.candidates) != 1 ||
		f.candidates[0].mid != "0" || !strings.HasPrefix(f.candidates[0].value, "candidate:1387637174 1 udp") {
		t.Errorf("parseFrag = %+v", f)
	}
	if _, err := parseFrag("a=ice-ufrag:x\r\n"); err == nil {
		t.Error("a ufrag without a password was accepted")
	}
	if _, err := parseFrag("hello\r\n"); err == nil {
		t.Error("a line that is no attribute was accepted")
	}

	// withICE: new credentials, old candidates out, new ones in the first
	// section, the version bumped.
	out := withICE(offerSDP, iceFrag{ufrag: "NEW", pwd: "NEWPWD", end: true,
		candidates: []fragCandidate{{value: "candidate:9 1 udp 1 127.0.0.1 6000 typ host"}}})
	for _, want := range []string{"o=- 1 3 IN IP4", "a=ice-ufrag:NEW", "a=ice-pwd:NEWPWD",
		"a=mid:0\r\na=ice-ufrag:NEW", "a=candidate:9 1 udp 1 127.0.0.1 6000 typ host\r\na=end-of-candidates\r\nm=audio"} {
		if !strings.Contains(out, want) {
			t.Errorf("withICE lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "abcd") || strings.Contains(out, "5000 typ host") {
		t.Errorf("withICE kept old credentials or candidates:\n%s", out)
	}

	got := fragOf(offerSDP)
	want := "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=video 9 UDP/TLS/RTP/SAVPF 102 103 96\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
	if got != want {
		t.Errorf("fragOf =\n%s\nwant\n%s", got, want)
	}
}

func TestLinkHeaders(t *testing.T) {
	servers := []webrtc.ICEServer{
		{URLs: []string{"stun:a.example:3478", "stun:b.example"}},
		{URLs: []string{"turns:t.example:443?transport=tcp"}, Username: `u"1`, Credential: `p\2`},
	}
	got := linkHeaders(servers, true)
	want := []string{`<stun:a.example:3478>; rel="ice-server"`, `<stun:b.example>; rel="ice-server"`,
		`<turns:t.example:443?transport=tcp>; rel="ice-server"; username="u\"1"; credential="p\\2"; credential-type="password"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("linkHeaders =\n%q\nwant\n%q", got, want)
	}
	if got := linkHeaders(servers, false); len(got) != 2 {
		t.Errorf("linkHeaders without credentials = %q, want the STUN servers only", got)
	}
}

func TestAuthorize(t *testing.T) {
	h := &Handler{o: Options{WHIPToken: "pub", WHEPToken: ""}}
	st := NewStream(StreamOptions{Name: "s", WHEPToken: "play-s"})
	tests := []struct {
		kind, auth, remote string
		st                 *Stream
		want               int
	}{
		{"whip", "Bearer pub", "203.0.113.1:1", nil, 200},
		{"whip", "bearer  pub ", "203.0.113.1:1", nil, 200},
		{"whip", "Bearer pubx", "203.0.113.1:1", nil, 401},
		{"whip", "Basic pub", "203.0.113.1:1", nil, 401},
		{"whip", "", "127.0.0.1:1", nil, 401},
		{"whep", "", "203.0.113.1:1", nil, 200}, // no play token: open
		{"whep", "", "203.0.113.1:1", st, 401},  // the stream's own token
		{"whep", "Bearer play-s", "203.0.113.1:1", st, 200},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/"+tt.kind+"/s", nil)
		r.RemoteAddr = tt.remote
		if tt.auth != "" {
			r.Header.Set("Authorization", tt.auth)
		}
		w := httptest.NewRecorder()
		ok := h.authorize(w, r, tt.kind, tt.st)
		if got := w.Code; ok != (tt.want == 200) || (!ok && got != tt.want) {
			t.Errorf("%s %q from %s: ok %v, status %d; want %d", tt.kind, tt.auth, tt.remote, ok, got, tt.want)
		}
	}
	// Without a publish token, publishing is for loopback clients only.
	h.o.WHIPToken = ""
	for remote, want := range map[string]bool{"127.0.0.1:5": true, "[::1]:5": true, "192.0.2.7:5": false} {
		r := httptest.NewRequest("POST", "/whip/s", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		if got := h.authorize(w, r, "whip", nil); got != want || (!got && w.Code != 403) {
			t.Errorf("tokenless publish from %s = %v (%d), want %v", remote, got, w.Code, want)
		}
	}
}

// nullWriter is a viewer's TrackLocalWriter that counts.
type nullWriter struct{ n int }

func (w *nullWriter) WriteRTP(*rtp.Header, []byte) (int, error) { w.n++; return 0, nil }
func (w *nullWriter) Write([]byte) (int, error)                 { return 0, nil }

// TestFanTrackWriteAllocs checks the relay fan-out's hot path: one packet
// to ten viewers, rebased and rewritten, without allocating.
func TestFanTrackWriteAllocs(t *testing.T) {
	ft := newFanTrack("s", "video", bridge.Codec{MimeType: "video/VP8", ClockRate: 90000}, keyframeInterval)
	var writers []*nullWriter
	binds := []*fanBinding{}
	for i := range 10 {
		w := &nullWriter{}
		writers = append(writers, w)
		binds = append(binds, &fanBinding{id: string(rune('a' + i)), ssrc: uint32(i), pt: 96, w: w})
	}
	ft.binds.Store(&binds)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SSRC: 7, SequenceNumber: 1, Timestamp: 1000},
		Payload: make([]byte, 1000)}
	if err := pkt.SetExtension(3, []byte{1}); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		ft.write(pkt)
	})
	if allocs != 0 {
		t.Errorf("fanTrack.write allocates %.1f times per packet", allocs)
	}
	if writers[9].n < 1000 {
		t.Errorf("viewer 9 got %d packets", writers[9].n)
	}
}

// TestSourceReaderAllocs checks the relay WHIP source's hot path.
func TestSourceReaderAllocs(t *testing.T) {
	n := 0
	r := trackReader{buf: make([]byte, 1500), fn: func(int, *rtp.Packet) { n++ }}
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 5, SSRC: 9}, Payload: make([]byte, 900)}).Marshal()
	copy(r.buf, raw)
	allocs := testing.AllocsPerRun(1000, func() { r.handle(len(raw)) })
	if allocs != 0 || n < 1000 {
		t.Errorf("trackReader.handle: %.1f allocations per packet, %d packets", allocs, n)
	}
}

// TestRebase checks that a fanTrack's output stays one stream across an
// upstream that restarts with new sequence numbers, timestamps and SSRC.
func TestRebase(t *testing.T) {
	c := rebase{clock: 90000}
	h := rtp.Header{SSRC: 1, SequenceNumber: 100, Timestamp: 5000}
	c.apply(&h, 1e9)
	if h.SequenceNumber != 100 || h.Timestamp != 5000 {
		t.Fatalf("first packet changed: %+v", h)
	}
	h = rtp.Header{SSRC: 1, SequenceNumber: 101, Timestamp: 8000}
	c.apply(&h, 1e9+33e6)
	h = rtp.Header{SSRC: 2, SequenceNumber: 40000, Timestamp: 123}
	c.apply(&h, 2e9+33e6) // one second later, a new upstream
	if h.SequenceNumber != 102 || h.Timestamp != 8000+90000 {
		t.Errorf("rebased packet: seq %d ts %d, want 102 and %d", h.SequenceNumber, h.Timestamp, 8000+90000)
	}
	c.restart()
	h = rtp.Header{SSRC: 2, SequenceNumber: 7, Timestamp: 9}
	c.apply(&h, 2e9+66e6)
	if h.SequenceNumber != 103 {
		t.Errorf("after restart: seq %d, want 103", h.SequenceNumber)
	}
}

// BenchmarkFanTrackWrite is the relay fan-out of one packet to 1 and 10
// viewers (writers that discard: the cost of the fan-out itself).
func BenchmarkFanTrackWrite(b *testing.B) {
	for _, viewers := range []int{1, 10} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			ft := newFanTrack("s", "video", bridge.Codec{MimeType: "video/VP8", ClockRate: 90000}, keyframeInterval)
			binds := []*fanBinding{}
			for i := range viewers {
				binds = append(binds, &fanBinding{id: fmt.Sprint(i), ssrc: uint32(i), pt: 96, w: &nullWriter{}})
			}
			ft.binds.Store(&binds)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SSRC: 7}, Payload: make([]byte, 1000)}
			b.ReportAllocs()
			for b.Loop() {
				pkt.SequenceNumber++
				ft.write(pkt)
			}
		})
	}
}
