package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// browserTools is what the whep-ttff scenario needs to drive headless
// Chromium: node, Chromium's binary, and the directory of the end-to-end
// tests' runner, pages.mjs, with playwright-core installed (npm ci there).
type browserTools struct {
	Node     string `json:"node"`
	Chromium string `json:"chromium"`
	Dir      string `json:"dir"`
}

// chromiumDefault is Debian's Chromium binary itself; its /usr/bin wrapper
// script adds noise (shared/TESTING.md).
const chromiumDefault = "/usr/lib/chromium/chromium"

// findBrowser locates the tools; missing says what is missing ("" when
// nothing is), in the words of the scenario's "not measured" line.
func findBrowser(dir, chromium string) (t browserTools, missing string) {
	if chromium == "" {
		chromium = os.Getenv("RTGATE_CHROMIUM")
	}
	if chromium == "" {
		chromium = chromiumDefault
	}
	if _, err := os.Stat(chromium); err != nil {
		return t, fmt.Sprintf("no chromium: %s not found (apt-get install chromium)", chromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return t, "no chromium: node not found (apt-get install nodejs)"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return t, fmt.Sprintf("no chromium: browser runner %s: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(abs, "pages.mjs")); err != nil {
		return t, fmt.Sprintf("no chromium: no pages.mjs in %s (run from the repository's root, or --browser-dir)", abs)
	}
	if _, err := os.Stat(filepath.Join(abs, "node_modules", "playwright-core")); err != nil {
		return t, fmt.Sprintf("no chromium: playwright-core is not installed in %s (npm ci there)", abs)
	}
	return browserTools{Node: node, Chromium: chromium, Dir: abs}, ""
}

// browser is one headless Chromium steered through pages.mjs (the runner
// of cmd/rtgate's WHIP/WHEP end-to-end test), one JSON command per line
// on its stdin and one reply per line on its stdout. Its methods are for
// one goroutine.
type browser struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan browserReply
	done    chan struct{} // the reader ended: pages.mjs exited
	tmp     string
	next    int

	mu     sync.Mutex
	stderr strings.Builder // page console errors, Chromium's complaints (bounded)
}

type browserReply struct {
	ID    int             `json:"id"`
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
}

// startBrowser starts pages.mjs and waits until Chromium is up.
func startBrowser(t browserTools) (*browser, error) {
	// A short name: Chromium's singleton socket goes four levels under
	// it, and a Unix socket's path has at most 107 bytes.
	tmp, err := os.MkdirTemp("", "rtb")
	if err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	b := &browser{replies: make(chan browserReply, 4), done: make(chan struct{}), tmp: tmp}
	// pages.mjs keeps every HTTP response in --responses, for the e2e
	// test's search for secrets; here they go to the temporary directory.
	b.cmd = exec.Command(t.Node, "pages.mjs", "--chromium", t.Chromium,
		"--responses", filepath.Join(tmp, "responses.jsonl"), "--dir", tmp)
	b.cmd.Dir = t.Dir
	b.cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	b.cmd.Stderr = writerFunc(b.logStderr)
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	if err := b.cmd.Start(); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("start node pages.mjs: %w", err)
	}
	go func() { // owner: b; ends when pages.mjs closes its stdout (exits)
		defer close(b.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var r browserReply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r = browserReply{ID: -1, Error: fmt.Sprintf("bad reply %q: %v", sc.Text(), err)}
			}
			select {
			case b.replies <- r:
			case <-time.After(10 * time.Second): // nobody reads: an abandoned command
			}
		}
	}()
	select {
	case r := <-b.replies:
		if !r.OK {
			_ = b.close()
			return nil, fmt.Errorf("pages.mjs did not start Chromium: %s\n%s", r.Error, b.stderrText())
		}
	case <-b.done:
		_ = b.close()
		return nil, fmt.Errorf("pages.mjs exited before Chromium was up:\n%s", b.stderrText())
	case <-time.After(60 * time.Second):
		_ = b.close()
		return nil, fmt.Errorf("pages.mjs: Chromium not up within 60 s:\n%s", b.stderrText())
	}
	return b, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (b *browser) logStderr(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stderr.Len() < 64<<10 {
		b.stderr.Write(p)
	}
	return len(p), nil
}

func (b *browser) stderrText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// do sends one command and waits up to timeout for its reply.
func (b *browser) do(cmd map[string]any, timeout time.Duration) (json.RawMessage, error) {
	b.next++
	cmd["id"] = b.next
	line, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := b.stdin.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("write to pages.mjs: %w", err)
	}
	deadline := time.After(timeout)
	for {
		select {
		case r := <-b.replies:
			if r.ID != b.next {
				continue // the late reply of an abandoned command
			}
			if !r.OK {
				return nil, fmt.Errorf("chromium %v: %s", cmd["op"], r.Error)
			}
			return r.Value, nil
		case <-b.done:
			return nil, fmt.Errorf("pages.mjs exited:\n%s", b.stderrText())
		case <-deadline:
			return nil, fmt.Errorf("no reply from pages.mjs within %s to %s", timeout, line)
		}
	}
}

// close quits Chromium (pages.mjs removes its profile), waits for it, and
// removes the temporary directory.
func (b *browser) close() error {
	var errs []error
	if b.stdin != nil {
		select {
		case <-b.done:
		default:
			_, _ = b.do(map[string]any{"op": "quit"}, 15*time.Second)
		}
		_ = b.stdin.Close()
	}
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		errs = append(errs, errors.New("pages.mjs did not exit 15 s after quit: killed"))
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	_ = b.cmd.Wait()
	errs = append(errs, os.RemoveAll(b.tmp))
	return errors.Join(errs...)
}
