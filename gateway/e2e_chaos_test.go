//go:build linux

package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/supervise"
)

// chaosSFUEnv makes the test binary an `rtgate sfu` (TestChaosSFUProcess)
// listening on the address it holds.
const chaosSFUEnv = "RTGATE_CHAOS_SFU_LISTEN"

// TestChaosSFUProcess is not a test: TestChaos re-executes the test binary
// with chaosSFUEnv set to run the embedded SFU on its own HTTP server
// (gateway.SFUServer, what `rtgate sfu` runs) in a separate process that it
// can kill -9 and start again on the same port.
func TestChaosSFUProcess(t *testing.T) {
	addr := os.Getenv(chaosSFUEnv)
	if addr == "" {
		t.Skip("helper process of TestChaos (runs only with " + chaosSFUEnv + " set)")
	}
	cfg := loopbackConfig()
	cfg.SFU.Listen = addr
	cfg.Realtime.AppID, cfg.Realtime.AppSecret = "test", rtctest.Secret
	cfg.SFU.ConnectWait = 2 * time.Second
	cfg.SFU.FirstPacketWait = time.Second
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := NewSFUServer(cfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos sfu:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Should the test binary die without killing us, do not outlive it.
	ppid := os.Getppid()
	go func() {
		for ctx.Err() == nil && os.Getppid() == ppid {
			time.Sleep(200 * time.Millisecond)
		}
		stop()
	}()
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chaos sfu:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// chaosDuration is how long TestChaos injects faults: RTGATE_CHAOS_DURATION,
// else 60 s (10 s under -short).
func chaosDuration(t *testing.T) time.Duration {
	if s := os.Getenv("RTGATE_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("RTGATE_CHAOS_DURATION=%q: want a positive duration such as 60s", s)
		}
		return d
	}
	if testing.Short() {
		return 10 * time.Second
	}
	return 60 * time.Second
}

// chaosProc is a child process the test starts, kills with SIGKILL and
// starts again: an ffmpeg RTP sender or the SFU. Its output goes to a file
// (no copying goroutine in this process, so goroutine counts stay put).
type chaosProc struct {
	name string
	path string
	args []string
	env  []string
	log  string

	cmd  *exec.Cmd
	done chan struct{}
	// downSince is when it was killed; zero while it runs.
	downSince time.Time
	kills     int
}

func (p *chaosProc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done, p.downSince = cmd, done, time.Time{}
}

func (p *chaosProc) running() bool { return p.cmd != nil && p.downSince.IsZero() }

// kill sends SIGKILL and waits for the process to be reaped.
func (p *chaosProc) kill() {
	if p.cmd == nil || !p.downSince.IsZero() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.downSince = time.Now()
	p.kills++
}

// exitedEarly reports a process that died without being killed.
func (p *chaosProc) exitedEarly() bool {
	if !p.running() {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// chaosSample is what the monitor saw of one stream at one time.
type chaosSample struct {
	at      time.Time
	sup     supervise.State // the supervisor's state
	retries int             // the supervisor's restarts so far
	stalled bool            // its last restart was the media watchdog's
	pub     string          // the publication's state in /api/streams
	session string
}

// chaosMonitor polls GET /api/streams and the supervisor every 100 ms and
// keeps what it saw, per stream.
type chaosMonitor struct {
	mu      sync.Mutex
	samples map[string][]chaosSample
	errs    int
	stop    chan struct{}
	done    chan struct{}
}

func startChaosMonitor(d *Daemon) *chaosMonitor {
	m := &chaosMonitor{samples: map[string][]chaosSample{}, stop: make(chan struct{}), done: make(chan struct{})}
	// No keep-alive: no idle connection (and its goroutines) outlives a poll.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	url := httpURL(d.Addr()) + "/api/streams"
	go func() {
		defer close(m.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			var body struct {
				Streams []StreamStatus `json:"streams"`
			}
			resp, err := client.Get(url)
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
			}
			now := time.Now()
			m.mu.Lock()
			if err != nil {
				m.errs++
			}
			for _, st := range body.Streams {
				sup, _ := d.group.Status(config.KindStream, st.Name)
				m.samples[st.Name] = append(m.samples[st.Name], chaosSample{at: now, sup: sup.State, retries: sup.Retries,
					stalled: strings.HasPrefix(sup.LastError, supervise.ErrStalled.Error()), pub: st.State, session: st.SessionID})
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *chaosMonitor) close() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// seen returns the samples of stream between from and to.
func (m *chaosMonitor) seen(stream string, from, to time.Time) []chaosSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []chaosSample
	for _, s := range m.samples[stream] {
		if !s.at.Before(from) && !s.at.After(to) {
			out = append(out, s)
		}
	}
	return out
}

// fdCount is the number of open file descriptors of this process.
func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// fdList describes every open file descriptor (for a leak report).
func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fmt.Fprintf(&b, "  fd %s -> %s\n", e.Name(), target)
	}
	return b.String()
}

func goroutineDump() string {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return b.String()
}

// waitCounts polls until at most maxG goroutines and maxFD descriptors are
// open, for up to within (pion closes things asynchronously). On timeout it
// fails the test with every goroutine's stack and every descriptor.
func waitCounts(t *testing.T, what string, maxG, maxFD int, within time.Duration) (g, fds int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		g, fds = runtime.NumGoroutine(), fdCount()
		if g <= maxG && (maxFD < 0 || fds <= maxFD) {
			return g, fds
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %d goroutines (at most %d wanted), %d open fds (at most %d wanted) after %v\n"+
				"open fds:\n%s\ngoroutines:\n%s", what, g, maxG, fds, maxFD, within, fdList(), goroutineDump())
			return g, fds
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestChaos runs the daemon in this process with three RTP/UDP streams fed
// by ffmpeg processes, a recording and a forward of one of them, and the
// SFU in a separate process (`rtgate sfu`, the test binary re-executed),
// and for RTGATE_CHAOS_DURATION (60 s; 10 s with -short) kills the ffmpeg
// senders and the SFU with SIGKILL at random and starts them again (the SFU
// on the same port); last, everything dies at once. It shows that:
//   - a sender's death is noticed (media_watchdog 2 s: the stream's
//     supervisor restarts it) and the stream is live again soon after the
//     sender's restart; after an SFU restart every stream publishes on a
//     new session;
//   - after the last fault every stream, the recording and the forward are
//     live again on new sessions within 30 s, and media flows again end to
//     end: the forward's receiver gets RTP, the recording writes frames
//     (and ffprobe reads them from the file);
//   - goroutines and open descriptors come back to what they were when
//     everything was first live (+5 goroutines, +3 fds), and after the
//     daemon stops both are what they were before it started.
func TestChaos(t *testing.T) {
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	ffprobe := rtctest.RequireTool(t, "ffprobe")
	dur := chaosDuration(t)
	const (
		watchdog        = 2 * time.Second
		recoverDeadline = 30 * time.Second
		slackG, slackFD = 5, 3
	)
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("chaos for %v, seed %d", dur, seed)

	// The SFU: this test binary in SFU mode, on a fixed loopback port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sfuAddr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sfuProc := &chaosProc{name: "sfu", path: self, args: []string{"-test.run=^TestChaosSFUProcess$", "-test.timeout=0"},
		env: []string{chaosSFUEnv + "=" + sfuAddr}, log: filepath.Join(dir, "sfu.log")}
	procs := []*chaosProc{sfuProc}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
			if t.Failed() {
				t.Logf("%s's log (the end):\n%s", p.name, readTail(p.log))
			}
		}
	})
	sfuProc.start(t)
	waitHTTP(t, "http://"+sfuAddr+"/healthz", 15*time.Second)

	// The senders: ffmpeg test sources, VP8 or Opus over RTP, paced (-re)
	// and bounded in time should the test die without killing them.
	limit := fmt.Sprint(int((dur + 2*time.Minute).Seconds()))
	vp8 := func(size string, rate int) []string {
		return []string{"-re", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%s:rate=%d", size, rate), "-t", limit,
			"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-threads", "1", "-b:v", "300k",
			"-g", fmt.Sprint(rate), "-auto-alt-ref", "0", "-payload_type", "96"}
	}
	opus := []string{"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", limit,
		"-c:a", "libopus", "-b:a", "32k", "-ac", "2", "-frame_duration", "20", "-payload_type", "111"}
	streams := []struct {
		name, codec string
		enc         []string
	}{
		{"cam1", "vp8&pt=96", vp8("320x240", 30)},
		{"cam2", "vp8&pt=96", vp8("160x120", 15)},
		{"mic", "opus&pt=111", opus},
	}
	cfg := loopbackConfig()
	cfg.Realtime = config.Realtime{URL: "http://" + sfuAddr + "/v1", AppID: "test", AppSecret: rtctest.Secret}
	cfg.MediaWatchdog = watchdog
	cfg.Record.Dir = filepath.Join(dir, "rec")
	senders := map[string]*chaosProc{}
	for _, s := range streams {
		port := freePort(t)
		cfg.Streams = append(cfg.Streams, config.Stream{Name: s.name, Source: fmt.Sprintf("rtp://127.0.0.1:%d?codec=%s", port, s.codec)})
		args := append([]string{"-v", "error", "-nostdin"}, s.enc...)
		args = append(args, "-f", "rtp", fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", port))
		p := &chaosProc{name: "ffmpeg " + s.name, path: ffmpeg, args: args, log: filepath.Join(dir, s.name+".log")}
		senders[s.name] = p
		procs = append(procs, p)
	}
	fwdRTP, fwdRTCP := udpPair(t)
	defer fwdRTP.Close()
	defer fwdRTCP.Close()
	cfg.Recordings = []config.Recording{{Name: "cam1-rec", Stream: "cam1"}}
	cfg.Forwards = []config.Forward{{Name: "cam1-fwd", Stream: "cam1", To: fmt.Sprintf("rtp://127.0.0.1:%d", fwdRTP.LocalAddr().(*net.UDPAddr).Port)}}

	// The forward's receiver: counts RTP packets and when the last came.
	var fwdPackets atomic.Uint64
	var fwdLast atomic.Int64
	fwdDone := make(chan struct{})
	go func() {
		defer close(fwdDone)
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			n, err := fwdRTP.Read(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) == nil && p.PayloadType == 96 {
				fwdPackets.Add(1)
				fwdLast.Store(time.Now().UnixNano())
			}
		}
	}()
	defer func() { fwdRTP.Close(); <-fwdDone }()

	for _, p := range senders {
		p.start(t)
	}

	// Goroutines before the daemon: the test's own (process waiters, the
	// forward's receiver) and whatever earlier tests left winding down.
	time.Sleep(500 * time.Millisecond)
	preG, preFD := runtime.NumGoroutine(), fdCount()

	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	stopDaemon := runInBackground(t, d.Run)
	<-d.Started()
	mon := startChaosMonitor(d)
	defer mon.close()

	names := make([]string, len(streams))
	for i, s := range streams {
		names[i] = s.name
	}
	// sessions returns every Realtime session the daemon uses now: the
	// streams' publisher sessions, the pulls' subscriber sessions and the
	// publisher sessions their tracks come from.
	sessions := func() map[string]bool {
		ids := map[string]bool{}
		for _, st := range d.StreamStatuses() {
			ids[st.SessionID] = true
		}
		for _, kind := range []string{KindRecording, KindForward} {
			for _, o := range d.Outputs(kind) {
				ids[o.Pull.SessionID] = true
				for _, tr := range o.Pull.Tracks {
					ids[tr.Session] = true
				}
			}
		}
		delete(ids, "")
		return ids
	}
	// allLive reports whether every stream is live (supervisor and
	// publication), and the recording's and the forward's pulls, none on a
	// session of old (a state from before an SFU restart can still read
	// live until ICE notices), and says what is not.
	allLive := func(old map[string]bool) (bool, string) {
		var not []string
		for _, st := range d.StreamStatuses() {
			sup, _ := d.group.Status(config.KindStream, st.Name)
			if st.State != publish.StateLive || sup.State != supervise.StateLive || old[st.SessionID] {
				not = append(not, fmt.Sprintf("stream %s: publication %s on session %s, supervisor %s (%s)",
					st.Name, st.State, st.SessionID, sup.State, st.LastError))
			}
		}
		for _, kind := range []string{KindRecording, KindForward} {
			for _, o := range d.Outputs(kind) {
				stale := old[o.Pull.SessionID]
				for _, tr := range o.Pull.Tracks {
					stale = stale || old[tr.Session]
				}
				if o.State != supervise.StateLive || o.Pull.State != pull.StateLive || stale {
					not = append(not, fmt.Sprintf("%s %s: supervisor %s, pull %s on session %s (%s)",
						kind, o.Name, o.State, o.Pull.State, o.Pull.SessionID, o.Pull.LastError))
				}
			}
		}
		return len(not) == 0, strings.Join(not, "; ")
	}
	waitAllLive := func(what string, old map[string]bool, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			ok, why := allLive(old)
			if ok {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s: not everything live after %v: %s", what, within, why)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// mediaFlows waits until the forward's receiver got packets and the
	// recording wrote frames after now.
	mediaFlows := func(what string, within time.Duration) {
		t.Helper()
		since := time.Now()
		pkts, frames := fwdPackets.Load(), recordedFrames(d)
		for {
			if fwdPackets.Load() > pkts+30 && fwdLast.Load() > since.UnixNano() && recordedFrames(d) > frames+15 {
				return
			}
			if time.Since(since) > within {
				t.Fatalf("%s: no media through after %v: forward got %d packets (%d before), recording %d frames (%d before)",
					what, within, fwdPackets.Load(), pkts, recordedFrames(d), frames)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	took := waitAllLive("start", nil, recoverDeadline)
	mediaFlows("start", 15*time.Second)
	// Let the connections settle (DTLS and ICE goroutines of the set-up end).
	time.Sleep(2 * time.Second)
	baseG, baseFD := runtime.NumGoroutine(), fdCount()
	t.Logf("everything live %v after start; baseline %d goroutines, %d fds (%d goroutines before the daemon)",
		took.Round(time.Millisecond), baseG, baseFD, preG)

	// The faults. Senders die every 6 to 12 s for 3 to 5 s (more than the
	// watchdog), not in the last 10 s; the SFU dies every 14 to 20 s for
	// 0.5 to 2 s, not in the last 20 s: each recovers before the last
	// fault, where everything dies at once. (With -short the windows
	// overlap: a fault's checks are then left to the next one's.)
	type fault struct {
		p            *chaosProc
		kill, revive time.Time
	}
	var faults []fault
	start := time.Now()
	end := start.Add(dur)
	t.Logf("chaos starts at %s", start.UTC().Format("15:04:05.000"))
	next := map[*chaosProc]time.Time{}
	downFor := map[*chaosProc]time.Duration{}
	for _, p := range senders {
		next[p] = start.Add(time.Duration(1+rng.IntN(4)) * time.Second)
	}
	next[sfuProc] = start.Add(min(time.Duration(5+rng.IntN(4))*time.Second, dur/3))
	lastSFUKill := end.Add(-min(20*time.Second, dur/2))
	lastSenderKill := end.Add(-min(10*time.Second, dur/2))
	for time.Now().Before(end) {
		now := time.Now()
		for _, p := range procs {
			if p.exitedEarly() {
				t.Fatalf("%s exited by itself; its log:\n%s", p.name, readTail(p.log))
			}
			switch {
			case p.running() && !now.Before(next[p]):
				if (p == sfuProc && now.After(lastSFUKill)) || now.After(lastSenderKill) {
					next[p] = end.Add(time.Hour)
					continue
				}
				p.kill()
				if p == sfuProc {
					downFor[p] = time.Duration(500+rng.IntN(1500)) * time.Millisecond
				} else {
					downFor[p] = time.Duration(3000+rng.IntN(2000)) * time.Millisecond
				}
				faults = append(faults, fault{p: p, kill: p.downSince})
			case !p.running() && now.Sub(p.downSince) >= downFor[p]:
				p.start(t)
				faults[slices.IndexFunc(faults, func(f fault) bool { return f.p == p && f.revive.IsZero() })].revive = time.Now()
				if p == sfuProc {
					next[p] = time.Now().Add(time.Duration(14+rng.IntN(7)) * time.Second)
				} else {
					next[p] = time.Now().Add(time.Duration(6+rng.IntN(7)) * time.Second)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The last fault: everything dies at once, for longer than the
	// watchdog, and comes back at once. Then the faults stop.
	old := sessions()
	for _, p := range procs {
		if p.running() {
			p.kill()
			faults = append(faults, fault{p: p, kill: p.downSince})
		}
	}
	time.Sleep(watchdog + 2500*time.Millisecond)
	for _, p := range procs {
		p.start(t)
		faults[slices.IndexFunc(faults, func(f fault) bool { return f.p == p && f.revive.IsZero() })].revive = time.Now()
	}
	lastFault := time.Now()
	for _, p := range procs {
		var at []string
		for _, f := range faults {
			if f.p == p {
				at = append(at, fmt.Sprintf("%.1fs-%.1fs", f.kill.Sub(start).Seconds(), f.revive.Sub(start).Seconds()))
			}
		}
		t.Logf("%s: killed %d times, down %s", p.name, p.kills, strings.Join(at, " "))
	}

	took = waitAllLive("after the chaos", old, recoverDeadline)
	t.Logf("everything live %v after the last fault (all processes killed at once)", took.Round(time.Millisecond))
	mediaFlows("after the chaos", 15*time.Second)

	// What the monitor saw around each fault, up to the next fault of the
	// same process.
	checkEnd := time.Now()
	var worstSender, worstSFU time.Duration
	for i, f := range faults {
		nextKill := checkEnd
		for _, g := range faults[i+1:] {
			if g.p == f.p {
				nextKill = g.kill
				break
			}
		}
		at := f.revive.Sub(start).Round(time.Millisecond)
		if f.p == sfuProc {
			// Every stream publishes on a new session after an SFU restart.
			for _, name := range names {
				before := map[string]bool{}
				for _, s := range mon.seen(name, start.Add(-time.Hour), f.kill) {
					before[s.session] = true
				}
				after := mon.seen(name, f.revive, nextKill)
				i := slices.IndexFunc(after, func(s chaosSample) bool {
					return s.pub == publish.StateLive && s.session != "" && !before[s.session]
				})
				switch {
				case i < 0 && nextKill.Sub(f.revive) < 15*time.Second:
					// ICE takes ~8 s to notice a dead SFU: the next fault
					// came first, and its own check covers the recovery.
					t.Logf("stream %s: SFU restart at %v superseded by the next fault %v later", name, at,
						nextKill.Sub(f.revive).Round(time.Millisecond))
					continue
				case i < 0:
					t.Errorf("stream %s: no live publication on a new session within %v of the SFU restart at %v",
						name, nextKill.Sub(f.revive).Round(time.Millisecond), at)
					continue
				}
				worstSFU = max(worstSFU, after[i].at.Sub(f.revive))
			}
			continue
		}
		name := strings.TrimPrefix(f.p.name, "ffmpeg ")
		if f.revive.Sub(f.kill) >= watchdog+time.Second {
			// The watchdog notices the dead sender: the supervisor restarts
			// the stream (its retrying state may last less than a poll:
			// count the restarts).
			during := mon.seen(name, f.kill.Add(-200*time.Millisecond), f.revive.Add(time.Second))
			retried := len(during) > 0 && slices.ContainsFunc(during, func(s chaosSample) bool {
				return s.retries > during[0].retries && s.stalled
			})
			if !retried {
				t.Errorf("stream %s: sender killed at %v for %v, the supervisor never went retrying",
					name, f.kill.Sub(start).Round(time.Millisecond), f.revive.Sub(f.kill).Round(time.Millisecond))
			}
		}
		// And the stream is live again (media counted in a run started
		// after the kill) soon after the sender came back.
		retriesAtKill := -1
		if before := mon.seen(name, start.Add(-time.Hour), f.kill); len(before) > 0 {
			retriesAtKill = before[len(before)-1].retries
		}
		after := mon.seen(name, f.revive, nextKill)
		i := slices.IndexFunc(after, func(s chaosSample) bool {
			return s.sup == supervise.StateLive && s.retries > retriesAtKill
		})
		switch {
		case i < 0 && nextKill.Sub(f.revive) < 5*time.Second:
			t.Logf("stream %s: sender restart at %v superseded by the next fault %v later", name, at,
				nextKill.Sub(f.revive).Round(time.Millisecond))
			continue
		case i < 0:
			t.Errorf("stream %s: not live again within %v of its sender's restart at %v",
				name, nextKill.Sub(f.revive).Round(time.Millisecond), at)
			continue
		}
		worstSender = max(worstSender, after[i].at.Sub(f.revive))
	}
	t.Logf("live again at most %v after a sender's restart, on a new session at most %v after the SFU's",
		worstSender.Round(time.Millisecond), worstSFU.Round(time.Millisecond))
	mon.mu.Lock()
	if mon.errs > 0 {
		t.Logf("GET /api/streams failed %d times", mon.errs)
	}
	mon.mu.Unlock()

	// Goroutines and descriptors back to the baseline.
	g, fds := waitCounts(t, "after the chaos", baseG+slackG, baseFD+slackFD, 20*time.Second)
	t.Logf("after the chaos: %d goroutines (baseline %d), %d fds (baseline %d); %v after the last fault",
		g, baseG, fds, baseFD, time.Since(lastFault).Round(time.Millisecond))

	// Stop the daemon: its goroutines all end.
	mon.close()
	if err := stopDaemon(); err != nil {
		t.Errorf("daemon Run: %v", err)
	}
	g, fds = waitCounts(t, "after the daemon stopped", preG, preFD, 20*time.Second)
	t.Logf("daemon stopped: %d goroutines, %d fds (%d and %d before it started)", g, fds, preG, preFD)

	// The recording is readable and has frames from after the chaos.
	files, _ := filepath.Glob(filepath.Join(cfg.Record.Dir, "cam1-2*")) // cam1-{start}.webm
	frames := 0
	for _, f := range files {
		out, err := exec.Command(ffprobe, "-v", "error", "-count_packets", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", f).Output()
		if err != nil {
			t.Errorf("ffprobe %s: %v", f, err)
			continue
		}
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &n); err != nil {
			t.Errorf("ffprobe %s: %q: %v", f, out, err)
		}
		frames += n
		t.Logf("recording %s: %d video packets", filepath.Base(f), n)
	}
	if frames < 30 {
		t.Errorf("the recordings %v hold %d video frames", files, frames)
	}
}

// recordedFrames is how many frames the recordings wrote.
func recordedFrames(d *Daemon) uint64 {
	var n uint64
	for _, o := range d.Outputs(KindRecording) {
		if o.Recording != nil {
			for _, tr := range o.Recording.Tracks {
				n += tr.Frames
			}
		}
	}
	return n
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %v: %v", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readTail returns the end of a log file.
func readTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
