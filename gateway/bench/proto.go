package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// The orchestrator and its workers talk in JSON lines: requests on the
// worker's stdin, replies on its file descriptor 3 (so that whatever a
// library prints on stdout cannot break the protocol). The first request is
// "init" with the worker's workerConfig; the worker replies with what it
// set up (addresses, sessions) and then answers one request at a time.
// When its stdin closes, the worker releases everything and exits.

type request struct {
	Op  string          `json:"op"`
	Arg json.RawMessage `json:"arg,omitempty"`
}

type reply struct {
	OK    json.RawMessage `json:"ok,omitempty"`
	Error string          `json:"error,omitempty"`
}

// role is one kind of worker: a system under test or the load.
type role interface {
	// handle answers one request; the result is encoded as JSON.
	handle(ctx context.Context, op string, arg json.RawMessage) (any, error)
	// close releases everything the role opened.
	close() error
}

// Worker is the body of the hidden `rtgate bench-worker` command (and of
// the test binary in a worker role): it reads requests from in and writes
// replies to out until in closes. Its log (pion's and rtgate's warnings)
// goes to logw.
func Worker(ctx context.Context, in io.Reader, out io.Writer, logw io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	enc := json.NewEncoder(out)
	send := func(v any, err error) error {
		var r reply
		if err != nil {
			r.Error = err.Error()
		} else {
			b, merr := json.Marshal(v)
			if merr != nil {
				r.Error = fmt.Sprintf("encode reply: %v", merr)
			} else {
				r.OK = b
			}
		}
		if werr := enc.Encode(r); werr != nil {
			return fmt.Errorf("bench worker: write reply: %w", werr)
		}
		return nil
	}
	if !sc.Scan() {
		return errors.New("bench worker: no init request on stdin")
	}
	var first request
	if err := json.Unmarshal(sc.Bytes(), &first); err != nil || first.Op != "init" {
		return fmt.Errorf("bench worker: first request is not init: %q", sc.Text())
	}
	var cfg workerConfig
	if err := json.Unmarshal(first.Arg, &cfg); err != nil {
		return fmt.Errorf("bench worker: init: %w", err)
	}
	r, ready, err := newRole(ctx, cfg, newLogger(logw))
	if err != nil {
		_ = send(nil, err)
		return err
	}
	defer r.close()
	if err := send(ready, nil); err != nil {
		return err
	}
	fast, _ := r.(marker)
	var buf []byte
	for sc.Scan() {
		if fast != nil && bytes.Equal(sc.Bytes(), markRequest) {
			// The mark of a system under test is answered without
			// allocating, so that the allocations it counts are the SUT's.
			buf = fast.appendMark(append(buf[:0], `{"ok":`...))
			buf = append(buf, "}\n"...)
			if _, err := out.Write(buf); err != nil {
				return fmt.Errorf("bench worker: write reply: %w", err)
			}
			continue
		}
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			if err := send(nil, fmt.Errorf("bad request %q: %w", sc.Text(), err)); err != nil {
				return err
			}
			continue
		}
		v, err := r.handle(ctx, req.Op, req.Arg)
		if err := send(v, err); err != nil {
			return err
		}
	}
	return nil
}

// marker is a role that answers marks without allocating.
type marker interface {
	appendMark(b []byte) []byte
}

// markRequest is the line the orchestrator sends for a mark.
var markRequest = []byte(`{"op":"mark"}`)

// child is a worker process seen from the orchestrator.
type child struct {
	name    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan reply
	exited  chan struct{}
	log     *tailBuffer
}

// startChild starts a worker from mk, sends it cfg and decodes its ready
// reply into ready.
func startChild(mk func() *exec.Cmd, name string, cfg workerConfig, ready any) (*child, error) {
	cmd := mk()
	log := &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = log, log
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: reply pipe: %w", name, err)
	}
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	_ = pw.Close() // the child holds its end
	c := &child{name: name, cmd: cmd, in: in, replies: make(chan reply, 4), exited: make(chan struct{}), log: log}
	go func() { // owner: the child; ends when the reply pipe closes (the child exited)
		defer close(c.replies)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			var r reply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r.Error = fmt.Sprintf("bad reply %q: %v", sc.Text(), err)
			}
			c.replies <- r
		}
	}()
	go func() { // owner: the child; ends when the process exits
		_ = cmd.Wait()
		close(c.exited)
	}()
	if err := c.call("init", cfg, ready, 60*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// call sends op with arg and decodes the reply into res (if not nil). On a
// timeout the worker is killed: its state is unknown.
func (c *child) call(op string, arg any, res any, timeout time.Duration) error {
	b, err := json.Marshal(request{Op: op, Arg: mustJSON(arg)})
	if err != nil {
		return fmt.Errorf("%s %s: %w", c.name, op, err)
	}
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%s %s: write request: %w%s", c.name, op, err, c.tail())
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r, ok := <-c.replies:
		if !ok {
			<-c.exited
			return fmt.Errorf("%s %s: the worker exited (%v)%s", c.name, op, c.cmd.ProcessState, c.tail())
		}
		if r.Error != "" {
			return fmt.Errorf("%s %s: %s", c.name, op, r.Error)
		}
		if res != nil {
			if err := json.Unmarshal(r.OK, res); err != nil {
				return fmt.Errorf("%s %s: decode reply: %w", c.name, op, err)
			}
		}
		return nil
	case <-t.C:
		_ = c.cmd.Process.Kill()
		return fmt.Errorf("%s %s: no reply within %s; worker killed%s", c.name, op, timeout, c.tail())
	}
}

// stop closes the worker's stdin (it releases everything and exits) and
// waits for it, killing it after 15 s.
func (c *child) stop() {
	_ = c.in.Close()
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func (c *child) tail() string {
	if s := c.log.String(); s != "" {
		return "\n--- " + c.name + " log (tail) ---\n" + s
	}
	return ""
}

func mustJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are passed
	}
	return b
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
