package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// notifySocket listens where a service manager would (NOTIFY_SOCKET) and
// collects what the daemon sends.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{time.Now(), string(buf[:k])})
			n.mu.Unlock()
		}
	}()
	return n
}

// wait returns the index of the first message at or after index from that
// contains want.
func (n *notifySocket) wait(t *testing.T, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		for i := from; i < len(n.msgs); i++ {
			if strings.Contains(n.msgs[i].text, want) {
				n.mu.Unlock()
				return i
			}
		}
		n.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q from the daemon on NOTIFY_SOCKET; got %v", want, n.all())
	return 0
}

func (n *notifySocket) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, m := range n.msgs {
		out = append(out, strings.ReplaceAll(m.text, "\n", " "))
	}
	return out
}

// rtpReceiver counts the RTP packets a forward sends and the longest pause
// and sequence gap between them.
type rtpReceiver struct {
	port     int
	mu       sync.Mutex
	packets  int
	lastSeq  uint16
	last     time.Time
	maxPause time.Duration
	seqGaps  int
}

func newRTPReceiver(t *testing.T) *rtpReceiver {
	t.Helper()
	for range 50 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 {
			c.Close()
			continue
		}
		rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		if err != nil {
			c.Close()
			continue
		}
		t.Cleanup(func() { c.Close(); rc.Close() })
		r := &rtpReceiver{port: port}
		go func() {
			buf := make([]byte, 1500)
			var p rtp.Packet
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if p.Unmarshal(buf[:n]) != nil {
					continue
				}
				now := time.Now()
				r.mu.Lock()
				if r.packets > 0 {
					if p.SequenceNumber != r.lastSeq+1 {
						r.seqGaps++
					}
					if d := now.Sub(r.last); d > r.maxPause {
						r.maxPause = d
					}
				}
				r.packets++
				r.lastSeq, r.last = p.SequenceNumber, now
				r.mu.Unlock()
			}
		}()
		return r
	}
	t.Fatal("no free pair of UDP ports")
	return nil
}

func (r *rtpReceiver) stats() (packets, gaps int, pause time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.packets, r.seqGaps, r.maxPause
}

type apiStream struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	SessionID string `json:"sessionId"`
	Retries   int    `json:"retries"`
}

func getStreams(t *testing.T, base string) map[string]apiStream {
	t.Helper()
	resp, err := http.Get(base + "/api/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Streams []apiStream }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]apiStream{}
	for _, s := range body.Streams {
		out[s.Name] = s
	}
	return out
}

func waitStreams(t *testing.T, base string, ok func(map[string]apiStream) bool) map[string]apiStream {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := getStreams(t, base)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams never reached the expected state: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape fetches /metrics and parses it with Prometheus' text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// metricValue returns the value of the series of name whose labels include
// labels.
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

const serviceConfig = `http:
  listen: 127.0.0.1:0
webrtc:
  listen_ip: 127.0.0.1
sfu:
  listen_ip: 127.0.0.1
shutdown_timeout: 10s
streams:
  - name: cam-a
    source: file://%[1]s/demo.ivf?loop=true
  - name: cam-b
    source: file://%[1]s/demo.ogg?loop=true
    audio_track: %[2]s
record:
  dir: %[3]s
recordings:
  - name: rec-a
    stream: cam-a
    format: webm
    template: cam-a
forwards:
  - name: out-a
    stream: cam-a
    to: rtp://127.0.0.1:%[4]d
    sdp: %[3]s/out-a.sdp
`

// TestService runs `rtgate run` as systemd would, with a config file, a
// recording and a forward, and checks the sd_notify protocol, hot reload,
// /metrics and a graceful SIGTERM:
//   - READY after start, WATCHDOG pings at about half WATCHDOG_USEC;
//   - a change of one stream in the file restarts that stream only: the
//     other keeps its session and its forwarded packets never pause or skip
//     a sequence number; SIGHUP sends RELOADING then READY;
//   - an invalid edit is refused (counted in /metrics, logged), both streams
//     keep running;
//   - the forward's packet counter in /metrics matches what the receiver
//     got;
//   - SIGTERM finalizes the recording (ffprobe reads its duration) and the
//     process exits 0 within shutdown_timeout.
func TestService(t *testing.T) {
	cleanEnv(t)
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and no ffprobe: %v", err)
		}
		t.Skipf("no ffprobe: %v", err)
	}
	demo, _ := filepath.Abs("../../deploy/demo")
	dir := t.TempDir()
	recv := newRTPReceiver(t)
	cfgPath := filepath.Join(dir, "rtgate.yaml")
	write := func(content string) {
		t.Helper()
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfgPath); err != nil { // as editors and config managers do
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(serviceConfig, demo, "b-audio", dir, recv.port))

	sock := newNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock.path)
	t.Setenv("WATCHDOG_USEC", "600000")
	p := startSubprocess(t, "run", "-c", cfgPath)
	base := p.waitFor(t, regexp.MustCompile(`msg="rtgate running" http=(http://\S+)`))

	ready := sock.wait(t, 0, "READY=1")
	w1 := sock.wait(t, ready, "WATCHDOG=1")
	w2 := sock.wait(t, w1+1, "WATCHDOG=1")
	sock.mu.Lock()
	gap := sock.msgs[w2].at.Sub(sock.msgs[w1].at)
	sock.mu.Unlock()
	if gap < 150*time.Millisecond || gap > 500*time.Millisecond {
		t.Errorf("watchdog pings %v apart, want about 300 ms (half of WATCHDOG_USEC)", gap)
	}

	before := waitStreams(t, base, func(st map[string]apiStream) bool {
		return st["cam-a"].State == "live" && st["cam-b"].State == "live"
	})
	live := time.Now()
	// The forward delivers.
	for deadline := time.Now().Add(15 * time.Second); ; {
		if n, _, _ := recv.stats(); n > 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forward of cam-a sent nothing:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, gaps0, _ := recv.stats()

	// Change cam-b in the file: the watcher reloads.
	write(fmt.Sprintf(serviceConfig, demo, "b-audio-2", dir, recv.port))
	after := waitStreams(t, base, func(st map[string]apiStream) bool {
		return st["cam-b"].State == "live" && st["cam-b"].SessionID != before["cam-b"].SessionID
	})
	if after["cam-a"].SessionID != before["cam-a"].SessionID || after["cam-a"].Retries != before["cam-a"].Retries {
		t.Errorf("cam-a was touched by a reload that changed cam-b: before %+v, after %+v", before["cam-a"], after["cam-a"])
	}

	// SIGHUP: RELOADING, then READY (nothing changed).
	mark := len(sock.all())
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	sock.wait(t, sock.wait(t, mark, "RELOADING=1"), "READY=1")

	// An invalid edit: refused, visible, both streams keep running.
	write(fmt.Sprintf(serviceConfig, demo, "bad track name", dir, recv.port))
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.out.String(), "configuration reload refused") {
		if time.Now().After(deadline) {
			t.Fatalf("the invalid edit was not reported:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.out.String(), `streams[1].audio_track: \"bad track name\"`) {
		t.Errorf("the refusal does not name the key and value:\n%s", p.out.String())
	}
	time.Sleep(time.Second)
	final := getStreams(t, base)
	for _, name := range []string{"cam-a", "cam-b"} {
		if final[name].State != "live" || final[name].SessionID != after[name].SessionID {
			t.Errorf("%s after the invalid edit: %+v, want it live on %s", name, final[name], after[name].SessionID)
		}
	}
	fams := scrape(t, base)
	if v := metricValue(t, fams, "rtgate_config_reloads_total", map[string]string{"result": "failed"}); v != 1 {
		t.Errorf("rtgate_config_reloads_total{result=failed} = %v, want 1", v)
	}
	if v := metricValue(t, fams, "rtgate_config_reloads_total", map[string]string{"result": "ok"}); v < 2 {
		t.Errorf("rtgate_config_reloads_total{result=ok} = %v, want 2", v)
	}

	// cam-a's forwarded packets never paused or skipped through all this.
	n, gaps, pause := recv.stats()
	t.Logf("forward of cam-a: %d packets, %d sequence gaps, longest pause %v", n, gaps-gaps0, pause)
	if gaps != gaps0 || pause > 400*time.Millisecond {
		t.Errorf("cam-a's forward had %d sequence gaps and a pause of %v across the reloads", gaps-gaps0, pause)
	}
	// The metrics count what the receiver got: the forward's pulled packets
	// and the receiver's count, read around one scrape.
	n1, _, _ := recv.stats()
	fams = scrape(t, base)
	n2, _, _ := recv.stats()
	var out []byte
	pulled := metricValue(t, fams, "rtgate_pull_packets_total", map[string]string{"name": "forward/out-a"})
	if pulled < float64(n1) || pulled > float64(n2)+30 {
		t.Errorf("rtgate_pull_packets_total of the forward = %v; the receiver had %d..%d", pulled, n1, n2)
	}

	// SIGTERM during the recording: finalized, exit 0 in time. The steps
	// above may take under 2 s (a CI run recorded 1.93 s), and the
	// recording starts at the demo file's next keyframe (1 s apart) after
	// the pull: 4.5 s after the streams went live it holds 3 s or more.
	time.Sleep(time.Until(live.Add(4500 * time.Millisecond)))
	mark = len(sock.all())
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("SIGTERM took %v, more than shutdown_timeout", took)
	}
	sock.wait(t, mark, "STOPPING=1")
	out, err = exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
		filepath.Join(dir, "cam-a.webm")).CombinedOutput()
	dur, perr := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || perr != nil || dur < 2 {
		t.Errorf("the recording after SIGTERM: ffprobe %v: %s", err, out)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*.recording")); len(m) > 0 {
		t.Errorf("crash markers left after a clean stop: %v", m)
	}
}
