package v4l2_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge/v4l2"
	"github.com/rtgate/rtgate/bridge/v4l2/v4l2test"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want v4l2.Spec
		err  string
	}{
		{raw: "v4l2:///dev/video0", want: v4l2.Spec{Device: "/dev/video0", Codec: "h264"}},
		{raw: "v4l2:///dev/video0?codec=h264&width=1280&height=720&fps=30&gop=60",
			want: v4l2.Spec{Device: "/dev/video0", Codec: "h264", Width: 1280, Height: 720, FPS: 30, GOP: 60}},
		{raw: "v4l2:///dev/v4l/by-id/usb-cam-video-index0?fps=15",
			want: v4l2.Spec{Device: "/dev/v4l/by-id/usb-cam-video-index0", Codec: "h264", FPS: 15}},
		{raw: "v4l2:///dev/video0?codec=mjpeg", err: "only h264"},
		{raw: "v4l2:///dev/video0?width=1280", err: "width and height go together"},
		{raw: "v4l2:///dev/video0?width=0&height=720", err: "width"},
		{raw: "v4l2:///dev/video0?fps=-1", err: "fps"},
		{raw: "v4l2:///dev/video0?fps=abc", err: "fps"},
		{raw: "v4l2:///dev/video0?gop=x", err: "gop"},
		{raw: "v4l2:///dev/video0?bitrate=1", err: "unknown parameter"},
		{raw: "v4l2:///dev/video0?fps=1&fps=2", err: "2 times"},
		{raw: "v4l2://dev/video0", err: "three slashes"},
		{raw: "v4l2:///tmp/video0", err: "under /dev"},
		{raw: "v4l2:///dev/../etc/passwd", err: "under /dev"},
		{raw: "file:///dev/video0", err: "scheme"},
		{raw: "/dev/video0", err: "scheme"},
	} {
		sp, err := v4l2.ParseURL(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.raw, err)
			continue
		}
		tc.want.URL = tc.raw
		if *sp != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.raw, *sp, tc.want)
		}
	}
}

// expectedTS is the RTP timestamp offset of frame k: the fake's driver
// timestamps are k frame intervals after the first, truncated to
// microseconds like a timeval, converted to 90 kHz.
func expectedTS(k int, interval time.Duration) uint32 {
	d := int64(k) * int64(interval) / 1000 * 1000
	return uint32((d*9 + 50000) / 100000)
}

func TestCaptureIdentical(t *testing.T) {
	aus := cameraAUs(t)
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	src := openFake(t, cam, "codec=h264&width=320&height=240&fps=30&gop=15", v4l2.Options{})
	c := newCollector(len(aus))
	if err := runUntil(t, src, c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pkts := c.snapshot()
	checkSeq(t, pkts)
	frames := depacketize(t, pkts)[:len(aus)]
	for k, f := range frames {
		want := sent(v4l2test.NALUnits(aus[k]))
		if len(f.nals) != len(want) {
			t.Fatalf("frame %d: %d NAL units, want %d", k, len(f.nals), len(want))
		}
		for i := range want {
			if !bytes.Equal(f.nals[i], want[i]) {
				t.Fatalf("frame %d NAL %d (type %d): bytes differ", k, i, want[i][0]&0x1f)
			}
		}
		if got, want := f.ts-frames[0].ts, expectedTS(k, cam.Interval()); got != want {
			t.Fatalf("frame %d: RTP timestamp +%d, want +%d", k, got, want)
		}
	}
	st := src.Stats()
	if st.Frames < uint64(len(aus)) || st.Width != 320 || st.Height != 240 || st.FPS != 30 {
		t.Errorf("stats %+v", st)
	}
	if tpf := cam.TimePerFrame(); tpf != (v4l2.Fract{Numerator: 1, Denominator: 30}) {
		t.Errorf("S_PARM time per frame %+v, want 1/30", tpf)
	}
	var gop bool
	for _, ctl := range cam.SetCtrls() {
		if ctl.ID == v4l2.CIDMPEGVideoH264IPeriod && ctl.Value == 15 {
			gop = true
		}
	}
	if !gop {
		t.Errorf("gop=15 not set as H264_I_PERIOD: %+v", cam.SetCtrls())
	}
	if n := cam.OpenDevices(); n != 0 {
		t.Errorf("%d devices left open after Run", n)
	}
	tr := src.Tracks()
	if len(tr) != 1 || tr[0].Codec.MimeType != "video/H264" || tr[0].Codec.ClockRate != 90000 {
		t.Errorf("tracks %+v", tr)
	}
}

// Realtime pacing: DQBUF before the frame is due says EAGAIN, Wait sleeps.
func TestCaptureRealtime(t *testing.T) {
	aus := cameraAUs(t)
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	cam.SetRealtime(true)
	src := openFake(t, cam, "", v4l2.Options{})
	c := newCollector(10)
	start := time.Now()
	if err := runUntil(t, src, c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("10 frames at 30 fps in %v", el)
	}
	frames := depacketize(t, c.snapshot())
	for k := range frames {
		if got, want := frames[k].ts-frames[0].ts, expectedTS(k, cam.Interval()); got != want {
			t.Fatalf("frame %d: RTP timestamp +%d, want +%d", k, got, want)
		}
	}
}

func TestSpuriousEAGAIN(t *testing.T) {
	aus := cameraAUs(t)
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	cam.EAGAINEvery(3)
	src := openFake(t, cam, "", v4l2.Options{})
	c := newCollector(30)
	if err := runUntil(t, src, c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	frames := depacketize(t, c.snapshot())
	for k := range 30 {
		if !bytes.Equal(bytes.Join(frames[k].nals, nil), bytes.Join(sent(v4l2test.NALUnits(aus[k])), nil)) {
			t.Fatalf("frame %d differs", k)
		}
	}
	if st := src.Stats(); st.SpuriousWakeups == 0 || cam.EAGAINs() == 0 {
		t.Errorf("no EAGAIN seen: stats %+v", st)
	}
}

func TestFormatRefused(t *testing.T) {
	aus := [][]byte{{0, 0, 0, 1, 0x65, 0x88}}
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	cam.OfferFormats(v4l2.FourCC('M', 'J', 'P', 'G'))
	cam.OverrideFormat(v4l2.FourCC('M', 'J', 'P', 'G'), 320, 240)
	_, err := v4l2.Open("v4l2:///dev/video0", v4l2.Options{Open: cam.Open})
	if !errors.Is(err, v4l2.ErrFormat) || !strings.Contains(err.Error(), "gave MJPG 320x240") ||
		!strings.Contains(err.Error(), "offers: H264 320x240; MJPG 320x240") {
		t.Errorf("format refusal: %v", err)
	}

	cam = v4l2test.NewCamera(aus, 320, 240, 30)
	_, err = v4l2.Open("v4l2:///dev/video0?width=1920&height=1080", v4l2.Options{Open: cam.Open})
	if !errors.Is(err, v4l2.ErrFormat) || !strings.Contains(err.Error(), "asked for H264 1920x1080, the device gave 320x240") {
		t.Errorf("size refusal: %v", err)
	}
	if n := cam.OpenDevices(); n != 0 {
		t.Errorf("%d devices left open", n)
	}

	cam.SetNotCapture(true)
	_, err = v4l2.Open("v4l2:///dev/video0", v4l2.Options{Open: cam.Open})
	if !errors.Is(err, v4l2.ErrNotCapture) || !strings.Contains(err.Error(), "Fake H.264 Camera") {
		t.Errorf("not a capture device: %v", err)
	}
}

func TestBusy(t *testing.T) {
	aus := [][]byte{{0, 0, 0, 1, 0x65, 0x88}}
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	cam.FailOpen(syscall.EBUSY)
	_, err := v4l2.Open("v4l2:///dev/video0", v4l2.Options{Open: cam.Open})
	if !errors.Is(err, v4l2.ErrBusy) || !strings.Contains(err.Error(), "/dev/video0: open: device busy (another process has it open)") {
		t.Errorf("EBUSY on open: %v", err)
	}

	cam.FailOpen(nil)
	cam.FailReqBufs(syscall.EBUSY)
	src := openFake(t, cam, "", v4l2.Options{})
	err = runUntil(t, src, newCollector(1), 5*time.Second)
	if !errors.Is(err, v4l2.ErrBusy) || !strings.Contains(err.Error(), "VIDIOC_REQBUFS: device busy (another process has it open)") {
		t.Errorf("EBUSY on REQBUFS: %v", err)
	}
	if n := cam.OpenDevices(); n != 0 {
		t.Errorf("%d devices left open", n)
	}
}

// A device that disappears (ENODEV) or fails (EIO) mid-stream ends Run;
// a second Run reopens it and the RTP stream goes on.
func TestFailureAndRestart(t *testing.T) {
	aus := cameraAUs(t)
	for _, tc := range []struct {
		errno syscall.Errno
		is    error
	}{{syscall.ENODEV, v4l2.ErrGone}, {syscall.EIO, syscall.EIO}} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			cam := v4l2test.NewCamera(aus, 320, 240, 30)
			cam.FailAt(10, tc.errno)
			src := openFake(t, cam, "", v4l2.Options{})
			c := newCollector(0)
			err := runUntil(t, src, c, 5*time.Second)
			if !errors.Is(err, tc.is) || !errors.Is(err, tc.errno) || !strings.Contains(err.Error(), "VIDIOC_DQBUF") {
				t.Fatalf("Run: %v", err)
			}
			if st := src.Stats(); st.Frames != 10 || st.LastError != err.Error() {
				t.Fatalf("stats after failure: %+v", st)
			}
			if n := cam.OpenDevices(); n != 0 {
				t.Fatalf("%d devices open after Run returned", n)
			}
			c.want = 30
			if err := runUntil(t, src, c, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			pkts := c.snapshot()
			checkSeq(t, pkts)
			frames := depacketize(t, pkts)
			for k := 1; k < len(frames); k++ {
				if d := frames[k].ts - frames[k-1].ts; d == 0 || d > 1<<30 {
					t.Fatalf("frame %d: timestamp step %d", k, int32(d))
				}
			}
			for k := range 30 {
				if !bytes.Equal(bytes.Join(frames[k].nals, nil), bytes.Join(sent(v4l2test.NALUnits(aus[k])), nil)) {
					t.Fatalf("frame %d differs", k)
				}
			}
			if st := src.Stats(); st.Restarts != 1 || cam.Opens() != 2 {
				t.Errorf("restarts %d, opens %d", st.Restarts, cam.Opens())
			}
		})
	}
}

func TestStall(t *testing.T) {
	aus := cameraAUs(t)
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	cam.StallAt(5)
	src := openFake(t, cam, "", v4l2.Options{StallTimeout: 300 * time.Millisecond})
	start := time.Now()
	err := runUntil(t, src, newCollector(0), 5*time.Second)
	if !errors.Is(err, v4l2.ErrStall) {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 2*time.Second {
		t.Errorf("stall detected after %v", el)
	}
	if st := src.Stats(); st.Frames != 5 {
		t.Errorf("%d frames before the stall", st.Frames)
	}
}

func TestRequestKeyframe(t *testing.T) {
	aus := cameraAUs(t)
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	cam.SetRealtime(true)
	src := openFake(t, cam, "", v4l2.Options{})
	c := newCollector(5)
	c.fnHook = func() {
		if c.frames == 2 && !c.asked {
			c.asked = true
			go func() { c.ok <- src.RequestKeyframe(0) }()
		}
	}
	c.ok = make(chan bool, 1)
	if err := runUntil(t, src, c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !<-c.ok {
		t.Fatal("RequestKeyframe returned false")
	}
	var forced int
	for _, ctl := range cam.SetCtrls() {
		if ctl.ID == v4l2.CIDMPEGVideoForceKeyFrame && ctl.Value == 1 {
			forced++
		}
	}
	if forced != 1 || src.Stats().KeyframesForced != 1 {
		t.Errorf("FORCE_KEY_FRAME set %d times, stats %+v", forced, src.Stats())
	}
	// Between Runs the request waits for the next Run.
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe between Runs returned false")
	}
	c2 := newCollector(1)
	if err := runUntil(t, src, c2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := src.Stats(); st.KeyframesForced != 2 {
		t.Errorf("pending request not applied: %+v", st)
	}
}

func TestRequestKeyframeUnsupported(t *testing.T) {
	aus := [][]byte{{0, 0, 0, 1, 0x65, 0x88}}
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	cam.SetControl(v4l2.CIDMPEGVideoForceKeyFrame, false)
	src := openFake(t, cam, "", v4l2.Options{})
	for range 3 {
		if src.RequestKeyframe(0) {
			t.Fatal("RequestKeyframe returned true without the control")
		}
	}
	if st := src.Stats(); st.KeyframeRequestsUnsupported != 3 || st.KeyframesForced != 0 {
		t.Errorf("stats %+v", st)
	}
	if len(cam.SetCtrls()) != 0 {
		t.Errorf("controls set: %+v", cam.SetCtrls())
	}
}

// An IDR access unit without SPS/PPS gets the cached ones.
func TestParameterSetInsertion(t *testing.T) {
	aus := cameraAUs(t)
	stripped := make([][]byte, len(aus))
	for k, au := range aus {
		var b []byte
		for _, n := range v4l2test.NALUnits(au) {
			if typ := n[0] & 0x1f; k > 0 && (typ == 7 || typ == 8) {
				continue
			}
			b = append(append(b, 0, 0, 0, 1), n...)
		}
		stripped[k] = b
	}
	cam := v4l2test.NewCamera(stripped, 320, 240, 30)
	src := openFake(t, cam, "", v4l2.Options{})
	c := newCollector(len(aus))
	if err := runUntil(t, src, c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	frames := depacketize(t, c.snapshot())
	idrs := 0
	for k := range aus {
		if !v4l2test.IsIDR(aus[k]) {
			continue
		}
		idrs++
		var types []byte
		for _, n := range frames[k].nals {
			types = append(types, n[0]&0x1f)
		}
		if !bytes.Contains(types, []byte{7, 8}) {
			t.Fatalf("IDR frame %d: NAL types %v, no SPS+PPS", k, types)
		}
	}
	// The camera may have looped past the end: at least the IDRs after
	// the first got inserts.
	if st := src.Stats(); st.ParamSetInserts < uint64(idrs-1) {
		t.Errorf("%d inserts, want at least %d (IDRs after the first)", st.ParamSetInserts, idrs-1)
	}
}

func TestRunClosedAndTwice(t *testing.T) {
	aus := [][]byte{{0, 0, 0, 1, 0x65, 0x88}}
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	src := openFake(t, cam, "", v4l2.Options{})
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if n := cam.OpenDevices(); n != 0 {
		t.Errorf("Close left %d devices open", n)
	}
	if err := runUntil(t, src, newCollector(1), time.Second); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}
