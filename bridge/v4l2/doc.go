// Package v4l2 captures already-compressed H.264 from a V4L2 camera as a
// bridge.Source with one RTP video track, in pure Go (no cgo): ioctls
// through golang.org/x/sys/unix on structs laid out like videodev2.h's on
// amd64, arm64 and 32-bit ARM, with request numbers computed from the
// struct sizes (see types.go, ioctl.go and layout_test.go).
//
// URLs look like v4l2:///dev/video0?codec=h264&width=1280&height=720&fps=30&gop=60
// (see ParseURL). Open checks the device (QUERYCAP: a capture device with
// streaming I/O), negotiates V4L2_PIX_FMT_H264 at the requested size
// (a refusal names what the device offers), sets the frame rate
// (S_PARM) and the GOP (H264_I_PERIOD and/or GOP_SIZE controls, where
// present). Run maps 4 buffers (REQBUFS mmap), queues them, starts
// streaming and loops: poll for readable, DQBUF, send the buffer's
// bytesused as one access unit, QBUF it back.
//
// Everything below the capture code goes through the Device interface;
// OpenDevice is the real one and v4l2test has a fake camera with
// scriptable faults.
//
// RTP: one random SSRC per Source; timestamps come from the driver's
// buffer timestamps (the monotonic clock), converted to 90 kHz relative
// to the first frame, not from the wall clock. Access units are
// packetized as RFC 6184 packetization-mode 1 without STAP-A (single NAL
// unit or FU-A; AUD and filler dropped), allocation-free. The latest SPS
// and PPS are cached and inserted before an IDR access unit that lacks
// them.
//
// Faults: the device disappearing (ENODEV, ErrGone), EIO, or no frame for
// StallTimeout (ErrStall) end Run with an error; the supervisor calls Run
// again, which reopens the device, and the RTP sequence numbers continue
// and the timestamps go on by the wall-clock gap. EBUSY (on open, S_FMT or
// REQBUFS) is ErrBusy: "device busy (another process has it open)".
//
// Keyframes: RequestKeyframe sets V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME
// where the device has it; where not, it logs once, counts and returns
// false.
//
// ListDevices lists /dev/video* with their formats, frame sizes and
// intervals, for `rtgate devices`.
package v4l2
