package solver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Errors a CNAME chain can end in. They are wrapped with the names involved.
var (
	ErrLoop        = errors.New("CNAME loop")
	ErrTooManyHops = errors.New("CNAME chain too long")
	ErrWildcard    = errors.New("CNAME synthesised by a wildcard record")
	ErrLookup      = errors.New("DNS lookup failed")
	ErrRootTarget  = errors.New("CNAME to the root")
	// ErrNoDelegation means a domain's challenge name has no CNAME at all.
	ErrNoDelegation = errors.New("no CNAME delegation")
)

// DefaultMaxHops caps CNAME chains. Let's Encrypt's Unbound gives up after
// about 8 restarts, so a longer chain could not validate anyway.
const DefaultMaxHops = 8

// Hop is one CNAME record of a chain.
type Hop struct {
	Owner  string `json:"owner"`
	Target string `json:"target"`
	TTL    uint32 `json:"ttl"`
	// Server is the resolver that answered for this hop.
	Server string `json:"server"`
}

// Chain is the CNAME chain from a start name to the name where it ends.
type Chain struct {
	Start string `json:"start"`
	Hops  []Hop  `json:"hops,omitempty"`
	End   string `json:"end"`
}

// wildcardProbeLabel is looked up next to every CNAME owner: if it gets the
// same CNAME, the owner's record is (or is indistinguishable from) one
// synthesised by a wildcard, and following it would write into a zone the
// domain's owner never pointed at us.
const wildcardProbeLabel = "_dns-alias-wildcard-probe"

// Follow resolves the CNAME chain that starts at name, one hop at a time,
// comparing owners case-insensitively. It stops at the first name without a
// CNAME and fails on loops, on more than maxHops hops, on lookup errors and on
// wildcard-synthesised CNAMEs.
func (r *Resolver) Follow(ctx context.Context, name string, maxHops int) (Chain, error) {
	if maxHops <= 0 {
		maxHops = DefaultMaxHops
	}
	chain := Chain{Start: Normalize(name)}
	seen := map[string]bool{chain.Start: true}
	current := chain.Start
	for {
		hop, err := r.cname(ctx, current)
		if err != nil {
			return chain, err
		}
		target := hop.Target
		if hop.Owner == "" {
			chain.End = current
			return chain, nil
		}
		if target == "" {
			// "." normalizes to "": without this, a CNAME to the root
			// would look like the end of the chain, and a TXT record
			// would be written next to a CNAME.
			chain.Hops = append(chain.Hops, hop)
			return chain, fmt.Errorf("%w: %s CNAME . points at the root, where no challenge record can be written", ErrRootTarget, current)
		}
		if synthesised, err := r.isWildcardSynthesised(ctx, current, target); err != nil {
			return chain, err
		} else if synthesised {
			return chain, fmt.Errorf("%w: %s CNAME %s is what any name next to it gets: a wildcard record at *.%s (or above) synthesises it", ErrWildcard, current, target, parent(current))
		}
		chain.Hops = append(chain.Hops, hop)
		if seen[target] {
			return chain, fmt.Errorf("%w: %s points back to %s", ErrLoop, current, target)
		}
		if len(chain.Hops) > maxHops {
			return chain, fmt.Errorf("%w: more than %d hops from %s", ErrTooManyHops, maxHops, chain.Start)
		}
		seen[target] = true
		current = target
	}
}

// cname returns the CNAME owned by name, or a zero Hop if there is none.
func (r *Resolver) cname(ctx context.Context, name string) (Hop, error) {
	msg, server, err := r.queryFrom(ctx, name, dns.TypeCNAME)
	if err != nil {
		return Hop{}, err
	}
	for _, rr := range msg.Answer {
		if c, ok := rr.(*dns.CNAME); ok && Normalize(c.Hdr.Name) == Normalize(name) {
			return Hop{Owner: Normalize(name), Target: Normalize(c.Target), TTL: c.Hdr.Ttl, Server: server}, nil
		}
	}
	return Hop{}, nil
}

func (r *Resolver) isWildcardSynthesised(ctx context.Context, owner, target string) (bool, error) {
	p := parent(owner)
	if p == "" {
		return false, nil
	}
	probe, err := r.cname(ctx, wildcardProbeLabel+"."+p)
	if err != nil {
		return false, err
	}
	return probe.Owner != "" && probe.Target == target, nil
}

func parent(name string) string {
	_, p, _ := strings.Cut(Normalize(name), ".")
	return p
}
