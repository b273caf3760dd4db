package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/acme-alias/caddy-dns-alias/xcaddy_test/internal/lab"
)

// traffic is what the lab's servers saw during one measurement.
type traffic struct {
	updates int // RR changes the alias zone's server applied for caddy-key
	queries int // queries Unbound and both BIND instances received
	orders  []time.Time
}

// maxOrders10s is the largest number of orders within any 10 s.
func (t traffic) maxOrders10s() int {
	best := 0
	for i, start := range t.orders {
		n := 0
		for _, o := range t.orders[i:] {
			if o.Sub(start) < 10*time.Second {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// meter marks the servers' logs at its start and follows Pebble's log, so
// that stop can tell what one measurement cost.
//
// Orders are stamped when the meter reads their "Added order" line (it
// reads every 20 ms): Pebble's own stamps have whole seconds only, too
// coarse for "orders per 10 s" against certmagic's 10 per 10 s.
type meter struct {
	l       *lab.Lab
	updMark int64
	qMarks  map[string]int64
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	orders  []time.Time
}

func startMeter(l *lab.Lab) *meter {
	m := &meter{l: l, updMark: logSize(namedLog(l, "a")), qMarks: map[string]int64{}, done: make(chan struct{})}
	for _, f := range queryLogs(l) {
		m.qMarks[f] = logSize(f)
	}
	f, err := os.Open(l.PebbleLog)
	if err != nil {
		log.Fatalf("pebble's log: %v", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		log.Fatalf("pebble's log: %v", err)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer f.Close()
		var partial []byte
		read := func() {
			data, _ := io.ReadAll(f)
			now := time.Now()
			partial = append(partial, data...)
			for {
				i := bytes.IndexByte(partial, '\n')
				if i < 0 {
					return
				}
				if bytes.Contains(partial[:i], []byte("Added order ")) {
					m.mu.Lock()
					m.orders = append(m.orders, now)
					m.mu.Unlock()
				}
				partial = partial[i+1:]
			}
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.done:
				read()
				return
			case <-tick.C:
				read()
			}
		}
	}()
	return m
}

// stop waits until the alias zone holds no TXT record (the cleanups belong
// to this measurement), then counts.
func (m *meter) stop() traffic {
	waitClean(m.l)
	close(m.done)
	m.wg.Wait()
	t := traffic{orders: m.orders}
	t.updates = countLines(namedLog(m.l, "a"), m.updMark, "/key "+m.l.CaddyKey.Name+": updating zone")
	for f, mark := range m.qMarks {
		t.queries += countLines(f, mark, "")
	}
	return t
}

func namedLog(l *lab.Lab, inst string) string { return filepath.Join(l.Dir, inst, "named.log") }

// queryLogs are the query logs of Unbound and both BIND instances.
func queryLogs(l *lab.Lab) []string {
	return []string{l.UnboundLog, filepath.Join(l.Dir, "a", "queries.log"), filepath.Join(l.Dir, "b", "queries.log")}
}

func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// countLines counts the lines after offset that contain substr; for
// Unbound's log only query lines (not the replies) count.
func countLines(path string, offset int64, substr string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return 0
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if substr != "" && !strings.Contains(line, substr) {
			continue
		}
		if strings.Contains(line, "unbound[") && !strings.HasSuffix(strings.TrimSpace(line), " IN") {
			continue // a reply line, not a query
		}
		n++
	}
	return n
}

// waitClean waits until the alias zone holds no TXT record, so that one
// run's cleanup does not land in the next run's numbers.
func waitClean(l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		txts, err := l.TXTRecords(ctx, l.AuthA, l.AliasZone)
		if err == nil && len(txts) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Printf("warning: TXT records left in %s after 30 s", l.AliasZone)
}

// publish publishes DNS records (a delegation) with the lab's admin key.
func publish(l *lab.Lab, zone string, rrs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, rr := range rrs {
		if err := l.Publish(ctx, zone, rr); err != nil {
			log.Fatalf("publishing %s: %v", rr, err)
		}
	}
}

// caddyProc is one Caddy started by the harness, with fresh storage.
type caddyProc struct {
	dir, storage string
	admin        string // host:port of its admin API
	httpsPort    int
	cmd          *exec.Cmd
	log          *syncBuffer
	exited       chan struct{}
	start        time.Time
}

// startCaddy writes the Caddyfile (the lab's global options plus
// globalExtra, then sites) and starts Caddy; start is taken just before.
func startCaddy(l *lab.Lab, bin, globalExtra, sites string) *caddyProc {
	return startCaddyWith(l, bin, globalExtra, sites, nil)
}

// startCaddyWith is startCaddy that lets prepare fill the storage
// directory before Caddy starts.
func startCaddyWith(l *lab.Lab, bin, globalExtra, sites string, prepare func(storage string)) *caddyProc {
	dir, err := os.MkdirTemp("", "caddy-dns-alias-bench-run-")
	if err != nil {
		log.Fatal(err)
	}
	c := &caddyProc{dir: dir, storage: filepath.Join(dir, "storage"), admin: fmt.Sprintf("127.0.0.1:%d", freePort()),
		httpsPort: freePort(), log: &syncBuffer{}, exited: make(chan struct{})}
	if prepare != nil {
		prepare(c.storage)
	}
	cfg := l.CaddyGlobalOptions(c.admin, c.storage, freePort(), c.httpsPort,
		"log {\n\t\tlevel WARN\n\t}\n"+globalExtra) + sites
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}
	c.cmd = exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	c.cmd.Dir = dir
	c.cmd.Env = l.CaddyEnv(dir)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.start = time.Now()
	if err := c.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	return c
}

func (c *caddyProc) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// listening waits until Caddy accepts TCP connections on its HTTPS port.
func (c *caddyProc) listening(timeout time.Duration) error {
	addr := fmt.Sprintf("127.0.0.1:%d", c.httpsPort)
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		if !c.running() || time.Now().After(deadline) {
			return fmt.Errorf("caddy does not listen on %s; its log:\n%s", addr, c.log.String())
		}
	}
}

// stop ends Caddy and removes its directory; it returns Caddy's peak RSS
// in kB.
func (c *caddyProc) stop() int64 {
	rss := peakRSS(c.cmd.Process.Pid)
	c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.exited
	os.RemoveAll(c.dir)
	return rss
}

// syncBuffer is a bytes.Buffer that a process writes while the harness
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// peakRSS reads the process's high-water resident set size in kB.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
