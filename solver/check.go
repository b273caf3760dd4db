package solver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Check codes name each kind of finding, for tools that act on them.
const (
	CodeOK            = "ok"
	CodeNoDelegation  = "no_delegation"     // no CNAME at the challenge name
	CodeWrongTarget   = "wrong_target"      // chain ends at another name than the alias
	CodeOutsideZones  = "outside_zones"     // chain ends outside every alias zone
	CodeWildcard      = "wildcard"          // CNAME synthesised by a wildcard
	CodeLoop          = "loop"              // CNAME loop
	CodeTooManyHops   = "too_many_hops"     // chain longer than the cap
	CodeLookup        = "lookup_failed"     // SERVFAIL, timeout, REFUSED
	CodeDrift         = "drift"             // authoritative servers disagree
	CodeNSUnreachable = "ns_unreachable"    // an authoritative server did not answer
	CodeNSNotAsked    = "ns_not_asked"      // a nameserver left out by a bound (note)
	CodeCAAForbids    = "caa_forbids"       // CAA allows none of the CA identities
	CodeCAAMethods    = "caa_methods"       // CAA validationmethods excludes dns-01
	CodeCAAAccountURI = "caa_account_uri"   // CAA binds issuance to other ACME accounts than this server's (a note while its account is unknown)
	CodeCAAUnbound    = "caa_unbound"       // CAA does not bind issuance to this server's ACME account (note, with the record that would)
	CodeCAASkipped    = "caa_not_looked_up" // CAA of a very deep name's middle labels (note)
	CodeBadTarget     = "bad_target"        // chain ends where no record can be written
	CodeNoRule        = "no_rule"           // no rule covers the domain
	CodeNoPolicy      = "no_alias_policy"   // the name's TLS policy uses no alias provider
)

// BreakingCodes are the codes of the fatal findings that can name a broken
// delegation (DelegationError.Code): the states a monitored name can be in
// besides ok. A transient finding names it when it comes first.
var BreakingCodes = []string{CodeNoDelegation, CodeWrongTarget, CodeOutsideZones, CodeWildcard, CodeLoop, CodeTooManyHops,
	CodeLookup, CodeDrift, CodeNSUnreachable, CodeCAAForbids, CodeCAAMethods, CodeCAAAccountURI, CodeBadTarget, CodeNoRule, CodeNoPolicy}

// Finding is one problem (or note) of a report, made from the typed error
// the check found (see kinds).
type Finding struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Fatal findings fail the verdict; the rest are notes.
	Fatal bool `json:"fatal"`

	kind  error // the Err* sentinel cause is of, which decisions look at
	cause error // what the finding was made of, for errors.Is
}

// Transient reports whether the finding may pass by itself: a lookup that
// failed or a nameserver that did not answer says nothing about the
// delegation, unlike every other finding.
func (f Finding) Transient() bool { return f.kind == ErrLookup || f.kind == ErrNSUnreachable }

// CAARecord is one CAA record that applies to the domain.
type CAARecord struct {
	Owner string `json:"owner"`
	Flag  uint8  `json:"flag"`
	Tag   string `json:"tag"`
	Value string `json:"value"`
}

// Report is the result of checking one domain's delegation.
type Report struct {
	Domain        string `json:"domain"`
	ChallengeName string `json:"challenge_name"`
	// Mode is "static", "template" or "follow".
	Mode string `json:"mode"`
	// Expected is the alias the chain must end at (static, template), or ""
	// in follow mode, where it must end inside one of Zones.
	Expected string   `json:"expected,omitempty"`
	Zones    []string `json:"zones,omitempty"`
	// Resolver is the recursive resolver that answered the chain lookups.
	Resolver    string             `json:"resolver"`
	Chain       Chain              `json:"chain"`
	Zone        string             `json:"production_zone,omitempty"`
	Nameservers []NameserverAnswer `json:"nameservers,omitempty"`
	CAA         []CAARecord        `json:"caa,omitempty"`
	Findings    []Finding          `json:"findings,omitempty"`
	OK          bool               `json:"ok"`
	// Verdict is VerdictOK, VerdictBroken (a finding that the delegation
	// must be fixed for) or VerdictUnknown (only transient findings: a
	// failed lookup, a nameserver that did not answer).
	Verdict string `json:"verdict"`
	// Fix is the zone-file line to publish in the production zone, when
	// publishing it would fix the delegation.
	Fix string `json:"fix,omitempty"`

	// suggestion is the CNAME record that delegates the challenge as the
	// mapping expects; chainOK says whether Resolve found the target.
	suggestion string
	chainOK    bool
}

// add adds the finding of err. The message goes to terminals, logs and
// events: it carries what DNS answered (CAA values, names), made printable.
func (r *Report) add(err error, fatal bool) {
	r.Findings = append(r.Findings, newFinding(err, fatal))
	if fatal {
		r.OK = false
	}
}

// Err returns nil for a passing report, or a *DelegationError.
func (r *Report) Err() error {
	if r.OK {
		return nil
	}
	e := &DelegationError{Domain: r.Domain, Fix: r.Fix}
	for _, f := range r.Findings {
		if f.Fatal {
			e.Findings = append(e.Findings, f)
		}
	}
	return e
}

// DelegationError is a failed delegation check: its fatal findings and the
// record to publish.
type DelegationError struct {
	Domain   string
	Findings []Finding
	Fix      string
}

func (e *DelegationError) Error() string {
	msgs := make([]string, len(e.Findings))
	for i, f := range e.Findings {
		msgs[i] = f.Message
	}
	return brokenMessage(e.Domain, strings.Join(msgs, "; "), e.Fix)
}

// brokenMessage is the message of a broken delegation of domain: what is
// wrong, and the record to publish if there is one.
func brokenMessage(domain, findings, fix string) string {
	msg := fmt.Sprintf("delegation of %s is broken: %s", domain, findings)
	if fix != "" {
		msg += "; publish in the production zone: " + fix
	}
	return msg
}

// Unwrap returns the errors the findings were made of (ErrLoop, ErrLookup
// and the like).
func (e *DelegationError) Unwrap() []error {
	var errs []error
	for _, f := range e.Findings {
		if f.cause != nil {
			errs = append(errs, f.cause)
		}
	}
	return errs
}

// Code is the code of the finding that explains the failure: drift if the
// nameservers disagree (it explains what the resolver saw, whichever
// server it asked), else the first.
func (e *DelegationError) Code() string {
	if len(e.Findings) == 0 {
		return CodeOK
	}
	for _, f := range e.Findings {
		if f.kind == ErrDrift {
			return f.Code
		}
	}
	return e.Findings[0].Code
}

// Transient reports whether every finding may pass by itself, so that the
// check is worth repeating rather than a verdict.
func (e *DelegationError) Transient() bool {
	return !slices.ContainsFunc(e.Findings, func(f Finding) bool { return !f.Transient() })
}

// Verdicts of a report.
const (
	VerdictOK      = "ok"
	VerdictBroken  = "broken"
	VerdictUnknown = "unknown"
)

// blocked reports whether a finding other than a transient one fails the
// report.
func (r *Report) blocked() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Fatal && !f.Transient() })
}

// judge sets the verdict from the findings.
func (r *Report) judge() {
	switch {
	case r.OK:
		r.Verdict = VerdictOK
	case r.blocked():
		r.Verdict = VerdictBroken
	default:
		r.Verdict = VerdictUnknown
	}
}

// Checker checks domains' delegations against the mapping.
type Checker struct {
	Mapper *Mapper
	// Issuer returns what CAA is judged against: the CA that will be asked
	// for the certificate and the ACME account that asks. It is called
	// only when the CAA part of a check runs (it may read the CA's
	// directory and Caddy's storage), never for the chain alone, which an
	// anonymous handshake may cause. nil: CAA is reported, not judged.
	Issuer func(context.Context) Issuer
	// NSTimeout bounds each direct query to an authoritative server.
	NSTimeout time.Duration
}

// Checks are the parts of a delegation check, in the order they run.
type Checks int

const (
	// CheckChain: the CNAME chain must end at the alias or inside an alias
	// zone (Mapper.Resolve, the write path's own check).
	CheckChain Checks = 1 << iota
	// CheckNameservers: every authoritative server of the production zone
	// must serve the same chain (multi-master drift).
	CheckNameservers
	// CheckCAA: CAA on the original name must allow the CA.
	CheckCAA

	// CheckAll is the whole check, run before every order.
	CheckAll = CheckChain | CheckNameservers | CheckCAA
)

// Check runs the whole check for domain, every part of it even when an
// earlier one failed, for a report that shows everything at once. A
// wildcard domain ("*.example.com") shares its base domain's challenge name
// but is judged by CAA issuewild. The target is set as Verify sets it.
func (c *Checker) Check(ctx context.Context, domain string) (Target, *Report) {
	return c.run(ctx, domain, CheckAll, false)
}

// Verify runs the given checks for domain and stops at the first that
// fails: the verdict Check would give for them, with fewer queries. It
// returns the target to write at unless a finding other than a transient
// one (a failed lookup, a nameserver that did not answer) stands against
// it: whether to write despite those is the caller's decision.
func (c *Checker) Verify(ctx context.Context, domain string, checks Checks) (Target, *Report) {
	return c.run(ctx, domain, checks, true)
}

// run builds the report on top of Mapper.resolve, the one path that
// decides where a challenge is written: its *ResolveError (typed by the
// signature, so no other error can reach here) becomes the chain's
// finding, or its target's chain the report's, and the nameservers and CAA
// add theirs.
func (c *Checker) run(ctx context.Context, domain string, checks Checks, stopEarly bool) (Target, *Report) {
	rep := c.Mapper.report(domain)
	target, fail := c.Mapper.resolve(ctx, domain)
	if fail != nil {
		rep.Chain, rep.Fix = fail.Chain, fail.Fix
		rep.add(fail.Err, true)
	} else {
		rep.Chain, rep.OK, rep.chainOK = target.Chain, true, true
	}
	wildcard := strings.HasPrefix(Normalize(domain), "*.")
	if wildcard {
		rep.Domain = "*." + rep.Domain
	}
	defer rep.judge()
	if fail != nil && errors.Is(fail.Err, ErrNoRule) {
		return Target{}, rep
	}
	if checks&CheckNameservers != 0 && !(stopEarly && rep.blocked()) {
		c.checkNameservers(ctx, rep)
	}
	if checks&CheckCAA != 0 && !(stopEarly && rep.blocked()) {
		c.checkCAA(ctx, rep, wildcard)
	}
	if rep.blocked() || fail != nil {
		return Target{}, rep
	}
	return target, rep
}

func (c *Checker) nsTimeout() time.Duration {
	if c.NSTimeout > 0 {
		return c.NSTimeout
	}
	return 2 * time.Second
}
