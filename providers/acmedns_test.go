package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libdns/libdns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/acme-alias/caddy-dns-alias/internal/acmednstest"
)

const (
	testUser     = "c36f50e8-4632-44f0-83fe-e070fef28a10"
	testPassword = "htB9mR9DYgcu9bX_afHF62erXaH2TS7bg9KW3F7Z"
)

// val returns a valid 43-character challenge value.
func val(s string) string {
	return (s + strings.Repeat("x", ACMEDNSValueLen))[:ACMEDNSValueLen]
}

func txtRec(name, value string) []libdns.Record {
	return []libdns.Record{libdns.TXT{Name: name, TTL: 60, Text: value}}
}

type recorded struct {
	path, method, user, key, contentType string
	body                                 map[string]string
	raw                                  string
}

// recorder is an in-process acme-dns that records every request and
// answers with status and body. Its client reaches it without the network,
// so that tests can run in a synctest bubble.
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	status int
	body   string
	closed bool // its client's connections are refused
	url    string
}

func newRecorder() *recorder {
	return &recorder{status: http.StatusOK, url: "http://acme-dns.test:8080"}
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	data, _ := io.ReadAll(req.Body)
	var body map[string]string
	_ = json.Unmarshal(data, &body)
	r.mu.Lock()
	r.reqs = append(r.reqs, recorded{req.URL.Path, req.Method, req.Header.Get("X-Api-User"), req.Header.Get("X-Api-Key"),
		req.Header.Get("Content-Type"), body, string(data)})
	status, answer := r.status, r.body
	r.mu.Unlock()
	if answer == "" && status == http.StatusOK {
		answer = fmt.Sprintf(`{"txt": %q}`, body["txt"])
	}
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

// client returns an HTTP client that hands requests to r in-process, or
// fails them as a refused connection once r is closed.
func (r *recorder) client() *http.Client {
	in := acmednstest.InProcessClient(r).Transport
	return &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		return in.RoundTrip(req)
	})}
}

// close makes the recorder's address refuse connections.
func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

func (r *recorder) answer(status int, body string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.body = status, body
}

// uniqueSub returns a fresh subdomain, so that every test has its own
// account bookkeeping.
func uniqueSub() string {
	return fmt.Sprintf("%08x-aaaa-4bbb-8ccc-%012x", rand.Uint32(), rand.Uint64()&0xffffffffffff)
}

func recorderWriter(t *testing.T, r *recorder) (*ACMEDNSWriter, ACMEDNSAccount) {
	t.Helper()
	sub := uniqueSub()
	acct := ACMEDNSAccount{Server: r.url + "/", Username: testUser, Password: testPassword,
		Subdomain: sub, FullDomain: sub + ".auth.acme-dns.example."}
	w, err := NewACMEDNSWriter(acct, r.client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return w, acct
}

func TestACMEDNSAppendSendsUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		w, acct := recorderWriter(t, r)
		full := strings.TrimSuffix(acct.FullDomain, ".")
		ctx := context.Background()

		// The wrapper's form: relative "@" in the fulldomain's zone.
		got, err := w.AppendRecords(ctx, full+".", txtRec("@", val("one")))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].RR().Data != val("one") {
			t.Errorf("returned %v", got)
		}
		// Absolute, upper case, without the trailing dot in the zone.
		if _, err := w.DeleteRecords(ctx, full, got); err != nil {
			t.Fatal(err)
		}
		if _, err := w.AppendRecords(ctx, "auth.acme-dns.example", txtRec(strings.ToUpper(full)+".", val("two"))); err != nil {
			t.Fatal(err)
		}
		reqs := r.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2 (DeleteRecords sends nothing): %+v", len(reqs), reqs)
		}
		for i, want := range []string{val("one"), val("two")} {
			q := reqs[i]
			if q.method != http.MethodPost || q.path != "/update" || q.user != testUser || q.key != testPassword || q.contentType != "application/json" {
				t.Errorf("request %d: %+v", i, q)
			}
			if len(q.body) != 2 || q.body["subdomain"] != acct.Subdomain || q.body["txt"] != want {
				t.Errorf("request %d body %s, want {subdomain: %s, txt: %s}", i, q.raw, acct.Subdomain, want)
			}
		}
	})
}

func TestACMEDNSRefusesBeforeSending(t *testing.T) {
	r := newRecorder()
	w, acct := recorderWriter(t, r)
	full := strings.TrimSuffix(acct.FullDomain, ".")
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		zone    string
		records []libdns.Record
		want    []string
	}{
		{"other name", "validation.example.org.", txtRec("_acme-challenge", val("a")),
			[]string{"_acme-challenge.validation.example.org", full}},
		{"name below the fulldomain", full + ".", txtRec("x", val("a")), []string{"x." + full, full}},
		{"parent of the fulldomain", "auth.acme-dns.example.", txtRec("@", val("a")), []string{"auth.acme-dns.example", full}},
		{"not TXT", full + ".", []libdns.Record{libdns.CNAME{Name: "@", Target: "x.example."}}, []string{"CNAME", full}},
		{"42 characters", full + ".", txtRec("@", val("a")[:42]), []string{"42 characters", "43"}},
		{"44 characters", full + ".", txtRec("@", val("a")+"x"), []string{"44 characters", "43"}},
		{"not base64url", full + ".", txtRec("@", val("a")[:42]+"="), []string{"A-Z a-z 0-9 - _"}},
		{"one bad record of two", full + ".", append(txtRec("@", val("a")), txtRec("other", val("b"))...), []string{"other." + full}},
	} {
		_, err := w.AppendRecords(ctx, tc.zone, tc.records)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, s := range append(tc.want, "nothing was sent") {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, s)
			}
		}
	}
	if n := len(r.requests()); n != 0 {
		t.Errorf("%d requests sent for refused records", n)
	}
}

func TestACMEDNSErrorsNameServerNeverPassword(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		w, acct := recorderWriter(t, r)
		full := strings.TrimSuffix(acct.FullDomain, ".")
		ctx := context.Background()

		r.answer(http.StatusUnauthorized, `{"error": "forbidden"}`)
		_, err := w.AppendRecords(ctx, full, txtRec("@", val("a")))
		if err == nil {
			t.Fatal("no error for 401")
		}
		for _, s := range []string{r.url, full, "401", "forbidden"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not mention %q", err, s)
			}
		}
		// A server (or proxy) that echoes the key.
		r.answer(http.StatusBadGateway, fmt.Sprintf(`{"error": "upstream rejected key %s"}`, testPassword))
		_, err2 := w.AppendRecords(ctx, full, txtRec("@", val("b")))

		// Failed updates hold no slot: two more values go through at once.
		r.answer(http.StatusOK, "")
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, v := range []string{val("d"), val("e")} {
			if _, err := w.AppendRecords(tctx, full, txtRec("@", v)); err != nil {
				t.Fatalf("after failed updates: %v", err)
			}
		}

		// Nothing listening any more.
		r.close()
		w.DeleteRecords(ctx, full, txtRec("@", val("d")))
		_, err3 := w.AppendRecords(tctx, full, txtRec("@", val("f")))
		for i, e := range []error{err, err2, err3} {
			if e == nil {
				t.Errorf("error %d: nil", i)
				continue
			}
			if strings.Contains(e.Error(), testPassword) {
				t.Errorf("error %d contains the password: %v", i, e)
			}
			if !strings.Contains(e.Error(), full) || !strings.Contains(e.Error(), r.url) {
				t.Errorf("error %d does not name the fulldomain and the server: %v", i, e)
			}
		}
		t.Logf("errors: %v / %v / %v", err, err2, err3)
	})
}

func TestACMEDNSAccountValidate(t *testing.T) {
	good := ACMEDNSAccount{Server: "https://auth.acme-dns.io", Username: testUser, Password: testPassword,
		Subdomain: "d420c923-bbd7-4056-ab64-c3ca54c9b3cf", FullDomain: "d420c923-bbd7-4056-ab64-c3ca54c9b3cf.auth.acme-dns.io"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*ACMEDNSAccount)
		want string
	}{
		{func(a *ACMEDNSAccount) { a.Server = "" }, "server: missing"},
		{func(a *ACMEDNSAccount) { a.Username = "" }, "username: missing"},
		{func(a *ACMEDNSAccount) { a.Password = " " }, "password: missing"},
		{func(a *ACMEDNSAccount) { a.Subdomain = "" }, "subdomain: missing"},
		{func(a *ACMEDNSAccount) { a.FullDomain = "" }, "fulldomain: missing"},
		{func(a *ACMEDNSAccount) { a.Server = "auth.acme-dns.io" }, "server: \"auth.acme-dns.io\" is not an http:// or https:// URL"},
		{func(a *ACMEDNSAccount) { a.Server = "ftp://auth.acme-dns.io" }, "server:"},
		{func(a *ACMEDNSAccount) { a.Server = "https://u:" + testPassword + "@auth.acme-dns.io" }, "carries credentials"},
		{func(a *ACMEDNSAccount) { a.FullDomain = "other.auth.acme-dns.io" }, "does not start with the subdomain"},
		{func(a *ACMEDNSAccount) { a.FullDomain = "a b.example" }, "fulldomain:"},
	} {
		a := good
		tc.mod(&a)
		err := a.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", a, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), testPassword) {
			t.Errorf("error contains the password: %v", err)
		}
	}
}

// standIn starts the stand-in server and registers a fresh account on it.
// It listens on the network, so it is started outside a synctest bubble;
// the writers in the bubble reach it in-process (standInWriter).
func standIn(t *testing.T) (*acmednstest.Server, acmednstest.Account) {
	t.Helper()
	s, err := acmednstest.Start(acmednstest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a, err := s.Register(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, a
}

// standInWriter returns a writer of account a that reaches s in-process.
// The account's bookkeeping is made with the account's first writer: in a
// synctest test, inside the bubble.
func standInWriter(t *testing.T, s *acmednstest.Server, a acmednstest.Account, logger *zap.Logger) *ACMEDNSWriter {
	t.Helper()
	w, err := NewACMEDNSWriter(ACMEDNSAccount{Server: s.URL(), Username: a.Username, Password: a.Password,
		Subdomain: a.Subdomain, FullDomain: a.FullDomain}, s.Client(), logger)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// appendAsync runs AppendRecords in a goroutine; the channel gets its error.
func appendAsync(ctx context.Context, w *ACMEDNSWriter, value string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", value))
		done <- err
	}()
	return done
}

// mustWait asserts that the call behind done is blocked for good: every
// goroutine of the synctest bubble is blocked, and done holds nothing.
func mustWait(t *testing.T, done <-chan error, what string) {
	t.Helper()
	synctest.Wait()
	select {
	case err := <-done:
		t.Fatalf("%s: did not wait (err %v)", what, err)
	default:
	}
}

func mustFinish(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting", what)
	}
}

func TestACMEDNSThirdWaitsForTheValueItEvicts(t *testing.T) {
	s, a := standIn(t)
	synctest.Test(t, func(t *testing.T) {
		w := standInWriter(t, s, a, nil)
		ctx := context.Background()
		A, B, C := val("A"), val("B"), val("C")
		for _, v := range []string{A, B} {
			if _, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", v)); err != nil {
				t.Fatal(err)
			}
		}
		third := appendAsync(ctx, w, C)
		mustWait(t, third, "third value while two are in flight")

		// B's challenge ends first: writing C would still evict A.
		if _, err := w.DeleteRecords(ctx, w.FullDomain(), txtRec("@", B)); err != nil {
			t.Fatal(err)
		}
		mustWait(t, third, "third value while the older one (A) is in flight")
		if got := s.Values(a.Subdomain); !slices.Contains(got, A) {
			t.Fatalf("A evicted while in flight: %v", got)
		}

		if _, err := w.DeleteRecords(ctx, w.FullDomain(), txtRec("@", A)); err != nil {
			t.Fatal(err)
		}
		mustFinish(t, third, "third value after A's delete")
		if got := s.Values(a.Subdomain); !slices.Equal(got, []string{C, B}) {
			t.Errorf("served values %v, want [C B]", got)
		}
		if n := len(s.Updates()); n != 3 {
			t.Errorf("%d updates, want 3", n)
		}
	})
}

func TestACMEDNSWaitHonoursContext(t *testing.T) {
	s, a := standIn(t)
	synctest.Test(t, func(t *testing.T) {
		w := standInWriter(t, s, a, nil)
		ctx := context.Background()
		for _, v := range []string{val("A"), val("B")} {
			if _, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", v)); err != nil {
				t.Fatal(err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := w.AppendRecords(cctx, w.FullDomain(), txtRec("@", val("C")))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want context.DeadlineExceeded", err)
		}
		if !strings.Contains(err.Error(), w.FullDomain()) || time.Since(start) > 3*time.Second {
			t.Errorf("err %v after %s", err, time.Since(start))
		}
		// A cancelled waiter, queued behind another, gives up its turn too.
		waiter := appendAsync(ctx, w, val("D"))
		mustWait(t, waiter, "D")
		cctx2, cancel2 := context.WithCancel(ctx)
		queued := appendAsync(cctx2, w, val("E"))
		mustWait(t, queued, "E, queued behind D")
		cancel2()
		if err := <-queued; !errors.Is(err, context.Canceled) {
			t.Errorf("queued waiter: %v, want context.Canceled", err)
		}
		if _, err := w.DeleteRecords(ctx, w.FullDomain(), txtRec("@", val("A"))); err != nil {
			t.Fatal(err)
		}
		mustFinish(t, waiter, "D after A's delete")
		if n := len(s.Updates()); n != 3 {
			t.Errorf("%d updates, want 3 (A, B, D; C and E gave up)", n)
		}
	})
}

func TestACMEDNSReleaseNeverMoreThanAcquired(t *testing.T) {
	s, a := standIn(t)
	synctest.Test(t, func(t *testing.T) {
		w := standInWriter(t, s, a, nil)
		ctx := context.Background()
		A, B := val("A"), val("B")
		for _, v := range []string{A, B} {
			if _, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", v)); err != nil {
				t.Fatal(err)
			}
		}
		// A deleted twice, a value never written, an empty delete.
		for _, recs := range [][]libdns.Record{txtRec("@", A), txtRec("@", A), txtRec("@", val("never")), nil} {
			if _, err := w.DeleteRecords(ctx, w.FullDomain(), recs); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", val("C"))); err != nil {
			t.Fatal(err)
		}
		// B is still in flight and the older of [B, C]: D must wait.
		cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		if _, err := w.AppendRecords(cctx, w.FullDomain(), txtRec("@", val("D"))); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("D: %v; extra deletes of A freed B's slot", err)
		}
		if n := len(s.Updates()); n != 3 {
			t.Errorf("%d updates, want 3", n)
		}
	})
}

func TestACMEDNSAccountSharedByWriters(t *testing.T) {
	s, a := standIn(t)
	// Another account on the same server, registered before the bubble.
	b, err := s.Register(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		w1 := standInWriter(t, s, a, nil)
		w2 := standInWriter(t, s, a, nil)
		ctx := context.Background()
		if _, err := w1.AppendRecords(ctx, w1.FullDomain(), txtRec("@", val("A"))); err != nil {
			t.Fatal(err)
		}
		if _, err := w2.AppendRecords(ctx, w2.FullDomain(), txtRec("@", val("B"))); err != nil {
			t.Fatal(err)
		}
		third := appendAsync(ctx, w1, val("C"))
		mustWait(t, third, "third value through another writer of the account")
		if _, err := w2.DeleteRecords(ctx, w2.FullDomain(), txtRec("@", val("A"))); err != nil {
			t.Fatal(err)
		}
		mustFinish(t, third, "third value")

		// Another account on the same server is independent: its write
		// waits neither for a slot nor for the next second.
		other := standInWriter(t, s, b, nil)
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		if _, err := other.AppendRecords(tctx, other.FullDomain(), txtRec("@", val("X"))); err != nil {
			t.Fatalf("other account: %v", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("other account's write waited %s", waited)
		}
	})
}

// TestACMEDNSConcurrentChallengesKeepTheirValues runs many challenges on one
// account at once: each must see its own value served from its Append to
// its Delete.
func TestACMEDNSConcurrentChallengesKeepTheirValues(t *testing.T) {
	s, a := standIn(t)
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.DebugLevel)
		w := standInWriter(t, s, a, zap.New(core))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for i := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := val(fmt.Sprintf("value%d", i))
				if _, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", v)); err != nil {
					errs <- err
					return
				}
				for range 3 {
					if !slices.Contains(s.Values(a.Subdomain), v) {
						errs <- fmt.Errorf("challenge %d: value no longer served while in flight: %v", i, s.Values(a.Subdomain))
						return
					}
					// On the bubble's clock: three of these hold a value longer
					// than the 1 s between two updates of an account, so that
					// later challenges must wait for a slot. Staggered, so
					// that the challenges finish in turn.
					time.Sleep(time.Duration(400+60*i) * time.Millisecond)
				}
				if _, err := w.DeleteRecords(ctx, w.FullDomain(), txtRec("@", v)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := len(s.Updates()); n != 5 {
			t.Errorf("%d updates, want 5", n)
		}
		sent := logs.FilterMessage("acme-dns update sent").All()
		if len(sent) != 5 {
			t.Errorf("%d update logs, want 5", len(sent))
		}
		for _, e := range sent {
			if n := e.ContextMap()["in_flight"].(int64); n > 2 || n < 1 {
				t.Errorf("an update left %d values in flight", n)
			}
		}
		if logs.FilterMessageSnippet("waiting").Len() == 0 {
			t.Errorf("no challenge of five concurrent ones waited for its turn")
		}
		if logs.FilterMessageSnippet("has no delete").Len() != 5 {
			t.Errorf("want one debug line per skipped delete")
		}
		for _, e := range logs.All() {
			if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), a.Password) {
				t.Errorf("log entry shows the password: %v", e)
			}
		}
	})
}

// TestACMEDNSStaleValueStopsBlocking: a value whose delete never comes
// counts as in use for slotTTL at most, so the account cannot be blocked for
// good.
func TestACMEDNSStaleValueStopsBlocking(t *testing.T) {
	s, a := standIn(t)
	synctest.Test(t, func(t *testing.T) {
		w := standInWriter(t, s, a, nil)
		w.state.slotTTL = 2 * time.Second
		core, logs := observer.New(zap.DebugLevel)
		w.logger = zap.New(core)
		ctx := context.Background()
		for _, v := range []string{val("A"), val("B")} {
			if _, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", v)); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		if _, err := w.AppendRecords(ctx, w.FullDomain(), txtRec("@", val("C"))); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 500*time.Millisecond || took > 5*time.Second {
			t.Errorf("third value written after %s, want after A's 2 s", took)
		}
		if logs.FilterMessageSnippet("longer than a challenge").Len() != 1 {
			t.Errorf("no warning about the stale value")
		}
		// A's late delete frees nothing more.
		w.DeleteRecords(ctx, w.FullDomain(), txtRec("@", val("A")))
		if n := len(s.Updates()); n != 3 {
			t.Errorf("%d updates, want 3", n)
		}
	})
}

// TestACMEDNSErrorRedactedBeforeCut: a server error that echoes the
// password is redacted before it is cut to 100 characters (a cut password
// no longer matches, and its first characters leaked) and before it is
// quoted (%q escapes '"' and '\', and the escaped password no longer
// matched).
func TestACMEDNSErrorRedactedBeforeCut(t *testing.T) {
	r := newRecorder()
	for _, tc := range []struct{ name, password, errText string }{
		{"cut inside the password", testPassword, strings.Repeat("x", 85) + " key " + testPassword + " refused"},
		{"quote and backslash", `pa"ss\wo` + testPassword[8:], "upstream rejected key " + `pa"ss\wo` + testPassword[8:]},
		{"quote and backslash cut", `pa"ss\wo` + testPassword[8:], strings.Repeat("y", 80) + `pa"ss\wo` + testPassword[8:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := uniqueSub()
			w, err := NewACMEDNSWriter(ACMEDNSAccount{Server: r.url, Username: testUser, Password: tc.password,
				Subdomain: sub, FullDomain: sub + ".auth.acme-dns.example"}, r.client(), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(map[string]string{"error": tc.errText})
			r.answer(http.StatusBadGateway, string(body))
			_, err = w.AppendRecords(context.Background(), sub+".auth.acme-dns.example", txtRec("@", val("a")))
			if err == nil {
				t.Fatal("no error for 502")
			}
			quoted := strings.Trim(fmt.Sprintf("%q", tc.password), `"`)
			for _, spelling := range []string{tc.password, quoted} {
				for n := 8; n <= len(spelling); n++ {
					if strings.Contains(err.Error(), spelling[:n]) {
						t.Fatalf("error shows the first %d characters of the password: %v", n, err)
					}
				}
			}
			if !strings.Contains(err.Error(), "[REDACTED]") {
				t.Errorf("error %v does not say what was redacted", err)
			}
		})
	}
}

// TestACMEDNSRefusesRedirects: a server answering the update with a
// redirect to another host gets an error naming the redirect, and the
// other host gets nothing (Go's client would send X-Api-User and X-Api-Key
// along, and report the write a success).
func TestACMEDNSRefusesRedirects(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var mu sync.Mutex
			var elsewhere []string
			client := acmednstest.InProcessClient(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.Host != "acme-dns.test" {
					mu.Lock()
					elsewhere = append(elsewhere, req.Host+" "+req.Header.Get("X-Api-Key"))
					mu.Unlock()
					return
				}
				// A bidirectional override: Go's client refuses control
				// bytes in a Location, not this.
				w.Header().Set("Location", "http://collector.test/update#\u202egpj.exe")
				w.WriteHeader(status)
			}))
			sub := uniqueSub()
			w, err := NewACMEDNSWriter(ACMEDNSAccount{Server: "https://acme-dns.test", Username: testUser, Password: testPassword,
				Subdomain: sub, FullDomain: sub + ".auth.acme-dns.example"}, client, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = w.AppendRecords(context.Background(), sub+".auth.acme-dns.example.", txtRec("@", val("a")))
			if err == nil {
				t.Fatal("a redirected update reported success")
			}
			for _, want := range []string{"https://acme-dns.test", strconv.Itoa(status), `a redirect to http://collector.test/update#\u202egpj.exe, not followed`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if len(elsewhere) != 0 {
				t.Errorf("the redirect's target got %v", elsewhere)
			}
		})
	}
}

// TestACMEDNSPlainHTTPWarns: plain http:// is for loopback; anywhere else
// the password crosses the network readable, and a warning names the
// account.
func TestACMEDNSPlainHTTPWarns(t *testing.T) {
	for _, tc := range []struct {
		server string
		warns  bool
	}{
		{"http://127.0.0.1:8053", false},
		{"http://[::1]:8053", false},
		{"http://localhost:8053", false},
		{"https://auth.acme-dns.io", false},
		{"http://auth.acme-dns.io", true},
		{"http://10.0.0.5:8053", true},
	} {
		core, logs := observer.New(zap.WarnLevel)
		sub := uniqueSub()
		full := sub + ".auth.acme-dns.example"
		if _, err := NewACMEDNSWriter(ACMEDNSAccount{Server: tc.server, Username: testUser, Password: testPassword,
			Subdomain: sub, FullDomain: full}, nil, zap.New(core)); err != nil {
			t.Fatal(err)
		}
		warned := logs.FilterMessageSnippet("plain http://").FilterField(zap.String("fulldomain", full)).Len() == 1
		if warned != tc.warns {
			t.Errorf("%s: warned %v, want %v (%v)", tc.server, warned, tc.warns, logs.All())
		}
	}
}
