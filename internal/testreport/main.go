// Command testreport reads `go test -json` on stdin, as test.sh runs the
// end-to-end suite: it writes the plain output to a log, prints one line per
// top-level test as it ends, and at the end prints the output of the tests
// that failed (their subtests' included) and nothing of those that passed, so
// that a failure reads without paging through a whole suite's log.
//
//	go -C xcaddy_test test -json . | testreport -log e2e.log
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Test    string
	Elapsed float64
	Output  string
}

// packageTail is how many lines of output outside any test (a panic, a
// timeout's goroutine dump, a build error) are shown when the package fails
// without a test failing: the cause is at its top and at its end.
const packageTail = 60

func main() {
	logPath := flag.String("log", "", "file for the plain output (go test -v's)")
	flag.Parse()
	var logw io.Writer = io.Discard
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		logw = f
	}
	r := newReport(os.Stdout, logw, time.Now)
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	r.summary()
}

type report struct {
	out, log io.Writer
	now      func() time.Time
	start    time.Time
	outputs  map[string]*strings.Builder // by top-level test
	order    []string                    // top-level tests in the order they started
	ended    map[string]string           // top-level test -> pass, fail, skip
	failed   []string
	pkg      []string // output lines outside any test
	pkgFail  bool
}

func newReport(out, log io.Writer, now func() time.Time) *report {
	return &report{out: out, log: log, now: now, start: now(), outputs: map[string]*strings.Builder{}, ended: map[string]string{}}
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// not JSON: go's own messages (a build failure) come as text
			line := sc.Text() + "\n"
			io.WriteString(r.log, line)
			r.pkg = append(r.pkg, line)
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *report) event(e event) {
	top, _, _ := strings.Cut(e.Test, "/")
	switch e.Action {
	case "output":
		io.WriteString(r.log, e.Output)
		if top == "" {
			r.pkg = append(r.pkg, e.Output)
			if strings.HasPrefix(e.Output, "xcaddy build took ") {
				fmt.Fprint(r.out, "   "+e.Output)
			}
			return
		}
		b, ok := r.outputs[top]
		if !ok {
			b = &strings.Builder{}
			r.outputs[top] = b
			r.order = append(r.order, top)
		}
		b.WriteString(e.Output)
	case "pass", "fail", "skip":
		if top == "" {
			r.pkgFail = r.pkgFail || e.Action == "fail"
			fmt.Fprintf(r.out, "   %s (%.0fs)\n", map[string]string{"pass": "ok", "fail": "FAIL", "skip": "ok (no tests)"}[e.Action], e.Elapsed)
			return
		}
		if e.Test != top {
			return // a subtest: its parent's line says it
		}
		r.ended[top] = e.Action
		if e.Action == "fail" {
			r.failed = append(r.failed, top)
		}
		in := r.now().Sub(r.start)
		fmt.Fprintf(r.out, "   %-4s %-44s %8.2fs   (%dm%02ds in)\n", strings.ToUpper(e.Action), top, e.Elapsed, int(in.Minutes()), int(in.Seconds())%60)
	}
}

// summary prints the failed tests' output; when the package failed but no
// test did (a panic, a timeout, a build error), the tests that never ended
// and the end of the output outside tests.
func (r *report) summary() {
	for _, name := range r.failed {
		fmt.Fprintf(r.out, "\n== output of %s\n%s", name, r.outputs[name].String())
	}
	if !r.pkgFail || len(r.failed) > 0 {
		return
	}
	for _, name := range r.order {
		if r.ended[name] == "" {
			fmt.Fprintf(r.out, "\n== output of %s, which never ended\n%s", name, r.outputs[name].String())
		}
	}
	tail := r.pkg
	if len(tail) > packageTail {
		tail = tail[len(tail)-packageTail:]
	}
	fmt.Fprintf(r.out, "\n== the last %d lines of the output outside tests\n%s", len(tail), strings.Join(tail, ""))
}
