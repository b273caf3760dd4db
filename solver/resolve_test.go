package solver

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestResolveTypedErrors: every broken delegation comes out of the one
// resolve path as a *ResolveError of its kind, which errors.Is matches,
// naming the domain (and the zone or name at fault); the Checker's finding
// carries the kind's code, and the fix is set exactly when publishing the
// mapping's CNAME mends the delegation. Nothing else (a code string, a
// message) is needed to tell the kinds apart. The Checker reports the
// chain as far as the failure's.
func TestResolveTypedErrors(t *testing.T) {
	const (
		domain    = "shop.example.com"
		challenge = "_acme-challenge.shop.example.com"
		alias     = "_acme-challenge.validation.example.org"
		record    = challenge + ". 300 IN CNAME " + alias + "."
	)
	tests := []struct {
		name    string
		rule    func(*testing.T) *Rule // default: the static rule
		domain  string                 // default: domain
		setup   func(d *fakeDNS)
		want    error
		code    string
		names   []string // also named in the error, besides the domain
		wantFix bool
	}{
		{name: "no CNAME", setup: func(*fakeDNS) {}, want: ErrNoDelegation, code: CodeNoDelegation, names: []string{challenge}, wantFix: true},
		{name: "wrong target", setup: func(d *fakeDNS) { d.cname(challenge, "elsewhere.validation.example.org") },
			want: ErrWrongTarget, code: CodeWrongTarget, names: []string{"elsewhere.validation.example.org", alias}, wantFix: true},
		{name: "outside the zones", rule: followRule, setup: func(d *fakeDNS) { d.cname(challenge, "x.notours.example") },
			want: ErrOutsideZones, code: CodeOutsideZones, names: []string{"x.notours.example", "validation.example.org"}, wantFix: true},
		{name: "wildcard synthesis", setup: func(d *fakeDNS) { d.wildcard("example.com", alias) },
			want: ErrWildcard, code: CodeWildcard, names: []string{"*.shop.example.com"}, wantFix: true},
		{name: "loop", setup: func(d *fakeDNS) { d.chain(challenge, "a.hop.example", challenge) },
			want: ErrLoop, code: CodeLoop, names: []string{"a.hop.example"}, wantFix: true},
		{name: "too many hops", setup: func(d *fakeDNS) {
			d.chain(challenge, "h1.hop.example", "h2.hop.example", "h3.hop.example", "h4.hop.example", "h5.hop.example",
				"h6.hop.example", "h7.hop.example", "h8.hop.example", "h9.hop.example", alias)
		}, want: ErrTooManyHops, code: CodeTooManyHops, names: []string{challenge}, wantFix: true},
		{name: "CNAME to the root", setup: func(d *fakeDNS) { d.cname(challenge, ".") },
			want: ErrRootTarget, code: CodeBadTarget, names: []string{challenge}, wantFix: true},
		{name: "chain ends at the alias zone's apex", rule: followRule, setup: func(d *fakeDNS) { d.cname(challenge, "validation.example.org") },
			want: ErrBadTarget, code: CodeBadTarget, names: []string{"validation.example.org", "apex"}, wantFix: true},
		{name: "lookup fails", setup: func(d *fakeDNS) { d.servfail[challenge] = true },
			want: ErrLookup, code: CodeLookup, names: []string{challenge}},
		{name: "no rule", rule: func(t *testing.T) *Rule { return nil }, setup: func(*fakeDNS) {},
			want: ErrNoRule, code: CodeNoRule},
		{name: "no domain", domain: "bad..example.com", setup: func(*fakeDNS) {}, want: ErrNoRule, code: CodeNoRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeDNS("example.com", "validation.example.org", "hop.example", "notours.example")
			tt.setup(d)
			res, _ := newTestResolver(t, d)
			rule := staticRule(t)
			if tt.rule != nil {
				rule = tt.rule(t)
			}
			m := &Mapper{Resolver: res, Default: rule}
			name := domain
			if tt.domain != "" {
				name = tt.domain
			}
			target, err := m.Resolve(context.Background(), name)
			var re *ResolveError
			if target.Name != "" || !errors.As(err, &re) || !errors.Is(err, tt.want) {
				t.Fatalf("Resolve = %+v, %v; want a *ResolveError that is %v", target, err, tt.want)
			}
			for _, k := range kinds {
				if k.Err != tt.want && errors.Is(err, k.Err) && k.Err != ErrLookup {
					t.Errorf("the error is %v too, not only %v", k.Err, tt.want)
				}
			}
			for _, n := range append(tt.names, name) {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("error %q does not name %s", err, n)
				}
			}
			if (re.Fix != "") != tt.wantFix || tt.wantFix && tt.rule == nil && re.Fix != record {
				t.Errorf("fix %q, want one: %v", re.Fix, tt.wantFix)
			}

			// The report is made of the same typed result.
			_, rep := (&Checker{Mapper: m}).Verify(context.Background(), name, CheckChain)
			var de *DelegationError
			if err := rep.Err(); !errors.As(err, &de) || de.Code() != tt.code || !errors.Is(err, tt.want) || rep.Fix != re.Fix {
				t.Errorf("report: %v (code %v, fix %q); want code %s, fix %q", err, de, rep.Fix, tt.code, re.Fix)
			}
			if rep.OK || !reflect.DeepEqual(rep.Chain, re.Chain) {
				t.Errorf("report: OK %v, chain %+v; want not OK, with the chain as far as Resolve followed it: %+v", rep.OK, rep.Chain, re.Chain)
			}
			if transient := tt.want == ErrLookup; de.Transient() != transient || (rep.Verdict == VerdictUnknown) != transient {
				t.Errorf("verdict %s, transient %v; want transient %v", rep.Verdict, de.Transient(), transient)
			}
		})
	}
}

// TestResolveTarget: a passing resolve returns the target with the chain
// that led there, for every mode, and the Checker reports that chain.
func TestResolveTarget(t *testing.T) {
	const challenge = "_acme-challenge.shop.example.com"
	for _, tc := range []struct {
		rule func(*testing.T) *Rule
		end  string
	}{
		{staticRule, "_acme-challenge.validation.example.org"},
		{templateRule, "_acme-challenge.shop.example.com.validation.example.org"},
		{followRule, "anything.validation.example.org"},
	} {
		d := newFakeDNS("example.com", "validation.example.org", "hop.example")
		d.chain(challenge, "a.hop.example", tc.end)
		res, _ := newTestResolver(t, d)
		m := &Mapper{Resolver: res, Default: tc.rule(t)}
		target, err := m.Resolve(context.Background(), "*.shop.example.com")
		if err != nil || target.Name != tc.end || target.Zone != "validation.example.org" || target.Domain != "shop.example.com" ||
			len(target.Chain.Hops) != 2 || target.Chain.End != tc.end {
			t.Errorf("Resolve = %+v, %v; want %s with its two-hop chain", target, err, tc.end)
		}
		// The report is made of the same target: its chain, passing.
		checked, rep := (&Checker{Mapper: m}).Verify(context.Background(), "*.shop.example.com", CheckChain)
		if !rep.OK || rep.Err() != nil || !reflect.DeepEqual(rep.Chain, target.Chain) || checked.Name != target.Name {
			t.Errorf("report: OK %v, %v, chain %+v, target %s; want the resolved target and its chain %+v", rep.OK, rep.Err(), rep.Chain, checked.Name, target.Chain)
		}
	}
}
