package solver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"
)

// writeCall is one call that reached an inner provider.
type writeCall struct {
	op   string // "append" or "delete"
	zone string
	recs []libdns.RR
}

func (c writeCall) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s zone=%s", c.op, c.zone)
	for _, rr := range c.recs {
		fmt.Fprintf(&b, " [%s %s %q]", rr.Type, rr.Name, rr.Data)
	}
	return b.String()
}

// fakeWriter is an inner provider that records every call and keeps the TXT
// sets it holds (a set per name, as DNS does: the same value twice is one
// record). It can be told to fail.
type fakeWriter struct {
	mu         sync.Mutex
	calls      []writeCall
	records    map[string]map[string]bool // absolute normalized name -> values
	failAppend func(zone string, rr libdns.RR) error
	failDelete func(zone string, rr libdns.RR) error
}

func (w *fakeWriter) record(op, zone string, recs []libdns.Record) writeCall {
	c := writeCall{op: op, zone: zone}
	for _, r := range recs {
		c.recs = append(c.recs, r.RR())
	}
	w.calls = append(w.calls, c)
	return c
}

func (w *fakeWriter) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.record("append", zone, recs)
	for _, rr := range c.recs {
		if w.failAppend != nil {
			if err := w.failAppend(zone, rr); err != nil {
				return nil, err
			}
		}
	}
	if w.records == nil {
		w.records = map[string]map[string]bool{}
	}
	for _, rr := range c.recs {
		n := Normalize(libdns.AbsoluteName(rr.Name, zone))
		if w.records[n] == nil {
			w.records[n] = map[string]bool{}
		}
		w.records[n][rr.Data] = true
	}
	return slices.Clone(recs), nil
}

func (w *fakeWriter) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.record("delete", zone, recs)
	for _, rr := range c.recs {
		if w.failDelete != nil {
			if err := w.failDelete(zone, rr); err != nil {
				return nil, err
			}
		}
	}
	for _, rr := range c.recs {
		n := Normalize(libdns.AbsoluteName(rr.Name, zone))
		delete(w.records[n], rr.Data)
		if len(w.records[n]) == 0 {
			delete(w.records, n)
		}
	}
	return slices.Clone(recs), nil
}

func (w *fakeWriter) setFailures(app, del func(zone string, rr libdns.RR) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failAppend, w.failDelete = app, del
}

func (w *fakeWriter) getCalls() []writeCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

func (w *fakeWriter) callsOf(op string) []writeCall {
	var out []writeCall
	for _, c := range w.getCalls() {
		if c.op == op {
			out = append(out, c)
		}
	}
	return out
}

// values returns the sorted TXT values the writer holds at name.
func (w *fakeWriter) values(name string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for v := range w.records[Normalize(name)] {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func (w *fakeWriter) empty() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.records) == 0
}

const (
	testAliasZone   = "validation.example.org"
	testStaticAlias = "_acme-challenge.validation.example.org"
)

// txt is a challenge record at name whose value is digest(label): the
// provider writes nothing without a digest's shape.
func txt(name, label string) libdns.Record {
	return libdns.TXT{Name: name, TTL: 2 * time.Minute, Text: digest(label)}
}

// digests is digest of each label, sorted as fakeWriter.values lists them.
func digests(labels ...string) []string {
	out := make([]string, len(labels))
	for i, l := range labels {
		out[i] = digest(l)
	}
	sort.Strings(out)
	return out
}

func staticProvider(t testing.TB, w *fakeWriter) *Provider {
	t.Helper()
	rule := mustValidate(t, &Rule{Alias: mustTemplate(t, testStaticAlias), Zones: []string{testAliasZone}, Writer: w, WriterName: "fake"})
	return &Provider{Mapper: &Mapper{Default: rule, Resolver: delegatedResolver(t, testAliasZone, testStaticAlias)}}
}

func followProvider(t testing.TB, d *fakeDNS, w *fakeWriter) (*Provider, *fakeClock) {
	t.Helper()
	res, clk := newTestResolver(t, d)
	rule := mustValidate(t, &Rule{Follow: true, Zones: []string{testAliasZone}, Writer: w, WriterName: "fake"})
	return &Provider{Mapper: &Mapper{Default: rule, Resolver: res}, now: clk.Now}, clk
}

// checkCall asserts that c is one op of one TXT record name/value in zone.
func checkCall(t testing.TB, c writeCall, op, zone, name, value string) {
	t.Helper()
	if c.op != op || c.zone != FQDN(zone) || len(c.recs) != 1 {
		t.Errorf("call %v, want %s in %s of one record", c, op, FQDN(zone))
		return
	}
	rr := c.recs[0]
	if rr.Type != "TXT" || Normalize(libdns.AbsoluteName(rr.Name, c.zone)) != Normalize(name) || rr.Data != digest(value) {
		t.Errorf("call %v, want TXT %s %q", c, name, value)
	}
}

func mustAppend(t testing.TB, p *Provider, zone string, recs ...libdns.Record) []libdns.Record {
	t.Helper()
	out, err := p.AppendRecords(context.Background(), zone, recs)
	if err != nil {
		t.Fatalf("AppendRecords(%s): %v", zone, err)
	}
	if len(out) != len(recs) {
		t.Fatalf("AppendRecords returned %d records for %d", len(out), len(recs))
	}
	return out
}

func mustDelete(t testing.TB, p *Provider, zone string, recs ...libdns.Record) {
	t.Helper()
	out, err := p.DeleteRecords(context.Background(), zone, recs)
	if err != nil {
		t.Fatalf("DeleteRecords(%s): %v", zone, err)
	}
	if len(out) != len(recs) {
		t.Fatalf("DeleteRecords returned %d records for %d", len(out), len(recs))
	}
}

func TestProviderApexAndWildcard(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)

	// certmagic presents example.com and *.example.com at the same time:
	// both at _acme-challenge in example.com., with different values.
	values := []string{"apex-token", "wildcard-token"}
	returned := make([][]libdns.Record, len(values))
	errs := make([]error, len(values))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, v := range values {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			returned[i], errs[i] = p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", v)})
		}()
	}
	close(start)
	wg.Wait()
	for i, v := range values {
		if errs[i] != nil {
			t.Fatalf("AppendRecords(%s): %v", v, errs[i])
		}
		rr := returned[i][0].RR()
		if rr.Name != testStaticAlias+"." || rr.Type != "TXT" || rr.Data != digest(v) || rr.TTL != 2*time.Minute {
			t.Errorf("AppendRecords returned %+v, want TXT %s. %q", rr, testStaticAlias, v)
		}
	}
	if got := w.values(testStaticAlias); !slices.Equal(got, digests(values...)) {
		t.Fatalf("alias holds %q, want %q", got, digests(values...))
	}
	appends := w.callsOf("append")
	if len(appends) != 2 {
		t.Fatalf("%d appends, want 2: %v", len(appends), appends)
	}
	for _, c := range appends {
		if c.zone != testAliasZone+"." || len(c.recs) != 1 || c.recs[0].Name != "_acme-challenge" {
			t.Errorf("append %v, want _acme-challenge in %s.", c, testAliasZone)
		}
	}
	if pr := p.Presented(); len(pr) != 2 {
		t.Fatalf("Presented = %+v, want 2", pr)
	}

	// Deleted one by one, each sends only its own value.
	for i, v := range values {
		mustDelete(t, p, "example.com.", returned[i]...)
		deletes := w.callsOf("delete")
		if len(deletes) != i+1 {
			t.Fatalf("%d deletes after deleting %s, want %d", len(deletes), v, i+1)
		}
		checkCall(t, deletes[i], "delete", testAliasZone, testStaticAlias, v)
		if got, want := w.values(testStaticAlias), digests(values[i+1:]...); !slices.Equal(got, want) {
			t.Errorf("after deleting %s the alias holds %q, want %q", v, got, want)
		}
		if got := len(p.Presented()); got != len(values)-i-1 {
			t.Errorf("after deleting %s, %d presented, want %d", v, got, len(values)-i-1)
		}
	}
}

func TestProviderManyConcurrentChallenges(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)
	const domains = 40
	type challenge struct {
		zone, value string
		returned    []libdns.Record
	}
	var chs []*challenge
	for i := range domains {
		zone := fmt.Sprintf("d%d.example.com.", i)
		chs = append(chs, &challenge{zone: zone, value: "apex-" + strings.TrimSuffix(zone, ".example.com.")}, &challenge{zone: zone, value: "wild-" + strings.TrimSuffix(zone, ".example.com.")})
	}
	run := func(f func(c *challenge) error) {
		t.Helper()
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, len(chs))
		for _, c := range chs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := f(c); err != nil {
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	run(func(c *challenge) (err error) {
		c.returned, err = p.AppendRecords(context.Background(), c.zone, []libdns.Record{txt("_acme-challenge", c.value)})
		return err
	})
	if got := len(w.values(testStaticAlias)); got != len(chs) {
		t.Fatalf("alias holds %d values, want %d", got, len(chs))
	}
	if got := len(p.Presented()); got != len(chs) {
		t.Fatalf("%d presented, want %d", got, len(chs))
	}
	run(func(c *challenge) error {
		_, err := p.DeleteRecords(context.Background(), c.zone, c.returned)
		return err
	})
	deleted := map[string]int{}
	for _, c := range w.callsOf("delete") {
		if c.zone != testAliasZone+"." || len(c.recs) != 1 || c.recs[0].Name != "_acme-challenge" {
			t.Errorf("delete %v, want one record at _acme-challenge in %s.", c, testAliasZone)
			continue
		}
		deleted[c.recs[0].Data]++
	}
	for _, c := range chs {
		if deleted[digest(c.value)] != 1 {
			t.Errorf("value %s deleted %d times, want once", c.value, deleted[digest(c.value)])
		}
	}
	if len(deleted) != len(chs) || !w.empty() || len(p.Presented()) != 0 {
		t.Errorf("after cleanup: %d values deleted, writer holds %v, presented %v", len(deleted), w.values(testStaticAlias), p.Presented())
	}
}

func TestProviderChallengesInterleaved(t *testing.T) {
	// Each goroutine presents and cleans up its own challenge while the
	// others do the same; at every delete the other values must survive,
	// which the writer's set semantics would reveal at the end.
	w := &fakeWriter{}
	p := staticProvider(t, w)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zone := fmt.Sprintf("i%d.example.net.", i%16)
			value := fmt.Sprintf("token-%d", i)
			out, err := p.AppendRecords(context.Background(), zone, []libdns.Record{txt("_acme-challenge", value)})
			if err != nil {
				errs <- err
				return
			}
			if !slices.Contains(w.values(testStaticAlias), digest(value)) {
				errs <- fmt.Errorf("%s missing at the alias before its cleanup", value)
			}
			if _, err := p.DeleteRecords(context.Background(), zone, out); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range w.callsOf("delete") {
		if len(c.recs) != 1 {
			t.Errorf("delete %v carries more than its own value", c)
		}
	}
	if n := len(w.callsOf("delete")); n != 64 {
		t.Errorf("%d deletes, want 64", n)
	}
	if !w.empty() || len(p.Presented()) != 0 {
		t.Errorf("left behind: writer %v, presented %v", w.values(testStaticAlias), p.Presented())
	}
}

func TestProviderTwoDomainsOneStaticAlias(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)
	com := mustAppend(t, p, "example.com.", txt("_acme-challenge", "com-token"))
	net := mustAppend(t, p, "example.net.", txt("_acme-challenge.shop", "net-token"))
	if got := w.values(testStaticAlias); !slices.Equal(got, digests("com-token", "net-token")) {
		t.Fatalf("alias holds %q", got)
	}
	mustDelete(t, p, "example.com.", com...)
	if got := w.values(testStaticAlias); !slices.Equal(got, digests("net-token")) {
		t.Errorf("after example.com's cleanup the alias holds %q, want net-token only", got)
	}
	checkCall(t, w.callsOf("delete")[0], "delete", testAliasZone, testStaticAlias, "com-token")
	mustDelete(t, p, "example.net.", net...)
	if !w.empty() {
		t.Errorf("alias still holds %q", w.values(testStaticAlias))
	}
	checkCall(t, w.callsOf("delete")[1], "delete", testAliasZone, testStaticAlias, "net-token")
}

func TestProviderCleanupDoesNotReResolve(t *testing.T) {
	const (
		start    = "_acme-challenge.example.com"
		original = "_acme-challenge.example.com.a.validation.example.org"
		drifted  = "_acme-challenge.example.com.b.validation.example.org"
	)
	for _, tc := range []struct {
		name string
		// the record and zone DeleteRecords gets, from what AppendRecords returned
		del func(returned libdns.Record) (string, libdns.Record)
	}{
		{"returned record, production zone (as certmagic does)", func(r libdns.Record) (string, libdns.Record) { return "example.com.", r }},
		{"returned record, no zone", func(r libdns.Record) (string, libdns.Record) { return "", r }},
		{"original relative record", func(r libdns.Record) (string, libdns.Record) {
			return "example.com.", libdns.TXT{Name: "_acme-challenge", Text: r.RR().Data}
		}},
		{"original absolute record in other case", func(r libdns.Record) (string, libdns.Record) {
			return "example.com.", libdns.TXT{Name: "_ACME-Challenge.Example.COM.", Text: r.RR().Data}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newFakeDNS("example.com", testAliasZone)
			d.chain(start, "_acme-challenge.example.com.hop.example.net", original)
			w := &fakeWriter{}
			p, clk := followProvider(t, d, w)

			out := mustAppend(t, p, "example.com.", txt("_acme-challenge", "tok"))
			rr := out[0].RR()
			// Absolute with the trailing dot: libdns.AbsoluteName keeps it,
			// so certmagic's propagation check looks at the end of the chain.
			if rr.Name != original+"." || libdns.AbsoluteName(rr.Name, "example.com.") != original+"." {
				t.Fatalf("returned name %q, want %q", rr.Name, original+".")
			}
			checkCall(t, w.getCalls()[0], "append", testAliasZone, original, "tok")
			if got := w.getCalls()[0].recs[0].Name; got != "_acme-challenge.example.com.a" {
				t.Errorf("inner record name %q, want it relative to %s.", got, testAliasZone)
			}

			// The CNAME drifts (another master answers) and the cache expires.
			d.cname("_acme-challenge.example.com.hop.example.net", drifted)
			clk.Advance(time.Hour)
			if m, err := p.Mapper.Resolve(context.Background(), "example.com"); err != nil || m.Name != drifted {
				t.Fatalf("Map after the drift = %q, %v; want %q", m.Name, err, drifted)
			}
			queries := d.total()

			zone, rec := tc.del(out[0])
			mustDelete(t, p, zone, rec)
			deletes := w.callsOf("delete")
			if len(deletes) != 1 {
				t.Fatalf("%d deletes, want 1: %v", len(deletes), w.getCalls())
			}
			checkCall(t, deletes[0], "delete", testAliasZone, original, "tok")
			if n := d.total() - queries; n != 0 {
				t.Errorf("cleanup sent %d DNS queries, want none", n)
			}
			if !w.empty() || len(p.Presented()) != 0 {
				t.Errorf("left behind: %v %v", w.values(original), p.Presented())
			}
		})
	}
}

func TestProviderRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		zone    string
		recs    []libdns.Record
		wantErr []string
	}{
		{"A record", "example.com.", []libdns.Record{libdns.RR{Type: "A", Name: "_acme-challenge", Data: "192.0.2.1"}},
			[]string{"A record", "_acme-challenge.example.com"}},
		{"CNAME record", "example.com.", []libdns.Record{libdns.CNAME{Name: "_acme-challenge", Target: "evil.example."}},
			[]string{"CNAME", "_acme-challenge.example.com"}},
		{"MX at apex", "example.com.", []libdns.Record{libdns.MX{Name: "@", Preference: 10, Target: "mx.evil."}},
			[]string{"MX", "example.com"}},
		{"lower-case type", "example.com.", []libdns.Record{libdns.RR{Type: "txt", Name: "_acme-challenge", Data: "v"}},
			[]string{"txt", "_acme-challenge.example.com"}},
		{"TXT not at a challenge name", "example.com.", []libdns.Record{txt("www", "v=spf1 -all")},
			[]string{"www.example.com"}},
		{"TXT at apex", "example.com.", []libdns.Record{txt("@", "v=spf1 -all")},
			[]string{"example.com", "not an ACME challenge name"}},
		{"TXT below a challenge name", "example.com.", []libdns.Record{txt("x._acme-challenge", "v")},
			[]string{"x._acme-challenge.example.com"}},
		{"TXT at a look-alike", "example.com.", []libdns.Record{txt("_acme-challenge-x", "v")},
			[]string{"_acme-challenge-x.example.com"}},
		{"bad record after a good one", "example.com.",
			[]libdns.Record{txt("_acme-challenge", "good"), libdns.RR{Type: "A", Name: "_acme-challenge", Data: "192.0.2.1"}},
			[]string{"A record", "_acme-challenge.example.com"}},
		{"value without a digest's shape", "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "site-verification=keepme"}},
			[]string{"_acme-challenge.example.com", "not the 43 of an ACME DNS-01 digest"}},
		{"value with a digest's length, not its alphabet", "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: strings.Repeat("=", DigestLen)}},
			[]string{"_acme-challenge.example.com", "not base64url"}},
		{"non-challenge TXT after a good one", "example.com.",
			[]libdns.Record{txt("_acme-challenge", "good"), txt("www", "bad")},
			[]string{"www.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{}
			p := staticProvider(t, w)
			out, err := p.AppendRecords(context.Background(), tc.zone, tc.recs)
			if err == nil {
				t.Fatalf("AppendRecords = %v, nil; want an error", out)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if out != nil {
				t.Errorf("AppendRecords returned %v with the error", out)
			}
			if calls := w.getCalls(); len(calls) != 0 {
				t.Errorf("the inner provider was called: %v", calls)
			}
			if pr := p.Presented(); len(pr) != 0 {
				t.Errorf("Presented = %v after a refusal", pr)
			}
		})
	}
}

func TestProviderMissingDelegation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(d *fakeDNS)
		wantIs  error
		wantErr []string
	}{
		{"no CNAME", func(d *fakeDNS) {}, ErrNoDelegation,
			[]string{"publish in the production zone: _acme-challenge.shop.example.com. 300 IN CNAME _acme-challenge.shop.example.com.validation.example.org."}},
		{"wildcard", func(d *fakeDNS) { d.wildcard("shop.example.com", "x.validation.example.org") }, ErrWildcard, nil},
		{"chain ends outside", func(d *fakeDNS) {
			d.cname("_acme-challenge.shop.example.com", "x.validation.example.org.evil.example")
		}, nil, []string{"nothing was written", "x.validation.example.org.evil.example"}},
		{"loop", func(d *fakeDNS) {
			d.chain("_acme-challenge.shop.example.com", "a.example.net", "_acme-challenge.shop.example.com")
		}, ErrLoop, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newFakeDNS("example.com", "example.net", testAliasZone)
			tc.setup(d)
			w := &fakeWriter{}
			p, _ := followProvider(t, d, w)
			_, err := p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge.shop", "tok")})
			if err == nil {
				t.Fatal("AppendRecords succeeded")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q is not %v", err, tc.wantIs)
			}
			for _, s := range append(tc.wantErr, "shop.example.com") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if calls := w.getCalls(); len(calls) != 0 {
				t.Errorf("the inner provider was called: %v", calls)
			}
		})
	}
}

func TestProviderFailingDelete(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)
	out := mustAppend(t, p, "example.com.", txt("_acme-challenge", "tok"))
	w.setFailures(nil, func(string, libdns.RR) error { return errors.New("provider API down") })

	deleted, err := p.DeleteRecords(context.Background(), "example.com.", out)
	if err == nil {
		t.Fatal("DeleteRecords succeeded although the inner delete failed")
	}
	for _, s := range []string{testStaticAlias, testAliasZone, "example.com", "provider API down", "fake"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "tok") {
		t.Errorf("error %q carries the challenge value", err)
	}
	if len(deleted) != 0 {
		t.Errorf("DeleteRecords reported %v deleted", deleted)
	}
	pr := p.Presented()
	if len(pr) != 1 || pr[0].Name != testStaticAlias || pr[0].Domain != "example.com" {
		t.Fatalf("Presented = %+v, want the record still listed", pr)
	}
	if got := w.values(testStaticAlias); !slices.Equal(got, digests("tok")) {
		t.Errorf("alias holds %q", got)
	}

	// A retry once the provider is back removes it.
	w.setFailures(nil, nil)
	mustDelete(t, p, "example.com.", out...)
	if len(p.Presented()) != 0 || !w.empty() {
		t.Errorf("after the retry: presented %v, alias %q", p.Presented(), w.values(testStaticAlias))
	}
	if n := len(w.callsOf("delete")); n != 2 {
		t.Errorf("%d deletes, want 2", n)
	}
}

// TestProviderDeleteNeverPresented: a delete of a record this process did
// not present is a no-op, as libdns asks of a record that does not exist:
// no error, nothing reported deleted, nothing asked of the inner provider.
func TestProviderDeleteNeverPresented(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)
	presented := mustAppend(t, p, "example.com.", txt("_acme-challenge", "mine"))
	w.calls = nil
	for _, tc := range []struct {
		name string
		zone string
		rec  libdns.Record
	}{
		{"unknown value at the alias", "example.com.", txt(testStaticAlias+".", "someone-else")},
		{"unknown value at the challenge name", "example.com.", txt("_acme-challenge", "someone-else")},
		{"right value, other domain", "example.net.", txt("_acme-challenge", "mine")},
		{"not a TXT name of ours", "example.com.", txt("www", "mine")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deleted, err := p.DeleteRecords(context.Background(), tc.zone, []libdns.Record{tc.rec})
			if err != nil || len(deleted) != 0 {
				t.Errorf("DeleteRecords = %v, %v; want nothing deleted and no error", deleted, err)
			}
			if calls := w.getCalls(); len(calls) != 0 {
				t.Errorf("the inner provider was called: %v", calls)
			}
		})
	}
	if pr := p.Presented(); len(pr) != 1 {
		t.Errorf("Presented = %v, want the real presentation untouched", pr)
	}
	// Deleting twice: the second time deletes nothing and calls nothing.
	mustDelete(t, p, "example.com.", presented...)
	if deleted, err := p.DeleteRecords(context.Background(), "example.com.", presented); err != nil || len(deleted) != 0 {
		t.Errorf("second DeleteRecords = %v, %v", deleted, err)
	}
	if n := len(w.getCalls()); n != 1 {
		t.Errorf("%d inner calls, want 1 (the first delete)", n)
	}
}

// TestProviderLibdnsDepartures asserts the libdns semantics the provider
// keeps apart from (see the package doc): a delete without a value is
// refused rather than taking every value at the name; SetRecords keeps the
// values it was not given; one value presented twice is reported deleted
// at its first delete and served until its last.
func TestProviderLibdnsDepartures(t *testing.T) {
	ctx := context.Background()
	t.Run("delete without a value", func(t *testing.T) {
		w := &fakeWriter{}
		p := staticProvider(t, w)
		mustAppend(t, p, "example.com.", txt("_acme-challenge", "a"))
		mustAppend(t, p, "example.net.", txt("_acme-challenge", "b"))
		for _, rec := range []libdns.Record{libdns.TXT{Name: "_acme-challenge"}, libdns.RR{Name: "_acme-challenge", Type: "TXT"}} {
			deleted, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec})
			if err == nil || !strings.Contains(err.Error(), "refusing to delete every TXT value at _acme-challenge.example.com") || len(deleted) != 0 {
				t.Errorf("DeleteRecords(%v) = %v, %v; want a refusal", rec, deleted, err)
			}
		}
		if got := w.values(testStaticAlias); !slices.Equal(got, digests("a", "b")) || len(w.callsOf("delete")) != 0 {
			t.Errorf("alias holds %v after %d deletes", got, len(w.callsOf("delete")))
		}
	})
	t.Run("SetRecords keeps what it is not given", func(t *testing.T) {
		w := &fakeWriter{}
		p := staticProvider(t, w)
		mustAppend(t, p, "example.com.", txt("_acme-challenge", "a"))
		if _, err := p.SetRecords(ctx, "example.net.", []libdns.Record{txt("_acme-challenge", "b")}); err != nil {
			t.Fatal(err)
		}
		if got := w.values(testStaticAlias); !slices.Equal(got, digests("a", "b")) {
			t.Errorf("alias holds %v, want both values", got)
		}
	})
	t.Run("one value twice", func(t *testing.T) {
		w := &fakeWriter{}
		p := staticProvider(t, w)
		first := mustAppend(t, p, "example.com.", txt("_acme-challenge", "same"))
		mustAppend(t, p, "example.com.", txt("_acme-challenge", "same"))
		deleted, err := p.DeleteRecords(ctx, "example.com.", first)
		if err != nil || len(deleted) != 1 {
			t.Fatalf("first DeleteRecords = %v, %v; want the record reported deleted", deleted, err)
		}
		if got := w.values(testStaticAlias); !slices.Equal(got, digests("same")) {
			t.Errorf("alias holds %v after the first delete, want the value served on", got)
		}
		mustDelete(t, p, "example.com.", first...)
		if !w.empty() {
			t.Errorf("alias holds %v after the last delete", w.values(testStaticAlias))
		}
	})
}

func TestProviderSetRecords(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)
	a, b := txt("_acme-challenge", "a-token"), txt("_acme-challenge", "b-token")
	mustAppend(t, p, "example.com.", a)
	// A value presented by someone else at the alias, outside this process.
	if _, err := w.AppendRecords(context.Background(), testAliasZone+".", []libdns.Record{txt("_acme-challenge", "foreign")}); err != nil {
		t.Fatal(err)
	}
	w.calls = nil

	got, err := p.SetRecords(context.Background(), "example.com.", []libdns.Record{a, b})
	if err != nil {
		t.Fatalf("SetRecords: %v", err)
	}
	if len(got) != 2 {
		t.Errorf("SetRecords returned %v", got)
	}
	calls := w.getCalls()
	if len(calls) != 1 {
		t.Fatalf("SetRecords made %v, want one append", calls)
	}
	checkCall(t, calls[0], "append", testAliasZone, testStaticAlias, "b-token")
	if vals := w.values(testStaticAlias); !slices.Equal(vals, digests("a-token", "b-token", "foreign")) {
		t.Errorf("alias holds %q, want every value kept", vals)
	}

	// Again, and with nothing: no inner call, nothing removed.
	for _, recs := range [][]libdns.Record{{a, b}, {b}, nil} {
		if _, err := p.SetRecords(context.Background(), "example.com.", recs); err != nil {
			t.Errorf("SetRecords(%v): %v", recs, err)
		}
	}
	if n := len(w.getCalls()); n != 1 {
		t.Errorf("%d inner calls, want still 1: %v", n, w.getCalls())
	}
	if n := len(w.callsOf("delete")); n != 0 {
		t.Errorf("SetRecords deleted: %v", w.callsOf("delete"))
	}

	// A refused record in the set: error, nothing written.
	if _, err := p.SetRecords(context.Background(), "example.com.", []libdns.Record{txt("www", "x")}); err == nil {
		t.Error("SetRecords accepted a non-challenge record")
	}
	if n := len(w.getCalls()); n != 1 {
		t.Errorf("%d inner calls after a refused SetRecords, want 1", n)
	}
}

func TestProviderGetRecords(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)
	mustAppend(t, p, "example.com.", txt("_acme-challenge", "apex"), txt("_acme-challenge", "wild"))
	mustAppend(t, p, "example.com.", txt("_acme-challenge.shop", "shop"))
	mustAppend(t, p, "example.net.", txt("_acme-challenge", "net"))
	w.calls = nil
	for _, tc := range []struct {
		zone string
		want []string
	}{
		{"example.com.", []string{"apex", "shop", "wild"}},
		{"Example.COM", []string{"apex", "shop", "wild"}},
		{"shop.example.com.", []string{"shop"}},
		{"example.net.", []string{"net"}},
		{"badexample.com.", nil},
		{"validation.example.org.", nil},
	} {
		recs, err := p.GetRecords(context.Background(), tc.zone)
		if err != nil {
			t.Fatalf("GetRecords(%s): %v", tc.zone, err)
		}
		var vals []string
		for _, r := range recs {
			rr := r.RR()
			if rr.Type != "TXT" || rr.Name != testStaticAlias+"." {
				t.Errorf("GetRecords(%s) lists %+v, want TXT at %s.", tc.zone, rr, testStaticAlias)
			}
			vals = append(vals, rr.Data)
		}
		sort.Strings(vals)
		if !slices.Equal(vals, digests(tc.want...)) {
			t.Errorf("GetRecords(%s) = %q, want %q", tc.zone, vals, tc.want)
		}
	}
	if calls := w.getCalls(); len(calls) != 0 {
		t.Errorf("GetRecords called the inner provider: %v", calls)
	}
}

func TestProviderPresented(t *testing.T) {
	w := &fakeWriter{}
	p := staticProvider(t, w)
	clk := newFakeClock()
	p.now = clk.Now
	t0 := clk.Now()
	for _, zone := range []string{"c.example.", "a.example.", "b.example."} {
		mustAppend(t, p, zone, txt("_acme-challenge", "secret-value-of-"+zone))
		clk.Advance(time.Second)
	}
	pr := p.Presented()
	if len(pr) != 3 {
		t.Fatalf("Presented = %+v", pr)
	}
	for i, want := range []string{"c.example", "a.example", "b.example"} {
		if pr[i].Domain != want || pr[i].Name != testStaticAlias || pr[i].Zone != testAliasZone || !pr[i].Since.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Errorf("Presented[%d] = %+v, want %s at %v (oldest first)", i, pr[i], want, t0.Add(time.Duration(i)*time.Second))
		}
	}
	js, err := json.Marshal(pr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "secret-value") {
		t.Errorf("Presented carries record values: %s", js)
	}
	for _, key := range []string{`"domain"`, `"name"`, `"zone"`, `"since"`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("Presented JSON %s lacks %s", js, key)
		}
	}
}

func TestProviderBatchRollback(t *testing.T) {
	w := &fakeWriter{}
	w.setFailures(func(_ string, rr libdns.RR) error {
		if rr.Data == digest("second") {
			return errors.New("quota exceeded")
		}
		return nil
	}, nil)
	p := staticProvider(t, w)
	out, err := p.AppendRecords(context.Background(), "example.com.",
		[]libdns.Record{txt("_acme-challenge", "first"), txt("_acme-challenge", "second")})
	if err == nil {
		t.Fatalf("AppendRecords = %v, nil; want an error", out)
	}
	for _, s := range []string{"quota exceeded", testStaticAlias, "example.com"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	if out != nil {
		t.Errorf("AppendRecords returned %v with the error", out)
	}
	// A failed write may still have landed, so it is deleted too.
	calls := w.getCalls()
	if len(calls) != 4 {
		t.Fatalf("inner calls %v, want append first, append second, delete second, delete first", calls)
	}
	checkCall(t, calls[0], "append", testAliasZone, testStaticAlias, "first")
	checkCall(t, calls[1], "append", testAliasZone, testStaticAlias, "second")
	checkCall(t, calls[2], "delete", testAliasZone, testStaticAlias, "second")
	checkCall(t, calls[3], "delete", testAliasZone, testStaticAlias, "first")
	if !w.empty() || len(p.Presented()) != 0 {
		t.Errorf("left behind: alias %q, presented %v", w.values(testStaticAlias), p.Presented())
	}
}

func TestProviderFailingAppend(t *testing.T) {
	w := &fakeWriter{}
	w.setFailures(func(string, libdns.RR) error { return errors.New("unauthorized") }, nil)
	p := staticProvider(t, w)
	if _, err := p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", "tok")}); err == nil ||
		!strings.Contains(err.Error(), "unauthorized") || !strings.Contains(err.Error(), testStaticAlias) {
		t.Errorf("AppendRecords = %v, want the inner error with the alias name", err)
	}
	if len(p.Presented()) != 0 {
		t.Errorf("a failed write is listed as presented: %v", p.Presented())
	}
	if deleted, err := p.DeleteRecords(context.Background(), "example.com.", []libdns.Record{txt(testStaticAlias+".", "tok")}); len(deleted) != 0 || err != nil {
		t.Errorf("deleting a record whose write failed = %v, %v; want nothing deleted", deleted, err)
	}
	// The failed write is deleted once, in case it landed after all, and
	// the later delete of a record that was never presented sends nothing.
	if dels := w.callsOf("delete"); len(dels) != 1 {
		t.Errorf("inner deletes %v, want exactly the compensating one", dels)
	} else {
		checkCall(t, dels[0], "delete", testAliasZone, testStaticAlias, "tok")
	}
}

// TestProviderSameValueRefcount presents one value several times: it stays
// at the alias until the last user deletes it, and the inner provider
// deletes it exactly once.
func TestProviderSameValueRefcount(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		w := &fakeWriter{}
		p := staticProvider(t, w)
		out := mustAppend(t, p, "example.com.", txt("_acme-challenge", "tok"))
		mustAppend(t, p, "example.com.", txt("_acme-challenge", "tok"))
		if n := len(w.callsOf("append")); n != 1 {
			t.Errorf("%d inner appends, want 1", n)
		}
		mustDelete(t, p, "example.com.", out...)
		if n := len(w.callsOf("delete")); n != 0 || len(p.Presented()) != 1 {
			t.Errorf("after the first of two deletes: %d inner deletes, presented %v; want 0 and still listed", n, p.Presented())
		}
		mustDelete(t, p, "example.com.", out...)
		if n := len(w.callsOf("delete")); n != 1 || len(p.Presented()) != 0 || !w.empty() {
			t.Errorf("after the last delete: %d inner deletes, presented %v", n, p.Presented())
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		for round := range 20 {
			w := &fakeWriter{}
			p := staticProvider(t, w)
			const users = 16
			outs := make([][]libdns.Record, users)
			var wg sync.WaitGroup
			for i := range users {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					if outs[i], err = p.AppendRecords(context.Background(), "example.com.", []libdns.Record{txt("_acme-challenge", "tok")}); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if len(p.Presented()) != 1 {
				t.Fatalf("round %d: Presented = %v, want one entry", round, p.Presented())
			}
			for i := range users {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := p.DeleteRecords(context.Background(), "example.com.", outs[i]); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if n := len(w.callsOf("delete")); n != 1 {
				t.Fatalf("round %d: %d inner deletes, want exactly 1", round, n)
			}
			if len(p.Presented()) != 0 || !w.empty() {
				t.Fatalf("round %d: left behind: presented %v, alias %q", round, p.Presented(), w.values(testStaticAlias))
			}
		}
	})
}

func TestProviderRulesPickWriters(t *testing.T) {
	wDefault, wNet := &fakeWriter{}, &fakeWriter{}
	def := mustValidate(t, &Rule{Alias: mustTemplate(t, "_acme-challenge.{domain}."+testAliasZone), Zones: []string{testAliasZone}, Writer: wDefault, WriterName: "default"})
	net := mustValidate(t, &Rule{Match: []string{"*.example.net", "example.net"}, Alias: mustTemplate(t, "_acme-challenge.acme.example.net"),
		Zones: []string{"acme.example.net"}, Writer: wNet, WriterName: "net"})
	d := newFakeDNS(testAliasZone, "acme.example.net")
	d.cname("_acme-challenge.shop.example.com", "_acme-challenge.shop.example.com."+testAliasZone)
	d.cname("_acme-challenge.shop.example.net", "_acme-challenge.acme.example.net")
	d.cname("_acme-challenge.example.net", "_acme-challenge.acme.example.net")
	res, _ := newTestResolver(t, d)
	p := &Provider{Mapper: &Mapper{Rules: []*Rule{net}, Default: def, Resolver: res}}

	com := mustAppend(t, p, "example.com.", txt("_acme-challenge.shop", "com"))
	nets := mustAppend(t, p, "example.net.", txt("_acme-challenge.shop", "net"), txt("_acme-challenge", "apex"))
	if got := com[0].RR().Name; got != "_acme-challenge.shop.example.com."+testAliasZone+"." {
		t.Errorf("example.com record returned at %s", got)
	}
	if a := wDefault.callsOf("append"); len(a) != 1 {
		t.Errorf("default writer appends %v, want 1", a)
	} else {
		checkCall(t, a[0], "append", testAliasZone, "_acme-challenge.shop.example.com."+testAliasZone, "com")
	}
	if a := wNet.callsOf("append"); len(a) != 2 {
		t.Errorf("net writer appends %v, want 2", a)
	} else {
		checkCall(t, a[0], "append", "acme.example.net", "_acme-challenge.acme.example.net", "net")
		checkCall(t, a[1], "append", "acme.example.net", "_acme-challenge.acme.example.net", "apex")
	}
	mustDelete(t, p, "example.net.", nets...)
	mustDelete(t, p, "example.com.", com...)
	if !wDefault.empty() || !wNet.empty() || len(wDefault.callsOf("delete")) != 1 || len(wNet.callsOf("delete")) != 2 {
		t.Errorf("cleanup went wrong: default %v, net %v", wDefault.getCalls(), wNet.getCalls())
	}
}

func TestProviderFollowConcurrent(t *testing.T) {
	d := newFakeDNS("example.com", testAliasZone)
	const domains = 32
	for i := range domains {
		dom := fmt.Sprintf("d%d.example.com", i)
		hop := fmt.Sprintf("_acme-challenge.D%d.Example.com.hop.example.net.", i)
		d.chain(ChallengeName(dom), hop, ChallengeName(dom)+"."+testAliasZone)
	}
	w := &fakeWriter{}
	p, _ := followProvider(t, d, w)
	var wg sync.WaitGroup
	for i := range domains * 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zone := fmt.Sprintf("d%d.example.com.", i%domains)
			value := fmt.Sprintf("v%d", i)
			out, err := p.AppendRecords(context.Background(), zone, []libdns.Record{txt("_acme-challenge", value)})
			if err != nil {
				t.Error(err)
				return
			}
			if want := "_acme-challenge." + zone + testAliasZone + "."; out[0].RR().Name != want {
				t.Errorf("returned %s, want %s", out[0].RR().Name, want)
			}
			if _, err := p.DeleteRecords(context.Background(), zone, out); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, c := range w.getCalls() {
		if c.zone != testAliasZone+"." || len(c.recs) != 1 || c.recs[0].Type != "TXT" {
			t.Errorf("inner call %v", c)
		}
	}
	if n := len(w.getCalls()); n != 4*domains {
		t.Errorf("%d inner calls, want %d", n, 4*domains)
	}
	if !w.empty() || len(p.Presented()) != 0 {
		t.Errorf("left behind: presented %v", p.Presented())
	}
}

// TestRememberedCheck: a whole check that passed moments ago (the gate's,
// before the order) stands in for the write's own, for the domain and its
// wildcard, and asks nothing; after VerifiedFor the write checks again,
// and a delegation that broke meanwhile is refused then.
func TestRememberedCheck(t *testing.T) {
	const alias = "_acme-challenge.shop.example.com." + testAliasZone
	d := newFakeDNS("example.com", testAliasZone)
	d.cname("_acme-challenge.shop.example.com", alias)
	w := &fakeWriter{}
	p, clk := followProvider(t, d, w)
	memory := newFakeClock() // the memo's, apart from the resolver cache's
	p.Memo = &Memo{now: memory.Now}
	target, err := p.Mapper.Resolve(context.Background(), "shop.example.com")
	if target.Name != alias {
		t.Fatalf("Resolve: %v", err)
	}
	p.Memo.Remember("*.shop.example.com", target)

	// The delegation breaks; the remembered pass still stands in.
	delete(d.cnames, "_acme-challenge.shop.example.com")
	clk.Advance(time.Hour) // past the resolver cache
	queries := d.total()
	mustAppend(t, p, "shop.example.com.", txt("_acme-challenge", "one"))
	if n := d.total() - queries; n != 0 {
		t.Errorf("the write asked %d queries after a pass moments ago, want none", n)
	}
	memory.Advance(VerifiedFor)
	_, err = p.AppendRecords(context.Background(), "shop.example.com.", []libdns.Record{txt("_acme-challenge", "two")})
	if err == nil || !strings.Contains(err.Error(), "shop.example.com") {
		t.Fatalf("AppendRecords after VerifiedFor = %v, want the broken delegation refused", err)
	}
	if got := w.values(alias); len(got) != 1 || got[0] != digest("one") {
		t.Errorf("values at the alias: %v, want only the first", got)
	}
}
