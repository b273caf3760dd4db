package main

import (
	"strings"
	"testing"
	"time"
)

func TestReport(t *testing.T) {
	tests := []struct {
		name, in     string
		want, absent []string
		logHas       string // the log keeps everything

	}{
		{
			name: "a failed test's output, subtests included, and nothing of the others",
			in: `{"Action":"run","Test":"TestA"}
{"Action":"output","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Test":"TestA","Output":"    a_test.go:1: noise of a passing test\n"}
{"Action":"pass","Test":"TestA","Elapsed":1.5}
{"Action":"output","Test":"TestB","Output":"=== RUN   TestB\n"}
{"Action":"output","Test":"TestB/sub","Output":"    b_test.go:9: tls: internal error\n"}
{"Action":"fail","Test":"TestB/sub","Elapsed":0.1}
{"Action":"fail","Test":"TestB","Elapsed":2}
{"Action":"output","Output":"FAIL\n"}
{"Action":"fail","Elapsed":4}
`,
			want:   []string{"PASS TestA", "FAIL TestB", "== output of TestB\n=== RUN   TestB\n    b_test.go:9: tls: internal error\n"},
			absent: []string{"noise of a passing test", "TestB/sub "},
			logHas: "noise of a passing test",
		},
		{
			name: "a timeout: the test that never ended and the end of the dump",
			in: `{"Action":"output","Test":"TestSlow","Output":"=== RUN   TestSlow\n"}
{"Action":"output","Test":"TestSlow","Output":"    slow_test.go:3: waiting\n"}
{"Action":"output","Output":"panic: test timed out after 25m0s\n"}
{"Action":"fail","Elapsed":1500}
`,
			want: []string{"== output of TestSlow, which never ended\n=== RUN   TestSlow\n    slow_test.go:3: waiting\n", "panic: test timed out after 25m0s"},
		},
		{
			name: "a build failure, given as text",
			in: `# github.com/x/y
y.go:1: undefined: z
FAIL	github.com/x/y [build failed]
{"Action":"fail","Elapsed":0}
`,
			want: []string{"y.go:1: undefined: z"},
		},
		{
			name:   "all passed: nothing but the lines",
			in:     `{"Action":"output","Test":"TestA","Output":"x\n"}` + "\n" + `{"Action":"pass","Test":"TestA"}` + "\n" + `{"Action":"pass","Elapsed":1}` + "\n",
			want:   []string{"PASS TestA", "ok (1s)"},
			absent: []string{"== output"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, log strings.Builder
			clock := time.Unix(0, 0)
			r := newReport(&out, &log, func() time.Time { return clock })
			if err := r.read(strings.NewReader(tt.in)); err != nil {
				t.Fatal(err)
			}
			r.summary()
			got := strings.Join(strings.Fields(out.String()), " ")
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) && !strings.Contains(got, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("the report lacks %q:\n%s", w, out.String())
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(out.String(), a) {
					t.Errorf("the report shows %q:\n%s", a, out.String())
				}
			}
			if !strings.Contains(log.String(), tt.logHas) {
				t.Errorf("the log lacks %q:\n%s", tt.logHas, log.String())
			}
		})
	}
}
