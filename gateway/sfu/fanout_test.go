package sfu_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// continuity checks what one subscriber receives on one transceiver, packet
// by packet: every payload is one a source sent, byte for byte; sequence
// numbers go up by one with no gap; within a source the packets are
// consecutive (source index +1, timestamp +3000) and at a switch to another
// source (tracks/update) the timestamp moves on by one 20 ms step (1800),
// as the SFU rebases it.
type continuity struct {
	name     string
	n        int
	tag      string
	idx      uint32
	seq      uint16
	ts       uint32
	switches int
	counts   map[string]int
}

func (c *continuity) check(p *rtp.Packet) error {
	if len(p.Payload) < 7 {
		return fmt.Errorf("%s: packet %d: payload of %d bytes", c.name, c.n, len(p.Payload))
	}
	idx := binary.BigEndian.Uint32(p.Payload)
	tag := string(p.Payload[4:7])
	if string(p.Payload) != string(rtctest.PayloadFor(tag, idx)) {
		return fmt.Errorf("%s: packet %d (seq %d): payload is not what source %q sent as its packet %d", c.name, c.n, p.SequenceNumber, tag, idx)
	}
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[tag]++
	if c.n > 0 {
		if p.SequenceNumber != c.seq+1 {
			return fmt.Errorf("%s: packet %d: sequence number %d after %d (%s #%d after %s #%d)",
				c.name, c.n, p.SequenceNumber, c.seq, tag, idx, c.tag, c.idx)
		}
		switch {
		case tag == c.tag && (idx != c.idx+1 || p.Timestamp != c.ts+3000):
			return fmt.Errorf("%s: packet %d: %s #%d ts %d after #%d ts %d: a packet of the source is missing or out of order",
				c.name, c.n, tag, idx, p.Timestamp, c.idx, c.ts)
		case tag != c.tag && p.Timestamp != c.ts+1800:
			return fmt.Errorf("%s: packet %d: switch from %s to %s: timestamp %d after %d, want +1800",
				c.name, c.n, c.tag, tag, p.Timestamp, c.ts)
		case tag != c.tag:
			c.switches++
		}
	}
	c.n++
	c.tag, c.idx, c.seq, c.ts = tag, idx, p.SequenceNumber, p.Timestamp
	return nil
}

// readUntil feeds a sink's packets to c until done says so, or fails.
func readUntil(s *rtctest.Sink, c *continuity, d time.Duration, done func(*continuity) bool) error {
	deadline := time.After(d)
	for !done(c) {
		select {
		case p, ok := <-s.Pkts:
			if !ok {
				return fmt.Errorf("%s: track ended after %d packets", c.name, c.n)
			}
			if err := c.check(p); err != nil {
				return err
			}
		case <-deadline:
			return fmt.Errorf("%s: %d packets (%v) within %s", c.name, c.n, c.counts, d)
		}
	}
	return nil
}

// TestFanOutManySubscribers: one published track fanned out to 40 real
// pion subscribers over loopback, which takes the shard workers on a
// machine with two cores or more. Every subscriber gets every packet from
// its first on, intact and in order; then half of them switch to another
// track (tracks/update) and their sequence numbers and timestamps go on
// without a jump while the other half keep getting the first track.
func TestFanOutManySubscribers(t *testing.T) {
	const subs = 40
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, _ := publisherOf(t, e, "one", "two")
	type sub struct {
		id    string
		mid   string
		sink  *rtctest.Sink
		check *continuity
	}
	var all []*sub
	for i := range subs {
		id, p, pulled := subscriber(t, e, sid, "one")
		all = append(all, &sub{id: id, mid: pulled[0].Mid, sink: p.NextTrack(), check: &continuity{name: fmt.Sprintf("subscriber %d", i)}})
	}
	_, subscribers, _ := sfu.FanOut(e.SFU, sid, "one")
	if n := subscribers(); n != subs {
		t.Fatalf("%d subscribers bound, want %d", n, subs)
	}
	if sfu.Shards() > 1 && !sfu.Sharded(e.SFU, sid, "one") {
		t.Errorf("%d subscribers with %d shards: the shard workers never ran", subs, sfu.Shards())
	}
	for _, s := range all {
		if err := readUntil(s.sink, s.check, 15*time.Second, func(c *continuity) bool { return c.n >= 50 }); err != nil {
			t.Fatal(err)
		}
	}
	c := rtctest.Ctx(t)
	for _, s := range all[:subs/2] {
		res, err := e.Client.UpdateTracks(c, s.id, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{
			{Location: rtapi.LocationRemote, Mid: s.mid, SessionID: sid, TrackName: "two"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := realtime.ItemErrors(res.Tracks); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range all {
		done := func(c *continuity) bool { return c.counts["two"] >= 50 }
		if i >= subs/2 {
			done = func(c *continuity) bool { return c.n >= 150 }
		}
		if err := readUntil(s.sink, s.check, 15*time.Second, done); err != nil {
			t.Fatal(err)
		}
		if i < subs/2 && s.check.switches != 1 {
			t.Errorf("%s: %d switches, want 1", s.check.name, s.check.switches)
		}
		if i >= subs/2 && s.check.counts["two"] != 0 {
			t.Errorf("%s got %d packets of a track it did not pull", s.check.name, s.check.counts["two"])
		}
	}
}

// TestFanOutJoinLeave changes a track's subscribers while it forwards:
// subscribers join, leave (forced close) and switch between two tracks
// back and forth, so that the count crosses the shard threshold both ways
// and bindings move in and out of shards. Subscribers that stay get every
// packet in order, and those that switch get continuous sequence numbers
// and timestamps across every switch. Run it with -race.
func TestFanOutJoinLeave(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sfu.SetShardMin(e.SFU, 4)
	sid, _, _, _ := publisherOf(t, e, "one", "two")

	type sub struct {
		id, mid string
		sink    *rtctest.Sink
		check   *continuity
	}
	pull := func(name string) *sub {
		id, p, pulled := subscriber(t, e, sid, "one")
		return &sub{id: id, mid: pulled[0].Mid, sink: p.NextTrack(), check: &continuity{name: name}}
	}
	var stay, switchers []*sub
	for i := range 3 {
		stay = append(stay, pull(fmt.Sprint("staying ", i)))
	}
	for i := range 3 {
		switchers = append(switchers, pull(fmt.Sprint("switching ", i)))
	}

	// Every staying and switching subscriber is checked while it all
	// happens.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for _, s := range append(append([]*sub{}, stay...), switchers...) {
		readers.Go(func() {
			if err := readUntil(s.sink, s.check, 60*time.Second, func(*continuity) bool {
				select {
				case <-stop:
					return true
				default:
					return false
				}
			}); err != nil {
				t.Error(err)
			}
		})
	}

	// The switchers go to "two" and back, 8 times each, concurrently.
	c := rtctest.Ctx(t)
	var churn sync.WaitGroup
	var updates atomic.Int64
	for _, s := range switchers {
		churn.Go(func() {
			for i := range 16 {
				name := []string{"two", "one"}[i%2]
				res, err := e.Client.UpdateTracks(c, s.id, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{
					{Location: rtapi.LocationRemote, Mid: s.mid, SessionID: sid, TrackName: name}}})
				if err == nil {
					err = realtime.ItemErrors(res.Tracks)
				}
				if err != nil {
					t.Errorf("%s: update to %s: %v", s.check.name, name, err)
					return
				}
				updates.Add(1)
				time.Sleep(40 * time.Millisecond)
			}
		})
	}
	// Meanwhile subscribers join and leave, on this goroutine.
	var joined []*sub
	for i := range 4 {
		joined = append(joined, pull(fmt.Sprint("joining ", i)))
	}
	for _, s := range joined {
		s.sink.Expect(t, "one", 10)
		res, err := e.Client.CloseTracks(c, s.id, rtapi.CloseTracksRequest{Tracks: []rtapi.CloseTrackObject{{Mid: s.mid}}, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := realtime.ItemErrors(res.Tracks); err != nil {
			t.Fatal(err)
		}
	}
	churn.Wait()
	time.Sleep(300 * time.Millisecond) // packets after the last switch
	close(stop)
	readers.Wait()
	if updates.Load() != 16*int64(len(switchers)) {
		t.Fatalf("%d updates done", updates.Load())
	}
	for _, s := range stay {
		if s.check.n < 50 || s.check.switches != 0 {
			t.Errorf("%s: %d packets, %d switches", s.check.name, s.check.n, s.check.switches)
		}
	}
	for _, s := range switchers {
		// Each switch shows once the track switched to has sent.
		if s.check.switches < 8 {
			t.Errorf("%s: %d switches seen of 16 updates (%v)", s.check.name, s.check.switches, s.check.counts)
		}
	}
	_, subscribers, _ := sfu.FanOut(e.SFU, sid, "one")
	if n := subscribers(); n != len(stay)+len(switchers) {
		t.Errorf("%d subscribers of one after the churn, want %d", n, len(stay)+len(switchers))
	}
}

// TestFanOutAllocs: writing one packet to several subscribers allocates
// nothing, whether the forwarding goroutine writes to all of them or the
// shard workers share the writes.
func TestFanOutAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, c := range []struct {
		name     string
		subs     int
		shardMin int
	}{{"inline", 6, 1 << 30}, {"sharded", 12, 2}} {
		t.Run(c.name, func(t *testing.T) {
			e := rtctest.NewEnv(t, rtctest.FastOptions())
			sfu.SetShardMin(e.SFU, c.shardMin)
			sid, _, srcs, _ := publisherOf(t, e, "cam")
			for range c.subs {
				subscriber(t, e, sid, "cam")
			}
			fan, subscribers, settle := sfu.FanOut(e.SFU, sid, "cam")
			if n := subscribers(); n != c.subs {
				t.Fatalf("%d subscribers bound, want %d", n, c.subs)
			}
			srcs["cam"].Halt() // from here on only the test feeds the track
			time.Sleep(50 * time.Millisecond)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1, SequenceNumber: 1 << 15}, Payload: make([]byte, 1100)}
			step := func() {
				pkt.SequenceNumber++
				pkt.Timestamp += 3000
				fan(pkt)
				settle()
			}
			for range 1200 { // past the history: the packet pool is full
				step()
			}
			// The subscribers are in this process too: pion's receive path
			// and ICE keepalives allocate now and then, in bursts (sync.Pool
			// refills after a GC), and AllocsPerRun, which counts the whole
			// process, read 0 to 30 per packet from one run to the next. So
			// allocations are counted by where they were made: none may be
			// made below the fan-out step. AllocsPerRun is only logged.
			if n := allocsBelow(t, 300, step, fanOutFuncs...); n != 0 {
				t.Errorf("%d allocations below the fan-out step in 300 packets to %d subscribers", n, c.subs)
			}
			t.Logf("%d subscribers: %v allocations per packet in the whole process (AllocsPerRun)",
				c.subs, testing.AllocsPerRun(300, step))
			if sh := sfu.Sharded(e.SFU, sid, "cam"); sh != (c.shardMin <= c.subs) {
				t.Errorf("shard workers ran: %v", sh)
			}
		})
	}
}

// fanOutFuncs are the functions of the fan-out step: every allocation made
// while writing a packet to subscribers has one of them on its stack.
var fanOutFuncs = []string{
	"sfu.(*pubTrack).deliver",
	"sfu.(*pubTrack).dispatch",
	"sfu.(*pubTrack).work",
	"sfu.(*pubTrack).fanOut",
}

// allocsBelow runs f n times and returns how many allocations it made
// with one of funcs on their stack, as the heap profile records them at a
// sampling rate of 1; it logs where they were made.
func allocsBelow(t *testing.T, n int, f func(), funcs ...string) int64 {
	t.Helper()
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	before := profiledAllocs(funcs)
	for range n {
		f()
	}
	after := profiledAllocs(funcs)
	var total int64
	for stack, k := range after {
		if d := k - before[stack]; d > 0 {
			total += d
			t.Logf("%d allocations at\n%s", d, stack)
		}
	}
	return total
}

// profiledAllocs returns the allocations so far with one of funcs on
// their stack, by stack.
func profiledAllocs(funcs []string) map[string]int64 {
	// A record shows allocations once two GC cycles passed over them.
	for range 3 {
		runtime.GC()
	}
	var recs []runtime.MemProfileRecord
	for {
		k, ok := runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:k]
			break
		}
		recs = make([]runtime.MemProfileRecord, k+100)
	}
	out := map[string]int64{}
	for _, r := range recs {
		var b strings.Builder
		match := false
		frames := runtime.CallersFrames(r.Stack())
		for {
			fr, more := frames.Next()
			fmt.Fprintf(&b, "  %s\n", fr.Function)
			match = match || matchesAny(fr.Function, funcs)
			if !more {
				break
			}
		}
		// Not counted: caches that every GC empties and this counting runs
		// GCs: what a sync.Pool's New makes, and the runtime's sudog cache
		// (the first goroutine to block on a channel after a GC allocates
		// one); and the batched send (peer.API.Flush: x/net's WriteBatch
		// takes its scratch from pools, so it allocates after each GC too;
		// gateway/peer tests it).
		if match && !strings.Contains(b.String(), "sync.(*Pool).") &&
			!strings.Contains(b.String(), "runtime.acquireSudog") &&
			!strings.Contains(b.String(), "peer.(*API).Flush") {
			out[b.String()] += r.AllocObjects
		}
	}
	return out
}

func matchesAny(fn string, suffixes []string) bool {
	for _, s := range suffixes {
		if strings.HasSuffix(fn, s) {
			return true
		}
	}
	return false
}
