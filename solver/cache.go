package solver

import (
	"sync"
	"time"

	"github.com/miekg/dns"
)

// answerCache keeps the resolvers' answers for their TTL (capped), within
// a bound on its entries, so that a busy server does not repeat the same
// lookups. A resolver's views read and fill it in their own ways (see
// isolated and refreshing).
type answerCache struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[question]cached
	// parent, if set, is a cache this one reads but never fills
	// (isolated), or, with refresh, fills but never reads (refreshing).
	parent  *answerCache
	refresh bool
}

type question struct {
	name  string
	qtype uint16
}

type cached struct {
	msg     *dns.Msg
	server  string
	expires time.Time
}

const (
	maxCacheTTL     = 60 * time.Second
	maxCacheEntries = 10000
)

func newAnswerCache(now func() time.Time) *answerCache {
	return &answerCache{now: now, entries: make(map[question]cached)}
}

// isolated returns a cache that reads c but keeps its own answers to
// itself.
func (c *answerCache) isolated() *answerCache {
	v := newAnswerCache(c.now)
	v.parent = c
	return v
}

// refreshing returns a cache that reads nothing and stores into c.
func (c *answerCache) refreshing() *answerCache {
	return &answerCache{now: c.now, parent: c, refresh: true}
}

func (c *answerCache) lookup(q question) (cached, bool) {
	if c.refresh {
		return cached{}, false
	}
	c.mu.Lock()
	e, ok := c.entries[q]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		return e, true
	}
	if c.parent != nil {
		return c.parent.lookup(q)
	}
	return cached{}, false
}

func (c *answerCache) store(q question, msg *dns.Msg, server string) {
	if c.refresh {
		c.parent.store(q, msg, server)
		return
	}
	ttl := answerTTL(msg)
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put(q, msg, server, ttl)
	c.putZoneHints(q, msg, server, ttl)
}

// zoneHintDepth bounds the names a negative answer gives zone hints for:
// the zone lookups that follow a chain's lookups ask at the challenge name
// and at its parent.
const zoneHintDepth = 3

// putZoneHints stores what a negative answer says about zones: an NXDOMAIN
// or NODATA answer for q with the SOA of zone Z in its authority section
// says that q and its ancestors below Z lie in Z, exactly what an SOA
// question at each of them would be answered (NODATA with that SOA). A
// periodic check that resolved _acme-challenge.<name> then finds its zone
// without one SOA query per name. Called with c.mu held.
func (c *answerCache) putZoneHints(q question, msg *dns.Msg, server string, ttl time.Duration) {
	if len(msg.Answer) > 0 {
		return
	}
	var soa *dns.SOA
	for _, rr := range msg.Ns {
		if s, ok := rr.(*dns.SOA); ok && InZone(q.name, s.Hdr.Name) {
			soa = s
		}
	}
	if soa == nil {
		return
	}
	hint := new(dns.Msg)
	hint.Ns = []dns.RR{soa}
	for n, i := Normalize(q.name), 0; i < zoneHintDepth && n != Normalize(soa.Hdr.Name) && InZone(n, soa.Hdr.Name); n, i = parent(n), i+1 {
		if hq := (question{FQDN(n), dns.TypeSOA}); hq != q {
			if _, known := c.entries[hq]; !known {
				c.put(hq, hint, server, ttl)
			}
		}
	}
}

// put stores one answer, within the cache's bound. Called with c.mu held.
func (c *answerCache) put(q question, msg *dns.Msg, server string, ttl time.Duration) {
	now := c.now()
	if len(c.entries) >= maxCacheEntries {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		// Full of live answers: one of them (the map's iteration order
		// picks which) makes room. Refusing the new answer instead would
		// shut out, for as long as the cache stays full, the answers that
		// every name shares (a zone's nameservers, its SOA), which are then
		// asked again for each name: a monitor run over more names than
		// the cache holds paid that once per name.
		for k := range c.entries {
			if len(c.entries) < maxCacheEntries {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[q] = cached{msg: msg, server: server, expires: now.Add(ttl)}
}

// answerTTL is how long msg may be cached: the smallest TTL in its answer, or
// for a negative answer the SOA's negative TTL (RFC 2308), capped.
func answerTTL(msg *dns.Msg) time.Duration {
	ttl := uint32(maxCacheTTL / time.Second)
	if len(msg.Answer) > 0 {
		for _, rr := range msg.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
	} else {
		neg := uint32(0)
		for _, rr := range msg.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				neg = min(soa.Hdr.Ttl, soa.Minttl)
			}
		}
		ttl = min(ttl, neg)
	}
	return time.Duration(ttl) * time.Second
}
