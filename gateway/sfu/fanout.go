package sfu

// The fan-out machinery of one published track: the packet buffers its
// forwarding goroutine reads into, the history of recent packets that
// answers subscribers' NACKs, and the shard workers that write one packet
// to many subscribers in parallel.
//
// Why it is written this way:
//   - One packet read from the publisher is written to every subscriber:
//     the same bytes M times, with a few header fields changed. The buffer
//     it was read into is shared by every write and stays in the track's
//     history afterwards, so a subscriber's NACK is answered from it
//     (peer.SentHistory) instead of each subscriber's NACK responder copying
//     every packet into a ring of its own (1.5 MiB and a 1200-byte copy per
//     subscriber per packet: a fifth of the SFU's CPU at 300 subscribers).
//   - A buffer is reused only when nobody holds it. Holders count in
//     pktBuf.refs: the history slot holding it (1), each shard worker it
//     was handed to (1 each), and each NACK resend copying out of it (1
//     each, briefly). The forwarding goroutine takes a free buffer with a
//     CAS from 0 to -1 (filling), and publishes it with a store of 1: the
//     bytes written before that store are what every later holder reads
//     (Go's atomics order them), so there are neither locks nor data races
//     on the packet bytes. Nothing is allocated per packet: buffers come
//     from a pool that is grown up to its bound while the track warms up.
//   - With few subscribers the forwarding goroutine writes to all of them
//     itself, as before: a hand-off costs a wakeup, about one write
//     (defaultShardMin). With more, the
//     subscribers are split into GOMAXPROCS shards: the forwarding
//     goroutine hands the packet to one long-lived worker per other shard
//     through a buffered channel (no allocation; one channel operation per
//     packet per shard) and writes shard 0 itself. A binding belongs to one
//     shard for its whole life, so its packets stay in order and its
//     rebasing state has one writer.

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

const (
	// pktBufSize is the room of one packet read from a publisher: an
	// Ethernet MTU, as pion's own reads.
	pktBufSize = 1500
	// defaultHistory is the packets of a published video track kept for
	// NACKs when the SFU's peer options do not say (NACKResponderSize).
	defaultHistory = 1024
	// audioHistory is the history of an audio track: audio negotiates no
	// NACK here, so only the hand-off needs a few buffers.
	audioHistory = 16
	// shardQueue is the packets one shard worker may have waiting. At 105
	// packets/s it is 0.6 s; at 20,000/s 3 ms, after which the forwarding
	// goroutine waits for the worker (and the publisher's packets wait in
	// the socket's buffer).
	shardQueue = 64
	// defaultShardMin is the subscriber count from which one packet's
	// writes are spread over the shards. Below it the writes of a packet
	// take at most about 150 µs from one goroutine (10 to 15 µs each), and
	// a hand-off (a wakeup, about the cost of one write) buys too little.
	// BenchmarkFanOutShards runs both ways at 2 to 32 subscribers; on the
	// shared 2-core machine, whose other core also runs the benchmark's
	// own receiving peers, neither way won consistently up to 32.
	defaultShardMin = 12
)

// pktBuf is one packet read from the publisher.
type pktBuf struct {
	refs atomic.Int32 // -1: being filled; 0: free; > 0: held
	seq  uint16
	pkt  rtp.Packet // unmarshalled from data: Payload and extensions point into it
	data [pktBufSize]byte
}

func newPktBuf() *pktBuf {
	b := &pktBuf{}
	// Room for the most CSRCs and a few extensions, so that Unmarshal
	// never grows them on the hot path.
	b.pkt.CSRC = make([]uint32, 0, 15)
	b.pkt.Extensions = make([]rtp.Extension, 0, 8)
	return b
}

// hold takes a reference on a buffer that is held (refs > 0); it fails
// on a free or filling buffer.
func (b *pktBuf) hold() bool {
	for {
		r := b.refs.Load()
		if r <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

func (b *pktBuf) release() { b.refs.Add(-1) }

// fanSet is one version of a track's subscribers (copy on write).
type fanSet struct {
	all    []*binding
	shards [][]*binding // by shard; every binding is in exactly one
	inline bool         // the forwarding goroutine writes to all
}

// shardItem is one packet handed to a shard worker, with the subscriber
// set it was fanned out to.
type shardItem struct {
	buf *pktBuf
	set *fanSet
}

// shardWorker writes shard k of every packet handed to it.
type shardWorker struct {
	ch   chan shardItem
	sent uint64        // items handed over; the forwarding goroutine's own
	done atomic.Uint64 // items written
}

// fan is the fan-out state of a published track. Everything but hist,
// read by NACK resends on other goroutines, belongs to the forwarding
// goroutine.
type fan struct {
	hist    []atomic.Pointer[pktBuf] // by sequence number & mask
	mask    uint16
	pool    []*pktBuf // nil entries are made on first use
	next    int       // the pool entry to try first
	workers []*shardWorker
	started atomic.Bool // workers are running (read by tests)
	sharded bool        // the last packets went to workers: drain before writing inline
}

// newFan makes the fan-out state of a track with a history of that many
// packets (a power of two) written by n goroutines. The workers' channels
// are made here; the workers start with the first packet that needs them.
func newFan(history, n int) *fan {
	f := &fan{hist: make([]atomic.Pointer[pktBuf], history), mask: uint16(history - 1)}
	// The history, what the workers may hold (a full queue and the packet
	// each writes), the buffer being filled and one spare.
	f.pool = make([]*pktBuf, history+(n-1)*(shardQueue+1)+2)
	for range n - 1 {
		f.workers = append(f.workers, &shardWorker{ch: make(chan shardItem, shardQueue)})
	}
	return f
}

// shards is how many goroutines write one packet at once.
func shards() int { return max(runtime.GOMAXPROCS(0), 1) }

// acquire returns a free buffer, marked filling. It allocates only while
// the pool warms up, or when every pooled buffer is held (the pool's
// bound says this does not happen).
func (f *fan) acquire() *pktBuf {
	for range len(f.pool) {
		b := f.pool[f.next]
		if b == nil {
			b = newPktBuf()
			f.pool[f.next] = b
		}
		if b.refs.CompareAndSwap(0, -1) {
			return b
		}
		f.next = (f.next + 1) % len(f.pool)
	}
	b := newPktBuf()
	f.pool[f.next] = b // the held one leaves the pool; its holders keep it
	b.refs.Store(-1)
	return b
}

// keep puts a filled buffer into the history (it becomes held) and
// moves the pool on, so that the next packet takes another buffer.
func (f *fan) keep(b *pktBuf) {
	b.seq = b.pkt.SequenceNumber
	b.refs.Store(1) // publishes the bytes: from here on readers may hold it
	if old := f.hist[b.seq&f.mask].Swap(b); old != nil {
		old.release()
	}
	f.next = (f.next + 1) % len(f.pool)
}

// drop gives back a buffer that was not kept; the next packet reuses it.
func (f *fan) drop(b *pktBuf) { b.refs.Store(0) }

// lookup holds the buffer of sequence number seq if the history has it;
// the caller releases it.
func (f *fan) lookup(seq uint16) *pktBuf {
	slot := &f.hist[seq&f.mask]
	b := slot.Load()
	if b == nil || !b.hold() {
		return nil
	}
	if slot.Load() != b || b.seq != seq { // replaced meanwhile, or another number
		b.release()
		return nil
	}
	return b
}

// dispatch hands b to the worker of every non-empty shard but the first
// and writes the first shard itself. It gives up if the track closes while
// a worker's queue is full.
func (p *pubTrack) dispatch(b *pktBuf, set *fanSet) {
	f := p.fan
	if !f.started.Load() {
		p.startWorkers()
	}
	f.sharded = true
	for k := 1; k < len(set.shards); k++ {
		if len(set.shards[k]) == 0 {
			continue
		}
		w := f.workers[k-1]
		b.refs.Add(1)
		select {
		case w.ch <- shardItem{buf: b, set: set}:
			w.sent++
		case <-p.closed:
			b.release()
			return
		}
	}
	p.fanOut(set.shards[0], &b.pkt)
}

// drain waits until the workers have written everything handed to them,
// before the forwarding goroutine writes to their bindings itself. It
// runs when the subscriber count falls below the shard threshold, not per
// packet.
func (p *pubTrack) drain() {
	f := p.fan
	for _, w := range f.workers {
		for w.done.Load() != w.sent {
			select {
			case <-p.closed:
				return
			default:
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	f.sharded = false
}

func (p *pubTrack) startWorkers() {
	f := p.fan
	f.started.Store(true)
	for k := range f.workers {
		w := f.workers[k]
		p.sess.sfu.goFunc(func() { p.work(w, k+1) })
	}
}

// stopWorkers ends the workers once they have written what they hold.
// Only the forwarding goroutine calls it, as it leaves.
func (p *pubTrack) stopWorkers() {
	for _, w := range p.fan.workers {
		close(w.ch)
	}
}

// work is a shard worker: it writes shard k of each packet handed to it
// until the track closes or the forwarding goroutine stops.
func (p *pubTrack) work(w *shardWorker, k int) {
	for {
		select {
		case it, ok := <-w.ch:
			if !ok {
				return
			}
			p.fanOut(it.set.shards[k], &it.buf.pkt)
			it.buf.release()
			w.done.Add(1)
		case <-p.closed:
			return
		}
	}
}

// newFanSet builds the subscriber set after a change: bindings keep the
// shard they were given; a new one joins the smallest shard.
func newFanSet(all []*binding, n, shardMin int) *fanSet {
	s := &fanSet{all: all, shards: make([][]*binding, n), inline: n == 1 || len(all) < shardMin}
	for _, b := range all {
		if b.shard < 0 {
			small := 0
			for k := range s.shards {
				if len(s.shards[k]) < len(s.shards[small]) {
					small = k
				}
			}
			b.shard = small
		}
		s.shards[b.shard] = append(s.shards[b.shard], b)
	}
	return s
}
