package acmednsserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"
)

const zone = "acme.validation.example.org"

// digest is a value with the shape of an ACME DNS-01 digest.
func digest(label string) string {
	sum := sha256.Sum256([]byte(label))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// fakeRecords keeps the values at each name, and when each was written
// and last renewed, as the journal does; removeErr fails removes, and
// unserved makes every write not yet served.
type fakeRecords struct {
	mu        sync.Mutex
	values    map[string][]string
	times     map[string][2]time.Time // name+" "+value -> written, seen
	writes    int
	removeErr error
	unserved  bool
}

func (f *fakeRecords) Present(_ context.Context, name, value string, _ time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.values == nil {
		f.values, f.times = map[string][]string{}, map[string][2]time.Time{}
	}
	f.writes++
	f.values[name] = append(f.values[name], value)
	f.times[name+" "+value] = [2]time.Time{time.Now(), time.Now()}
	return !f.unserved, nil
}

func (f *fakeRecords) Remove(_ context.Context, name, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removeErr != nil {
		return f.removeErr
	}
	i := slices.Index(f.values[name], value)
	if i < 0 {
		return fmt.Errorf("%s holds no %s", name, value)
	}
	f.values[name] = slices.Delete(f.values[name], i, i+1)
	delete(f.times, name+" "+value)
	return nil
}

func (f *fakeRecords) Held(context.Context) ([]Held, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Held
	for name, values := range f.values {
		for _, v := range values {
			t := f.times[name+" "+v]
			out = append(out, Held{name, v, t[0], t[1]})
		}
	}
	return out, nil
}

func (f *fakeRecords) Keep(_ context.Context, h Held, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.values[h.Name], h.Value) {
		return fmt.Errorf("%s holds no %s", h.Name, h.Value)
	}
	f.times[h.Name+" "+h.Value] = [2]time.Time{h.Written, time.Now()}
	return nil
}

// at lists the values at name, oldest written first.
func (f *fakeRecords) at(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.values[name])
	slices.SortStableFunc(out, func(x, y string) int { return f.times[name+" "+x][0].Compare(f.times[name+" "+y][0]) })
	return out
}

type countingObserver struct {
	mu  sync.Mutex
	got map[string]int
}

func (o *countingObserver) Updated(account string, out Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.got == nil {
		o.got = map[string]int{}
	}
	o.got[account+"/"+string(out)]++
}

func hash(t testing.TB, key string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// testServer has accounts alice (any source) and bob (10.0.0.0/8 only).
func testServer(t testing.TB, limits Limits) (*Server, *fakeRecords, *observer.ObservedLogs, *countingObserver) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	recs, obs := &fakeRecords{}, &countingObserver{}
	s, err := New(Config{
		Zone: zone,
		Accounts: []Account{
			{Username: "alice", KeyHash: hash(t, "alice-key"), Subdomain: "a1"},
			{Username: "bob", KeyHash: hash(t, "bob-key"), Subdomain: "b1", AllowFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		},
		Records: recs, Logger: zap.New(core), Observer: obs, Limits: limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, recs, logs, obs
}

func update(s *Server, src, user, key, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/update", strings.NewReader(body))
	r.RemoteAddr = net.JoinHostPort(src, "40000")
	if user != "" {
		r.Header.Set("X-Api-User", user)
	}
	if key != "" {
		r.Header.Set("X-Api-Key", key)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func body(sub, txt string) string { return fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, sub, txt) }

func TestUpdate(t *testing.T) {
	v := digest("v")
	for _, tc := range []struct {
		name, src, user, key, body string
		status                     int
		code                       string
		outcome                    string
		written                    map[string][]string
	}{
		{"written", "192.0.2.1", "alice", "alice-key", body("a1", v), 200, `"txt":"` + v, "alice/written", map[string][]string{"a1." + zone: {v}}},
		{"allowed source", "10.1.2.3", "bob", "bob-key", body("b1", v), 200, `"txt"`, "bob/written", map[string][]string{"b1." + zone: {v}}},
		{"source outside allow_from", "192.0.2.1", "bob", "bob-key", body("b1", v), 401, "forbidden", "bob/refused_auth", nil},
		{"wrong key", "192.0.2.1", "alice", "bob-key", body("a1", v), 401, "forbidden", "alice/refused_auth", nil},
		{"no key", "192.0.2.1", "alice", "", body("a1", v), 401, "forbidden", "alice/refused_auth", nil},
		{"unknown user", "192.0.2.1", "mallory", "alice-key", body("a1", v), 401, "forbidden", "/refused_auth", nil},
		{"another account's subdomain", "10.1.2.3", "bob", "bob-key", body("a1", v), 401, "forbidden", "bob/refused_auth", nil},
		{"not a digest", "192.0.2.1", "alice", "alice-key", body("a1", "hello"), 400, "bad_txt", "alice/refused_value", nil},
		{"digest with a dot", "192.0.2.1", "alice", "alice-key", body("a1", v[:42]+"."), 400, "bad_txt", "alice/refused_value", nil},
		// acme-dns answers a body it cannot decode 401 forbidden.
		{"not JSON", "192.0.2.1", "alice", "alice-key", "subdomain=a1", 401, "forbidden", "alice/refused_value", nil},
		{"body too large", "192.0.2.1", "alice", "alice-key", `{"subdomain":"a1","txt":"` + strings.Repeat("x", 2000) + `"}`, 401, "forbidden", "alice/refused_value", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, recs, _, obs := testServer(t, Limits{})
			w := update(s, tc.src, tc.user, tc.key, tc.body)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.code) {
				t.Fatalf("status %d %s, want %d with %q", w.Code, w.Body, tc.status, tc.code)
			}
			if obs.got[tc.outcome] != 1 || len(obs.got) != 1 {
				t.Errorf("outcomes %v, want %s once", obs.got, tc.outcome)
			}
			got := recs.values
			if len(got) == 0 {
				got = nil
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.written) {
				t.Errorf("written %v, want %v", got, tc.written)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := Account{Username: "u", KeyHash: hash(t, "k"), Subdomain: "s"}
	with := func(f func(*Account)) []Account { a := good; f(&a); return []Account{a} }
	for _, tc := range []struct {
		name     string
		zone     string
		accounts []Account
		want     string
	}{
		{"public suffix zone", "com", []Account{good}, "zone"},
		{"no username", zone, with(func(a *Account) { a.Username = "" }), "accounts[0]: username"},
		{"a metrics label as username", zone, with(func(a *Account) { a.Username = "registered" }), "accounts[0]: username \"registered\": taken by the metrics"},
		{"key instead of hash", zone, with(func(a *Account) { a.KeyHash = "the-secret-key" }), "accounts[0]: key_hash of u: not a bcrypt hash"},
		{"dotted subdomain", zone, with(func(a *Account) { a.Subdomain = "a.b" }), "subdomain \"a.b\""},
		{"upper case subdomain", zone, with(func(a *Account) { a.Subdomain = "S" }), "subdomain \"S\""},
		{"long label", zone, with(func(a *Account) { a.Subdomain = strings.Repeat("x", 64) }), "subdomain"},
		{"same user twice", zone, []Account{good, good}, "accounts[1]: username \"u\" appears twice"},
		{"same subdomain twice", zone, []Account{good, {Username: "v", KeyHash: good.KeyHash, Subdomain: "s"}}, "accounts[1]: subdomain \"s\" is u's already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Zone: tc.zone, Accounts: tc.accounts, Records: &fakeRecords{}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "the-secret-key") {
				t.Fatalf("error shows the key: %v", err)
			}
		})
	}
}

// TestUnknownUserCostsTheHighestCost: a user name no account has is
// checked at the cost of the most expensive existing user, so that the
// time of a refusal does not tell which user names exist.
func TestUnknownUserCostsTheHighestCost(t *testing.T) {
	hashAt := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("k"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	low, high := bcrypt.MinCost, bcrypt.MinCost+2
	for _, tc := range []struct {
		name     string
		accounts []Account
		register *Register
		want     int
	}{
		{"no account", nil, nil, bcrypt.MinCost},
		{"one cost", []Account{{Username: "a", KeyHash: hashAt(low), Subdomain: "a"}}, nil, low},
		{"the highest of two", []Account{
			{Username: "a", KeyHash: hashAt(low), Subdomain: "a"},
			{Username: "b", KeyHash: hashAt(high), Subdomain: "b"},
		}, nil, high},
		{"registration's cost", []Account{{Username: "a", KeyHash: hashAt(low), Subdomain: "a"}},
			&Register{AllowFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Store: &memStore{}, Cost: high}, high},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Zone: zone, Accounts: tc.accounts, Records: &fakeRecords{}, Register: tc.register})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := bcrypt.Cost(s.auth.unknownUserHash); err != nil || got != tc.want {
				t.Fatalf("unknown user's cost %d (%v), want %d", got, err, tc.want)
			}
		})
	}
}

// TestKeyNeverLogged: neither a right nor a wrong key, nor a key sent as
// the user name, appears in the log.
func TestKeyNeverLogged(t *testing.T) {
	s, _, logs, _ := testServer(t, Limits{})
	update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest("x")))
	update(s, "192.0.2.1", "alice", "wrong-key-123", body("a1", digest("y")))
	update(s, "192.0.2.1", "pasted-key-456", "alice-key", body("a1", digest("y")))
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, secret := range []string{"alice-key", "wrong-key-123", "pasted-key-456"} {
			if strings.Contains(line, secret) {
				t.Errorf("log shows %q: %s", secret, line)
			}
		}
	}
	if logs.Len() != 3 {
		t.Errorf("%d log lines, want 3", logs.Len())
	}
}

// TestRateLimits: the requests of an account, or of a source, beyond their
// burst within one instant are refused. Each case runs in a synctest
// bubble, where the key checks take no time: on the wall clock, a run
// slower than a second (bcrypt under the race detector on a busy machine)
// got a token back and let the third request through (2 runs of 50).
func TestRateLimits(t *testing.T) {
	t.Run("account", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, _, _, obs := testServer(t, Limits{AccountRate: 1, AccountBurst: 2})
			codes := []int{}
			for i := range 3 {
				codes = append(codes, update(s, "192.0.2.1", "alice", "alice-key", body("a1", digest(fmt.Sprint(i)))).Code)
			}
			if !slices.Equal(codes, []int{200, 200, 429}) || obs.got["alice/refused_rate"] != 1 {
				t.Fatalf("codes %v, outcomes %v", codes, obs.got)
			}
		})
	})
	t.Run("source, before the key check", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, _, _, obs := testServer(t, Limits{SourceRate: 1, SourceBurst: 2})
			codes := []int{}
			for range 3 {
				codes = append(codes, update(s, "2001:db8::1", "alice", "wrong", body("a1", digest("x"))).Code)
			}
			// Another address of the same /64 shares the bucket; another
			// network does not.
			codes = append(codes, update(s, "2001:db8::2", "alice", "wrong", body("a1", digest("x"))).Code)
			codes = append(codes, update(s, "2001:db8:1::1", "alice", "wrong", body("a1", digest("x"))).Code)
			if !slices.Equal(codes, []int{401, 401, 429, 429, 401}) || obs.got["/refused_rate"] != 2 {
				t.Fatalf("codes %v, outcomes %v", codes, obs.got)
			}
		})
	})
}
