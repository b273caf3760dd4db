package acmednsserver

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// memStore is an AccountStore in memory, shared by the servers of a test
// as Caddy's storage is by a cluster's instances.
type memStore struct {
	mu       sync.Mutex
	accounts map[string]Account
	loads    int
}

func (m *memStore) Load(_ context.Context, user string) (Account, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	a, ok := m.accounts[user]
	return a, ok, nil
}

func (m *memStore) Save(_ context.Context, a Account) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.accounts == nil {
		m.accounts = map[string]Account{}
	}
	m.accounts[a.Username] = a
	return nil
}

func registerServer(t *testing.T, store *memStore, recs *fakeRecords) *Server {
	t.Helper()
	s, err := New(Config{Zone: zone, Records: recs, Register: &Register{
		AllowFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Store: store, Cost: bcrypt.MinCost}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func postRegister(s *Server, src, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(body))
	r.RemoteAddr = net.JoinHostPort(src, "40000")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func TestRegister(t *testing.T) {
	for _, tc := range []struct {
		name, src, body string
		status          int
		code            string
	}{
		{"plain", "10.0.0.1", "", 201, `"fulldomain"`},
		{"with allowfrom", "10.0.0.1", `{"allowfrom":["192.0.2.0/24"]}`, 201, `"allowfrom":["192.0.2.0/24"]`},
		{"source outside allow_from", "192.0.2.1", "", 403, "forbidden"},
		{"bad allowfrom", "10.0.0.1", `{"allowfrom":["192.0.2.0/33"]}`, 400, "invalid_allowfrom_cidr"},
		{"not JSON", "10.0.0.1", `allowfrom`, 400, "malformed_json_payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{}
			w := postRegister(registerServer(t, store, &fakeRecords{}), tc.src, tc.body)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.code) {
				t.Fatalf("status %d %s, want %d with %q", w.Code, w.Body, tc.status, tc.code)
			}
			if stored := len(store.accounts); (tc.status == 201) != (stored == 1) {
				t.Fatalf("%d accounts stored", stored)
			}
		})
	}
	t.Run("off by default", func(t *testing.T) {
		s, _, _, _ := testServer(t, Limits{})
		if w := postRegister(s, "10.0.0.1", ""); w.Code != http.StatusNotFound || s.Handles("/register") {
			t.Fatalf("status %d", w.Code)
		}
	})
	t.Run("no networks", func(t *testing.T) {
		if _, err := New(Config{Zone: zone, Records: &fakeRecords{}, Register: &Register{Store: &memStore{}}}); err == nil || !strings.Contains(err.Error(), "register: allow_from") {
			t.Fatalf("New: %v", err)
		}
	})
}

// TestRegisteredAccountServedByEveryInstance: an account registered on one
// server is served by another on the same store (a cluster), writes at its
// own fulldomain, keeps its allowfrom, and is listed without its key.
func TestRegisteredAccountServedByEveryInstance(t *testing.T) {
	store, recs := &memStore{}, &fakeRecords{}
	a, b := registerServer(t, store, recs), registerServer(t, store, recs)
	w := postRegister(a, "10.0.0.1", `{"allowfrom":["192.0.2.0/24"]}`)
	var reg registration
	if err := json.Unmarshal(w.Body.Bytes(), &reg); err != nil || w.Code != 201 {
		t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	if reg.FullDomain != reg.Subdomain+"."+zone || len(reg.Password) != 40 || !registeredName.MatchString(reg.Username) {
		t.Fatalf("registration %+v", reg)
	}
	if strings.Contains(store.accounts[reg.Username].KeyHash, reg.Password) {
		t.Fatal("the key is stored in the clear")
	}
	if got := update(b, "198.51.100.1", reg.Username, reg.Password, body(reg.Subdomain, digest("x"))); got.Code != 401 {
		t.Fatalf("update from outside its allowfrom: %d", got.Code)
	}
	if got := update(b, "192.0.2.9", reg.Username, reg.Password, body(reg.Subdomain, digest("x"))); got.Code != 200 {
		t.Fatalf("update through the other instance: %d %s", got.Code, got.Body)
	}
	if v := recs.at(reg.FullDomain); len(v) != 1 {
		t.Fatalf("%s holds %v", reg.FullDomain, v)
	}
	loads := store.loads
	update(b, "192.0.2.9", reg.Username, reg.Password, body(reg.Subdomain, digest("y")))
	if store.loads != loads {
		t.Errorf("a used account is read from the store again")
	}
	// A name that registration cannot have made is never looked up.
	update(b, "192.0.2.9", "../../etc/passwd", "k", body("x", digest("y")))
	if store.loads != loads {
		t.Errorf("the store was asked about a name registration never makes")
	}
	list := b.Accounts()
	if len(list) != 1 || !list[0].Registered || list[0].Values != 2 {
		t.Fatalf("Accounts() = %+v", list)
	}
	out, _ := json.Marshal(list)
	if strings.Contains(string(out), reg.Password) || strings.Contains(string(out), "$2a$") {
		t.Fatalf("the listing shows a key or hash: %s", out)
	}
}
