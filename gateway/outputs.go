package gateway

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record"
	"github.com/rtgate/rtgate/bridge/record/container"
	"github.com/rtgate/rtgate/bridge/rtpudp"
	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/metrics"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/supervise"
)

// Kinds of output pipeline, as the supervisor, the API and the metrics
// name them.
const (
	KindRecording = config.KindRecording
	KindForward   = config.KindForward
)

// output is a recording or a forward: a pull out of the SFU into a sink
// (a recorder or an RTP/UDP sender). The sink outlives the pull's
// restarts, so a recording continues in the same file across them; it is
// closed (files finalized) when the output is removed or the daemon stops.
type output struct {
	kind, name string
	pull       *pull.Pull
	sink       bridge.Sink
	rec        *record.Recorder // recordings
	fwd        *rtpudp.Sender   // forwards
	// api builds the pull's PeerConnections, on a UDP port of its own: the
	// SFU tells sessions apart by the peer's address.
	api *peer.API

	closeOnce sync.Once
	closeErr  error
}

// close closes the sink (finalizing files) and the pull's UDP port, once.
func (o *output) close() error {
	o.closeOnce.Do(func() {
		var errs []error
		if err := o.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", o.kind, o.name, err))
		}
		if err := o.api.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: close its UDP port: %w", o.kind, o.name, err))
		}
		o.closeErr = errors.Join(errs...)
	})
	return o.closeErr
}

// outputs are the daemon's recordings and forwards, each run by the
// daemon's supervisor group, which restarts its pull with backoff.
type outputs struct {
	mu   sync.Mutex
	byID map[[2]string]*output
	// repaired holds the recording directories this process finalized
	// crash leftovers in (repairOnce).
	repaired map[string]bool
}

func newOutputs() *outputs {
	return &outputs{byID: map[[2]string]*output{}, repaired: map[string]bool{}}
}

// repairOnce finalizes what a crash left in dir the first time this
// process records there: at startup for record.dir and the configured
// directories, and for a directory a reload or the control API brings
// later (runtime recordings are not persisted, so a crash leaves their
// files where no configured recording points). Live recordings are safe:
// RepairDir skips a file whose marker a recorder holds locked.
func (d *Daemon) repairOnce(dir string) {
	if dir == "" {
		return
	}
	dir = filepath.Clean(dir)
	g := d.outputs
	g.mu.Lock()
	done := g.repaired[dir]
	g.repaired[dir] = true
	g.mu.Unlock()
	if done {
		return
	}
	repaired, err := record.RepairDir(dir, d.log.With("component", "record"))
	if err != nil {
		d.log.Warn("repairing recordings left by a crash", "dir", dir, "err", err)
	}
	if len(repaired) > 0 {
		d.log.Info("finalized recordings left by a crash", "dir", dir, "files", repaired)
	}
}

// get returns the output of kind and name.
func (g *outputs) get(kind, name string) (*output, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	o, ok := g.byID[[2]string{kind, name}]
	return o, ok
}

// remove forgets an output.
func (g *outputs) remove(o *output) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byID[[2]string{o.kind, o.name}] == o {
		delete(g.byID, [2]string{o.kind, o.name})
	}
}

// streamRef resolves a local stream by name each time it is asked, so a
// recording of a stream that a WHIP publisher has yet to create waits for
// it, and one of a stream that is replaced follows the new one.
type streamRef struct {
	reg  *registry
	name string
}

func (r streamRef) Published() (string, []string, bool) {
	e, ok := r.reg.get(r.name)
	if !ok {
		return "", nil, false
	}
	return e.wish.Published()
}

// pullOptions are the parts of a pull that a recording and a forward
// share.
func (d *Daemon) pullOptions(kind, name, stream, session string, tracks []string, sink bridge.Sink, api *peer.API) pull.Options {
	o := pull.Options{
		Name:            kind + " " + name,
		Client:          d.rt,
		API:             api,
		Sink:            sink,
		Tracks:          tracks,
		NotFoundTimeout: d.cfg.Record.NotFoundTimeout,
		Logger:          d.log.With("component", "pull", kind, name),
	}
	if stream != "" {
		o.Stream, o.StreamName = streamRef{d.registry, stream}, stream
	} else {
		o.Session = session
	}
	return o
}

// newRecording makes a recording's recorder and pull; nothing runs yet.
func (d *Daemon) newRecording(rc config.Recording) (*output, error) {
	rc = rc.Effective(d.cfg.Record)
	d.repairOnce(rc.Dir)
	format := container.Format("")
	if rc.Format != "auto" {
		f, err := container.ParseFormat(rc.Format)
		if err != nil {
			return nil, fmt.Errorf("recording %s: %w", rc.Name, err)
		}
		format = f
	}
	rec, err := record.New(record.Options{
		Dir: rc.Dir, Template: rc.Template, Format: format,
		Stream: cmp.Or(rc.Stream, rc.Name), Session: rc.Session,
		SegmentDuration: rc.SegmentDuration, SegmentSize: rc.SegmentSize,
		Reorder: d.cfg.Record.Reorder,
		MaxAge:  d.cfg.Record.MaxAge, MaxTotalSize: d.cfg.Record.MaxTotalSize,
		Logger: d.log.With("component", "record", "recording", rc.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("recording %s: %w", rc.Name, err)
	}
	api, err := d.sfuAPI()
	if err != nil {
		_ = rec.Close()
		return nil, fmt.Errorf("recording %s: %w", rc.Name, err)
	}
	p, err := pull.New(d.pullOptions(KindRecording, rc.Name, rc.Stream, rc.Session, rc.Tracks, rec, api))
	if err != nil {
		_ = rec.Close()
		_ = api.Close()
		return nil, fmt.Errorf("recording %s: %w", rc.Name, err)
	}
	return &output{kind: KindRecording, name: rc.Name, pull: p, sink: rec, rec: rec, api: api}, nil
}

// newForward makes a forward's sender (binding its sockets) and pull.
func (d *Daemon) newForward(fc config.Forward) (*output, error) {
	s, err := rtpudp.NewSender(fc.To, rtpudp.SenderOptions{
		SDPFile: fc.SDPPath(d.cfg.Record), Name: fc.Name,
		Logger: d.log.With("component", "forward", "forward", fc.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("forward %s: %w", fc.Name, err)
	}
	api, err := d.sfuAPI()
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("forward %s: %w", fc.Name, err)
	}
	p, err := pull.New(d.pullOptions(KindForward, fc.Name, fc.Stream, fc.Session, fc.Tracks, s, api))
	if err != nil {
		_ = s.Close()
		_ = api.Close()
		return nil, fmt.Errorf("forward %s: %w", fc.Name, err)
	}
	return &output{kind: KindForward, name: fc.Name, pull: p, sink: s, fwd: s, api: api}, nil
}

// openOutputs finalizes what a crash left in the recordings directories,
// then makes the configured recordings and forwards.
func (d *Daemon) openOutputs() error {
	d.outputs = newOutputs()
	// record.dir too: a control-API recording may have used it before
	// the restart, though no configured recording does.
	d.repairOnce(d.cfg.Record.Dir)
	for _, rc := range d.cfg.Recordings {
		o, err := d.newRecording(rc)
		if err != nil {
			return err
		}
		d.outputs.put(o)
	}
	for _, fc := range d.cfg.Forwards {
		o, err := d.newForward(fc)
		if err != nil {
			return err
		}
		d.outputs.put(o)
	}
	return nil
}

func (g *outputs) put(o *output) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byID[[2]string{o.kind, o.name}] = o
}

func (g *outputs) list() []*output {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*output, 0, len(g.byID))
	for _, o := range g.byID {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b *output) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name))
	})
	return out
}

// start runs an output under the supervisor.
func (d *Daemon) startOutput(o *output) error {
	return d.group.Add(o.pull, supervise.Options{
		Name: o.name, Kind: o.kind,
		Logger: d.log.With("component", "supervise", o.kind, o.name),
	})
}

// startOutputs runs every output.
func (d *Daemon) startOutputs() {
	for _, o := range d.outputs.list() {
		if err := d.startOutput(o); err != nil {
			d.log.Error("start output", "kind", o.kind, "name", o.name, "err", err)
		}
	}
}

// closeSinks closes every output's sink and UDP port (each once).
func (g *outputs) closeSinks() error {
	var errs []error
	for _, o := range g.list() {
		errs = append(errs, o.close())
	}
	return errors.Join(errs...)
}

// OutputStatus is a recording or a forward for the API: its supervisor's
// state, its pull, and what its sink did.
type OutputStatus struct {
	Name      string              `json:"name"`
	Kind      string              `json:"kind"`
	State     supervise.State     `json:"state"`
	Since     time.Time           `json:"since"`
	LastError string              `json:"lastError,omitempty"`
	Retries   int                 `json:"retries"`
	Pull      pull.Status         `json:"pull"`
	Recording *RecordingStatus    `json:"recording,omitempty"`
	Forward   *rtpudp.SenderStats `json:"forward,omitempty"`
}

// RecordingStatus is what a recorder wrote.
type RecordingStatus struct {
	Current     string                 `json:"current,omitempty"`
	Segments    int                    `json:"segments"`
	Bytes       int64                  `json:"bytes"`
	Seconds     float64                `json:"seconds"`
	Failing     bool                   `json:"failing"`
	LastError   string                 `json:"lastError,omitempty"`
	WriteErrors uint64                 `json:"writeErrors"`
	Tracks      []RecordingTrackStatus `json:"tracks"`
}

// RecordingTrackStatus is one recorded track's figures.
type RecordingTrackStatus struct {
	Name     string `json:"name"`
	Codec    string `json:"codec"`
	Packets  uint64 `json:"packets"`
	Lost     uint64 `json:"lost"`
	Repaired uint64 `json:"repaired"`
	Frames   uint64 `json:"frames"`
	// Dropped counts frames not written: incomplete, waiting for a
	// keyframe, or dropped for other reasons (see record.TrackStats).
	Dropped uint64 `json:"dropped"`
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// status returns the output's status.
func (d *Daemon) outputStatus(o *output) OutputStatus {
	st := OutputStatus{Name: o.name, Kind: o.kind, Pull: o.pull.Status(), State: supervise.StateStopped}
	if ss, ok := d.group.Status(o.kind, o.name); ok {
		st.State, st.Since, st.LastError, st.Retries = ss.State, ss.Since, ss.LastError, ss.Retries
	}
	if o.rec != nil {
		rs := o.rec.Stats()
		r := &RecordingStatus{
			Current: rs.Current, Segments: rs.Segments, Bytes: rs.Bytes, Seconds: rs.Duration.Seconds(),
			Failing: rs.Failing, LastError: errText(rs.LastError), WriteErrors: rs.WriteErrors,
			Tracks: []RecordingTrackStatus{},
		}
		for _, t := range rs.Tracks {
			if t.Removed {
				continue
			}
			r.Tracks = append(r.Tracks, RecordingTrackStatus{
				Name: t.Name, Codec: t.MimeType, Packets: t.Packets, Lost: t.Lost, Repaired: t.Repaired,
				Frames: t.Frames, Dropped: t.FramesIncomplete + t.FramesWaitingKey + t.FramesDropped,
			})
		}
		st.Recording = r
	}
	if o.fwd != nil {
		fs := o.fwd.Stats()
		st.Forward = &fs
	}
	return st
}

// Outputs returns the status of every output of kind (KindRecording or
// KindForward), by name.
func (d *Daemon) Outputs(kind string) []OutputStatus {
	out := []OutputStatus{}
	if d.outputs == nil {
		return out
	}
	for _, o := range d.outputs.list() {
		if o.kind == kind {
			out = append(out, d.outputStatus(o))
		}
	}
	return out
}

// handleOutputs serves GET /api/recordings and GET /api/forwards.
func (d *Daemon) handleOutputs(kind, key string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{key: d.Outputs(kind)})
	}
}

// pullMetrics converts every output's pulled tracks for /metrics.
func (d *Daemon) pullMetrics() []metrics.PullTrack {
	var out []metrics.PullTrack
	if d.outputs == nil {
		return out
	}
	for _, o := range d.outputs.list() {
		for _, t := range o.pull.Status().Tracks {
			out = append(out, metrics.PullTrack{
				Name: o.kind + "/" + o.name, Track: t.Name, Kind: t.Kind,
				Packets: t.Packets, Bytes: t.Bytes, Lost: t.Lost, PLIs: t.PLIs, NACKs: t.NACKs,
				Jitter: time.Duration(t.JitterMs * float64(time.Millisecond)),
			})
		}
	}
	return out
}

// sessionCounts counts the open sessions for /metrics: WHIP publishers,
// WHEP viewers, and the embedded SFU's sessions and subscriptions.
func (d *Daemon) sessionCounts() map[string]int {
	out := map[string]int{}
	if d.wish != nil {
		out["whip"], out["whep"] = d.wish.Counts()
	}
	if d.sfu != nil {
		out["sfu"] = d.sfu.Sessions()
		subs := 0
		for _, t := range d.sfu.Tracks() {
			subs += t.Subscribers
		}
		out["sfu_subscriptions"] = subs
	}
	return out
}

// recordingMetrics converts every recording's figures for /metrics (one
// row per recording: bytes, segments and errors are the file's).
func (d *Daemon) recordingMetrics() []metrics.Recording {
	var out []metrics.Recording
	if d.outputs == nil {
		return out
	}
	for _, o := range d.outputs.list() {
		if o.rec == nil {
			continue
		}
		st := o.rec.Stats()
		out = append(out, metrics.Recording{Name: o.name, Track: "all",
			Bytes: uint64(st.Bytes), Segments: uint64(st.Segments), Errors: st.WriteErrors})
	}
	return out
}
