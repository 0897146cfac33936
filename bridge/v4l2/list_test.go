package v4l2_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge/v4l2"
	"github.com/rtgate/rtgate/bridge/v4l2/v4l2test"
)

func TestListDevicesFake(t *testing.T) {
	cam := v4l2test.NewCamera([][]byte{{0, 0, 0, 1, 0x65, 0x88}}, 640, 480, 30)
	cam.OfferFormats(v4l2.FourCC('M', 'J', 'P', 'G'))
	meta := v4l2test.NewCamera(nil, 640, 480, 30)
	meta.SetNotCapture(true)
	open := func(p string) (v4l2.Device, error) {
		switch p {
		case "/dev/video0":
			return cam.Open(p)
		case "/dev/video1":
			return meta.Open(p)
		}
		return nil, syscall.EBUSY
	}
	devs := v4l2.ListDevicesFrom([]string{"/dev/video10", "/dev/video1", "/dev/video0"}, open)
	if len(devs) != 3 || devs[0].Path != "/dev/video0" || devs[1].Path != "/dev/video1" || devs[2].Path != "/dev/video10" {
		t.Fatalf("devices %+v", devs)
	}
	d := devs[0]
	if !d.Capture || d.Card != "Fake H.264 Camera" || len(d.Formats) != 2 || d.Formats[0].PixelFormat != v4l2.PixFmtH264 ||
		len(d.Formats[0].Sizes) != 1 || d.Formats[0].Sizes[0].Size.String() != "640x480" ||
		len(d.Formats[0].Sizes[0].Intervals) != 1 {
		t.Errorf("device 0: %+v", d)
	}
	if devs[1].Capture || len(devs[1].Formats) != 0 {
		t.Errorf("device 1: %+v", devs[1])
	}
	if !errors.Is(devs[2].Err, syscall.EBUSY) {
		t.Errorf("device 10: %+v", devs[2])
	}
	var b bytes.Buffer
	if err := devs.Format(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"/dev/video0: Fake H.264 Camera (v4l2test, platform:v4l2test)",
		"[0]: 'H264' (H.264, compressed)  <- usable: v4l2:///dev/video0?codec=h264",
		"Size: 640x480", "Interval: 1/30 (30.000 fps)", "[1]: 'MJPG'",
		"/dev/video1: Fake H.264 Camera", "not a capture device", "/dev/video10: device or resource busy"} {
		if !strings.Contains(out, want) {
			t.Errorf("Format output lacks %q:\n%s", want, out)
		}
	}
	if cam.OpenDevices()+meta.OpenDevices() != 0 {
		t.Error("ListDevices left devices open")
	}
}

// ListDevices on this machine: never an error, an empty list without
// /dev/video*.
func TestListDevicesReal(t *testing.T) {
	devs, err := v4l2.ListDevices()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := devs.Format(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d devices:\n%s", len(devs), b.String())
}

// TestRealDevice runs against a real camera, only when
// RTGATE_V4L2_DEVICE names one (e.g. RTGATE_V4L2_DEVICE=/dev/video0; a
// query such as "/dev/video0?width=1280&height=720&fps=30" may follow).
// It checks that the ioctls work on this kernel and architecture: the
// device negotiates H.264, Run delivers 30 access units within 10 s whose
// RTP timestamps increase and whose sequence numbers are contiguous, the
// first frames include an SPS and a PPS (or an IDR gets them inserted),
// and RequestKeyframe does not fail when the device has the control.
func TestRealDevice(t *testing.T) {
	dev := os.Getenv("RTGATE_V4L2_DEVICE")
	if dev == "" {
		t.Skip("RTGATE_V4L2_DEVICE not set")
	}
	src, err := v4l2.Open("v4l2://"+dev, v4l2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	c := newCollector(30)
	c.ok = make(chan bool, 1)
	c.fnHook = func() {
		if c.frames == 5 && !c.asked {
			c.asked = true
			go func() { c.ok <- src.RequestKeyframe(0) }()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, c.fn) }()
	select {
	case <-c.done:
		cancel()
	case <-ctx.Done():
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pkts := c.snapshot()
	checkSeq(t, pkts)
	frames := depacketize(t, pkts)
	if len(frames) < 30 {
		t.Fatalf("%d frames in 10 s", len(frames))
	}
	sps := false
	for k, f := range frames {
		if k > 0 && int32(f.ts-frames[k-1].ts) <= 0 {
			t.Errorf("frame %d: timestamp step %d", k, int32(f.ts-frames[k-1].ts))
		}
		for _, n := range f.nals {
			sps = sps || n[0]&0x1f == 7
		}
	}
	if !sps {
		t.Error("no SPS in the first frames")
	}
	t.Logf("stats %+v, keyframe request accepted: %v", src.Stats(), <-c.ok)
}

// The real ioctl path on a node that is not a V4L2 device: QUERYCAP says
// ENOTTY, and that is reported, not mistaken for a camera.
func TestRealIoctlNotV4L2(t *testing.T) {
	devs := v4l2.ListDevicesFrom([]string{"/dev/null"}, v4l2.OpenDevice)
	if len(devs) != 1 || !errors.Is(devs[0].Err, syscall.ENOTTY) {
		t.Fatalf("/dev/null: %+v", devs)
	}
	_, err := v4l2.Open("v4l2:///dev/null", v4l2.Options{})
	if !errors.Is(err, syscall.ENOTTY) || !strings.Contains(err.Error(), "VIDIOC_QUERYCAP") {
		t.Fatalf("Open /dev/null: %v", err)
	}
	_, err = v4l2.Open("v4l2:///dev/video-does-not-exist", v4l2.Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open missing node: %v", err)
	}
}
