package v4l2

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DeviceInfo describes one device node, as `rtgate devices` shows it.
type DeviceInfo struct {
	Path         string
	Driver, Card string
	BusInfo      string
	Capabilities uint32 // device caps
	Capture      bool   // a single-planar streaming capture device
	Formats      []FormatInfo
	Err          error // why the device could not be queried (open failed, not V4L2)
}

// FormatInfo is one pixel format of a capture device.
type FormatInfo struct {
	PixelFormat uint32
	Description string
	Compressed  bool
	Sizes       []SizeInfo
}

// SizeInfo is one frame size (or a stepwise/continuous range) and its
// frame intervals.
type SizeInfo struct {
	Size      FrameSize
	Intervals []string // "1/30", "1/1-1/30 step 1/1", ...
}

// FrameSize is a discrete size, or a range for stepwise/continuous.
type FrameSize struct {
	Type                                 uint32
	Width, Height                        uint32 // discrete
	MinW, MaxW, StepW, MinH, MaxH, StepH uint32 // stepwise, continuous
}

func frameSize(f FrmSizeEnum) FrameSize {
	if f.Type == FrmSizeTypeDiscrete {
		return FrameSize{Type: f.Type, Width: f.Union[0], Height: f.Union[1]}
	}
	u := f.Union
	return FrameSize{Type: f.Type, MinW: u[0], MaxW: u[1], StepW: u[2], MinH: u[3], MaxH: u[4], StepH: u[5]}
}

func (s FrameSize) String() string {
	if s.Type == FrmSizeTypeDiscrete {
		return fmt.Sprintf("%dx%d", s.Width, s.Height)
	}
	return fmt.Sprintf("%dx%d-%dx%d step %d/%d", s.MinW, s.MinH, s.MaxW, s.MaxH, s.StepW, s.StepH)
}

// ListDevices scans /dev/video*, queries each node and, for capture
// devices, enumerates formats, frame sizes and intervals (what
// `v4l2-ctl --list-formats-ext` shows). No device nodes: an empty list.
func ListDevices() (Devices, error) {
	paths, err := filepath.Glob("/dev/video*")
	if err != nil {
		return nil, err
	}
	return ListDevicesFrom(paths, OpenDevice), nil
}

// ListDevicesFrom queries the given nodes with open (ListDevices with
// another opener, for tests). Nodes are sorted by their number.
func ListDevicesFrom(paths []string, open Opener) Devices {
	paths = append([]string(nil), paths...)
	sort.Slice(paths, func(i, j int) bool { return nodeLess(paths[i], paths[j]) })
	out := make(Devices, 0, len(paths))
	for _, p := range paths {
		out = append(out, queryDevice(p, open))
	}
	return out
}

func nodeLess(a, b string) bool {
	na, ea := strconv.Atoi(strings.TrimLeft(filepath.Base(a), "video"))
	nb, eb := strconv.Atoi(strings.TrimLeft(filepath.Base(b), "video"))
	if ea == nil && eb == nil && na != nb {
		return na < nb
	}
	return a < b
}

func queryDevice(path string, open Opener) DeviceInfo {
	info := DeviceInfo{Path: path}
	dev, err := open(path)
	if err != nil {
		info.Err = err
		return info
	}
	defer dev.Close()
	var c Capability
	if err := dev.QueryCap(&c); err != nil {
		info.Err = fmt.Errorf("VIDIOC_QUERYCAP: %w", err)
		return info
	}
	info.Driver, info.Card, info.BusInfo = cstr(c.Driver[:]), cstr(c.Card[:]), cstr(c.BusInfo[:])
	info.Capabilities = c.Caps()
	info.Capture = info.Capabilities&CapVideoCapture != 0 && info.Capabilities&CapStreaming != 0
	if !info.Capture {
		return info
	}
	for i := uint32(0); i < 256; i++ {
		fd := FmtDesc{Index: i, Type: BufTypeVideoCapture}
		if dev.EnumFmt(&fd) != nil {
			break
		}
		fi := FormatInfo{PixelFormat: fd.PixelFormat, Description: cstr(fd.Description[:]), Compressed: fd.Flags&1 != 0}
		for j := uint32(0); j < 1024; j++ {
			fs := FrmSizeEnum{Index: j, PixelFormat: fd.PixelFormat}
			if dev.EnumFrameSizes(&fs) != nil {
				break
			}
			si := SizeInfo{Size: frameSize(fs)}
			w, h := si.Size.Width, si.Size.Height
			if fs.Type != FrmSizeTypeDiscrete {
				w, h = si.Size.MaxW, si.Size.MaxH
			}
			for k := uint32(0); k < 256; k++ {
				iv := FrmIvalEnum{Index: k, PixelFormat: fd.PixelFormat, Width: w, Height: h}
				if dev.EnumFrameIntervals(&iv) != nil {
					break
				}
				si.Intervals = append(si.Intervals, interval(iv))
				if iv.Type != FrmIvalTypeDiscrete {
					break
				}
			}
			fi.Sizes = append(fi.Sizes, si)
			if fs.Type != FrmSizeTypeDiscrete {
				break
			}
		}
		info.Formats = append(info.Formats, fi)
	}
	return info
}

func fract(f Fract) string {
	s := fmt.Sprintf("%d/%d", f.Numerator, f.Denominator)
	if f.Numerator > 0 {
		s += fmt.Sprintf(" (%.3f fps)", float64(f.Denominator)/float64(f.Numerator))
	}
	return s
}

func interval(iv FrmIvalEnum) string {
	if iv.Type == FrmIvalTypeDiscrete {
		return fract(iv.Union[0])
	}
	return fmt.Sprintf("%s - %s step %d/%d", fract(iv.Union[0]), fract(iv.Union[1]), iv.Union[2].Numerator, iv.Union[2].Denominator)
}

// Devices is what ListDevices returns.
type Devices []DeviceInfo

// Format writes the list the way `v4l2-ctl --list-formats-ext` does.
func (devs Devices) Format(w io.Writer) error {
	if len(devs) == 0 {
		_, err := fmt.Fprintln(w, "no V4L2 devices (/dev/video*)")
		return err
	}
	var b strings.Builder
	for _, d := range devs {
		fmt.Fprintf(&b, "%s", d.Path)
		if d.Err != nil {
			fmt.Fprintf(&b, ": %v\n", d.Err)
			continue
		}
		fmt.Fprintf(&b, ": %s (%s, %s)", d.Card, d.Driver, d.BusInfo)
		if !d.Capture {
			fmt.Fprintf(&b, " not a capture device (caps %#08x)\n", d.Capabilities)
			continue
		}
		b.WriteString("\n")
		for i, f := range d.Formats {
			h264 := ""
			if f.PixelFormat == PixFmtH264 {
				h264 = "  <- usable: v4l2://" + d.Path + "?codec=h264"
			}
			fmt.Fprintf(&b, "\t[%d]: '%s' (%s%s)%s\n", i, FourCCString(f.PixelFormat), f.Description,
				map[bool]string{true: ", compressed"}[f.Compressed], h264)
			for _, s := range f.Sizes {
				fmt.Fprintf(&b, "\t\tSize: %s\n", s.Size)
				for _, iv := range s.Intervals {
					fmt.Fprintf(&b, "\t\t\tInterval: %s\n", iv)
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
