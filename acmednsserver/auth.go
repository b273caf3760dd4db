package acmednsserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"

	"golang.org/x/crypto/bcrypt"
)

// keyAuth is what the server checks keys with.
type keyAuth struct {
	// compare is bcrypt's comparison; tests model its time.
	compare func(hash []byte, key string) error
	// unknownUserHash is compared against when no account has the user
	// name given, so that a refusal costs a key check whether or not the
	// user exists.
	unknownUserHash []byte
	// padding holds a hash of each cost from the lowest account's to
	// one below the highest: a failed check at cost c also compares
	// against those of costs c to highest-1, 2^c + ... + 2^(highest-1) =
	// 2^highest, so that it costs what an unknown user's does.
	padding map[int][]byte
	highest int
	// macKey keys the MACs of verified keys (random, per server).
	macKey []byte
	checks *keyChecks
}

func compareBcrypt(hash []byte, key string) error {
	return bcrypt.CompareHashAndPassword(hash, []byte(key))
}

// newKeyAuth makes the unknown user's hash at the highest cost and the
// padding down to the lowest, for the zone's server.
func newKeyAuth(zone string, lowest, highest int, l Limits) (*keyAuth, error) {
	k := &keyAuth{compare: compareBcrypt, padding: map[int][]byte{}, highest: highest, macKey: make([]byte, sha256.Size), checks: newKeyChecks(l)}
	rand.Read(k.macKey)
	var err error
	if k.unknownUserHash, err = bcrypt.GenerateFromPassword([]byte(randomKey()), highest); err != nil {
		return nil, fmt.Errorf("zone %s: hashing the unknown user's key: %w", zone, err)
	}
	for c := lowest; c < highest; c++ {
		if k.padding[c], err = bcrypt.GenerateFromPassword([]byte(randomKey()), c); err != nil {
			return nil, fmt.Errorf("zone %s: hashing a key of cost %d: %w", zone, c, err)
		}
	}
	return k, nil
}

// mac is the keyed hash a verified key is remembered by: the key itself
// is never kept, and a copy of the memory does not give it away.
func (k *keyAuth) mac(key string) []byte {
	m := hmac.New(sha256.New, k.macKey)
	m.Write([]byte(key))
	return m.Sum(nil)
}

// verifiedBefore reports, in constant time, whether key is the one a's
// key check accepted last.
func (a *account) verifiedBefore(mac []byte) bool {
	v := a.verified.Load()
	return v != nil && hmac.Equal(*v, mac)
}

// check compares key with a's hash (the unknown user's if a is nil); a
// failed check costs the same bcrypt work whatever the account's cost.
func (k *keyAuth) check(a *account, key string) bool {
	if a == nil {
		k.compare(k.unknownUserHash, key)
		return false
	}
	hash := []byte(a.KeyHash)
	if k.compare(hash, key) == nil {
		return true
	}
	cost, _ := bcrypt.Cost(hash)
	for c := cost; c < k.highest; c++ {
		if pad := k.padding[c]; pad != nil {
			k.compare(pad, key)
		}
	}
	return false
}

// authorize finds the account of user and checks key and source, after the
// source's rate. A key its account verified before is recognized by its
// MAC, with no bcrypt; any other takes a key check slot, if the source and
// its network have a failed check left. Every refusal tells the client only
// "forbidden", and whether it is 429 or 503 depends on the source, never on
// the user name.
func (s *Server) authorize(ctx context.Context, user, key string, src netip.Addr, srcErr error) (*account, *refusal) {
	if srcErr != nil {
		return nil, &refusal{http.StatusBadRequest, "bad_source", RefusedAuth, fmt.Sprintf("no source address: %v", srcErr)}
	}
	if !s.sources.allow(src) {
		return nil, &refusal{http.StatusTooManyRequests, "too_many_requests", RefusedRate, "over the source's rate"}
	}
	mac := s.auth.mac(key)
	if a := s.inMemory(user); a != nil && a.verifiedBefore(mac) {
		return a, s.admit(a, src)
	}
	left, suspect := s.sources.failedChecks(src)
	if !left {
		return nil, overFailed
	}
	release, ok := s.auth.checks.acquire(ctx, src, suspect)
	if !ok {
		return nil, &refusal{http.StatusServiceUnavailable, "busy", RefusedRate, "no key check slot free in time"}
	}
	defer release()
	if left, _ := s.sources.failedChecks(src); !left { // spent by the checks it waited behind
		return nil, overFailed
	}
	a, err := s.lookup(ctx, user)
	if err != nil {
		return nil, &refusal{http.StatusServiceUnavailable, "busy", Failed, fmt.Sprintf("looking up account %q: %v", user, err)}
	}
	if a != nil && a.verifiedBefore(mac) { // by a request that held the slot before this one
		return a, s.admit(a, src)
	}
	if !s.auth.check(a, key) {
		s.sources.failed(src)
		if a == nil {
			return nil, forbidden("no such account")
		}
		return a, forbidden("wrong key")
	}
	a = s.remember(a)
	a.verified.Store(&mac)
	return a, s.admit(a, src)
}

// overFailed refuses a source or network whose failed key checks are
// spent.
var overFailed = &refusal{http.StatusTooManyRequests, "too_many_requests", RefusedRate, "over the failed key checks of the source or its network"}

func forbidden(why string) *refusal {
	return &refusal{http.StatusUnauthorized, "forbidden", RefusedAuth, why}
}

// admit checks what an account with its right key may still be refused
// for: its networks and its rate.
func (s *Server) admit(a *account, src netip.Addr) *refusal {
	switch {
	case !a.allowed(src):
		return forbidden("source not in the account's allow_from")
	case !a.limit.allow():
		return &refusal{http.StatusTooManyRequests, "too_many_requests", RefusedRate, "over the account's rate"}
	}
	return nil
}
