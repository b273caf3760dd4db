package alias

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/caddyserver/caddy/v2"

	"github.com/acme-alias/caddy-dns-alias/solver"
)

// TestCheckRequestBounds: the names of one check request share one cache
// (the production zone's NS is asked about once, not once per name),
// a name of many labels costs at most MaxCAASteps CAA lookups, and the
// request's queries stop at its budget, 40 per name.
func TestCheckRequestBounds(t *testing.T) {
	l := startGateLab(t, nil)
	count := func(f func(), typ string) int {
		before := l.srv.Queries()
		f()
		n := 0
		for _, q := range l.srv.Queries()[len(before):] {
			if typ == "" || q.Type == typ {
				n++
			}
		}
		return n
	}
	names := func(labels int) []string {
		var out []string
		for i := range maxCheckDomains {
			out = append(out, strings.Repeat("x.", labels-3)+fmt.Sprintf("n%02d.example.com", i))
		}
		return out
	}

	shallow := names(3)
	// Checks running at the same moment may each miss the cache once. In a
	// synctest bubble the request takes no time on the cache's clock: on
	// the wall clock a request slower than the test zone's 1 s NS TTL
	// asked again (7 times, 1 run in 30 under -race on a busy machine).
	if n := count(func() {
		synctest.Test(t, func(t *testing.T) { l.app.reportDomains(context.Background(), shallow) })
	}, "NS"); n > checkConcurrency {
		t.Errorf("50 names of one zone asked for its NS %d times, want at most %d (once per check running at once)", n, checkConcurrency)
	}
	deep := names(100)
	caa := count(func() {
		for _, rep := range l.app.reportDomains(context.Background(), deep[:1]) {
			if !hasFinding(rep, solver.CodeCAASkipped) {
				t.Errorf("no note says which CAA lookups were left out: %+v", rep.Findings)
			}
		}
	}, "CAA")
	if caa > solver.MaxCAASteps {
		t.Errorf("a name of 100 labels cost %d CAA lookups, want at most %d", caa, solver.MaxCAASteps)
	}
	if n := count(func() { l.app.reportDomains(context.Background(), deep) }, ""); n > queriesPerCheckedName*maxCheckDomains {
		t.Errorf("one request of 50 deep names sent %d queries, more than its budget of %d", n, queriesPerCheckedName*maxCheckDomains)
	}
}

func hasFinding(rep *solver.Report, code string) bool {
	for _, f := range rep.Findings {
		if f.Code == code {
			return true
		}
	}
	return false
}

// TestCheckRequestBudgetSpent: once a request's budget is spent, its
// remaining checks end in a lookup failure that says so, not in a verdict.
func TestCheckRequestBudgetSpent(t *testing.T) {
	l := startGateLab(t, nil)
	ctx, req := withCheckRequest(context.Background(), maxCheckDomains)
	_, p := l.app.policyFor("shop.example.com")
	v := requestView(ctx, p.writer.Mapper.Resolver)
	if requestView(ctx, p.writer.Mapper.Resolver) != v {
		t.Fatal("one request got two views of one resolver")
	}
	for i := range queriesPerCheckedName * maxCheckDomains {
		if _, err := v.Query(ctx, fmt.Sprintf("q%d.example.com", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if req.budget.Spent() != queriesPerCheckedName*maxCheckDomains {
		t.Fatalf("%d queries spent, want %d", req.budget.Spent(), queriesPerCheckedName*maxCheckDomains)
	}
	rep := l.app.Check(ctx, "missing.example.com")
	if rep.Verdict != solver.VerdictUnknown || !strings.Contains(rep.Err().Error(), "budget of 2000 queries is spent") {
		t.Errorf("check after the budget: %s %v, want unknown, naming the budget", rep.Verdict, rep.Err())
	}
}

// TestCheckRequestsAtOnce: at most maxCheckRequests requests check names
// at once; one more is refused with 429 until one is done.
func TestCheckRequestsAtOnce(t *testing.T) {
	a := newApp()
	var done []func()
	for range maxCheckRequests {
		d, err := a.startCheckRequest()
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, d)
	}
	_, err := a.startCheckRequest()
	if apiErr, ok := err.(caddy.APIError); !ok || apiErr.HTTPStatus != http.StatusTooManyRequests {
		t.Fatalf("request beyond the limit: %v, want 429", err)
	}
	done[0]()
	if _, err := a.startCheckRequest(); err != nil {
		t.Errorf("after one was done: %v", err)
	}
}
