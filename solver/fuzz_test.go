package solver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
)

const (
	fuzzFollowZone = "validation.example.org"
	fuzzTmplZone   = "tmpl-validation.example.org"
	fuzzStatic     = "_acme-challenge." + fuzzFollowZone
	fuzzValue      = "fuzz-token"
	fuzzBystander  = "bystander-token"
	fuzzMaxTargets = 32
)

// FuzzConfinement checks invariant 1 and 2 of the design against fuzzed
// domains, records and CNAME chains: the inner providers are asked to write
// or delete TXT records only, only in their configured alias zone, only at
// the name the mapping produced; a refusal writes nothing; cleanup deletes
// exactly what was written, at the name recorded when it was written, and
// leaves another challenge's value at the same name alone.
//
// chain is a comma-separated list of CNAME targets: the challenge name of
// the record's domain points at the first, the first at the second, and so
// on. With wildcard, the first link is published as *.<parent> instead. To
// help the fuzzer reach the alias zones, a target's trailing "~" stands for
// "."+fuzzFollowZone and "^" for "."+fuzzTmplZone.
func FuzzConfinement(f *testing.F) {
	long := strings.Repeat("a", 63)
	for _, s := range []struct {
		domain, chain, rtype, rname string
		wildcard, verify            bool
	}{
		// Working delegations.
		{"example.com.", "_acme-challenge.example.com.validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "_acme-challenge.example.com.validation.example.org", "TXT", "_acme-challenge", false, true},
		{"example.com", "hop.example.net,x.validation.example.org", "TXT", "_acme-challenge.shop", false, false},
		{"example.com.", "a.example.net,b.example.net,c.example.net,d.validation.example.org", "TXT", "_acme-challenge", false, true},
		{"tmpl.example.com.", "", "TXT", "_acme-challenge", false, false},
		{"tmpl.example.com.", "_acme-challenge.tmpl.example.com.tmpl-validation.example.org", "TXT", "_acme-challenge.shop", false, true},
		{"static.example.com.", "", "TXT", "_acme-challenge.www", false, false},
		{"static.example.com.", "_acme-challenge.validation.example.org", "TXT", "_acme-challenge", false, true},
		// The chain ends at the bystander's static alias: shared name.
		{"example.net.", "_acme-challenge.validation.example.org.", "TXT", "_acme-challenge", false, false},
		// Case and dots.
		{"Example.COM.", "Hop.Example.NET,_ACME-Challenge.Example.COM.Validation.Example.ORG.", "TXT", "_ACME-Challenge", false, false},
		{"example.com", "X.VALIDATION.EXAMPLE.ORG.", "TXT", "_acme-challenge.example.com.", false, false},
		{"", "x.validation.example.org", "TXT", "_acme-challenge.example.com.", false, false},
		{"example.com.", "x.validation.example.org..", "TXT", "_acme-challenge", false, false},
		// Loops and long chains.
		{"example.com.", "a.example.net,b.example.net,a.example.net", "TXT", "_acme-challenge", false, false},
		{"example.com.", "_acme-challenge.example.com", "TXT", "_acme-challenge", false, false},
		{"example.com.", "_ACME-CHALLENGE.EXAMPLE.COM.", "TXT", "_acme-challenge", false, true},
		{"example.com.", "h1.x,h2.x,h3.x,h4.x,h5.x,h6.x,h7.x,h8.x,h9.x,h10.x,z.validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "h1.x,h2.x,h3.x,h4.x,h5.x,h6.x,h7.x,z.validation.example.org", "TXT", "_acme-challenge", false, false},
		// Outside the zones, look-alikes, escapes and wildcards.
		{"example.com.", "x.validation.example.org.evil.example", "TXT", "_acme-challenge", false, false},
		{"example.com.", "xvalidation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "x.tmpl-validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", `evil\.validation.example.org`, "TXT", "_acme-challenge", false, false},
		{"example.com.", `evil\046validation.example.org`, "TXT", "_acme-challenge", false, false},
		{"example.com.", "*.validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "a..validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "a b.validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", ".validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "x.validation.example.org", "TXT", "_acme-challenge", true, false},
		{"example.com.", "x.validation.example.org", "TXT", "_acme-challenge", true, true},
		{"*.example.com", "x.validation.example.org", "TXT", "_acme-challenge", false, false},
		{"example.com.", "x.validation.example.org", "TXT", "_acme-challenge.*", false, false},
		{"example.com.", ",,,", "TXT", "_acme-challenge", false, false},
		{"example.com.", ".", "TXT", "_acme-challenge", false, false},
		{"example.com.", "a~,B~,a~", "TXT", "_acme-challenge", false, false},
		{"example.com.", "~", "TXT", "_acme-challenge", false, false},
		{"example.com.", "x^", "TXT", "_acme-challenge", false, false},
		{"Tmpl.Example.COM.", "_acme-challenge.shop.tmpl.example.com^", "TXT", "_acme-challenge.SHOP", false, true},
		// Very long names.
		{long + "." + long + "." + long + ".example.com.", "x.validation.example.org", "TXT", "_acme-challenge", false, false},
		{long + "." + long + "." + long + ".tmpl.example.com.", "", "TXT", "_acme-challenge", false, false},
		{"example.com.", strings.Repeat(long+".", 4) + fuzzFollowZone, "TXT", "_acme-challenge", false, false},
		{"example.com.", long + "x." + fuzzFollowZone, "TXT", "_acme-challenge", false, false},
		// Unicode.
		{"例え.jp.", "x.validation.example.org", "TXT", "_acme-challenge", false, false},
		{"exämple.tmpl.example.com.", "", "TXT", "_acme-challenge", false, false},
		{"example.com.", "ü.validation.example.org", "TXT", "_acme-challenge", false, false},
		// Not a challenge record.
		{"example.com.", "x.validation.example.org", "A", "_acme-challenge", false, false},
		{"example.com.", "x.validation.example.org", "txt", "_acme-challenge", false, false},
		{"example.com.", "x.validation.example.org", "CNAME", "_acme-challenge", false, false},
		{"example.com.", "x.validation.example.org", "", "_acme-challenge", false, false},
		{"example.com.", "x.validation.example.org", "TXT", "www", false, false},
		{"example.com.", "x.validation.example.org", "TXT", "@", false, false},
		{"example.com.", "x.validation.example.org", "TXT", "", false, false},
		{"example.com.", "x.validation.example.org", "TXT", "_acme-challenge.", false, false},
		{"example.com.", "x.validation.example.org", "TXT", "_acme-challengex", false, false},
		{"", "", "", "", false, false},
	} {
		f.Add(s.domain, s.chain, s.rtype, s.rname, s.wildcard, s.verify)
	}
	f.Fuzz(func(t *testing.T, domain, chain, rtype, rname string, wildcard, verify bool) {
		fuzzConfinement(t, domain, chain, rtype, rname, wildcard, verify)
	})
}

func fuzzConfinement(t *testing.T, zone, chain, rtype, rname string, wildcard, verify bool) {
	ctx := context.Background()
	d := newFakeDNS("example.com", "example.net", fuzzFollowZone, fuzzTmplZone)
	res, clk := newTestResolver(t, d)
	wFollow, wTmpl := &fakeWriter{}, &fakeWriter{}
	allowed := map[*fakeWriter]string{wFollow: fuzzFollowZone, wTmpl: fuzzTmplZone}
	follow := mustValidate(t, &Rule{Follow: true, Zones: []string{fuzzFollowZone}, Writer: wFollow, WriterName: "follow"})
	tmpl := mustValidate(t, &Rule{Match: []string{"tmpl.example.com", "*.tmpl.example.com"},
		Alias: mustTemplate(t, "_acme-challenge.{domain}."+fuzzTmplZone), Zones: []string{fuzzTmplZone}, Writer: wTmpl, WriterName: "tmpl"})
	static := mustValidate(t, &Rule{Match: []string{"static.example.com", "*.static.example.com"},
		Alias: mustTemplate(t, fuzzStatic), Zones: []string{fuzzFollowZone}, Writer: wFollow, WriterName: "static"})
	m := &Mapper{Rules: []*Rule{tmpl, static}, Default: follow, Resolver: res, MaxHops: 6}
	p := &Provider{Mapper: m, now: clk.Now}

	// A bystander challenge at the static alias, presented first.
	d.cname("_acme-challenge.static.example.com", fuzzStatic)
	if _, err := p.AppendRecords(ctx, "static.example.com.", []libdns.Record{txt("_acme-challenge", fuzzBystander)}); err != nil {
		t.Fatalf("bystander: %v", err)
	}

	// The fuzzed chain.
	rr := libdns.RR{Type: rtype, Name: rname, Data: digest(fuzzValue)}
	original := Normalize(libdns.AbsoluteName(rname, zone))
	dom, nameErr := ChallengeDomain(original)
	start := ChallengeName(dom)
	targets := strings.Split(chain, ",")
	if len(targets) > fuzzMaxTargets {
		targets = targets[:fuzzMaxTargets]
	}
	for i, tg := range targets {
		if s, ok := strings.CutSuffix(tg, "~"); ok {
			targets[i] = s + "." + fuzzFollowZone
		} else if s, ok := strings.CutSuffix(tg, "^"); ok {
			targets[i] = s + "." + fuzzTmplZone
		}
	}
	if chain != "" && nameErr == nil {
		if wildcard && parent(start) != "" {
			d.wildcard(parent(start), targets[0])
		} else {
			d.cname(start, targets[0])
		}
		d.chain(targets...)
	}

	calls := func() map[*fakeWriter][]writeCall {
		return map[*fakeWriter][]writeCall{wFollow: wFollow.getCalls(), wTmpl: wTmpl.getCalls()}
	}
	before := calls()
	newCalls := func() []writeCall {
		var out []writeCall
		for w, cs := range calls() {
			for _, c := range cs[len(before[w]):] {
				checkConfined(t, c, allowed[w])
				out = append(out, c)
			}
		}
		return out
	}

	// Deleting before presenting deletes nothing and touches nothing.
	if deleted, err := p.DeleteRecords(ctx, zone, []libdns.Record{rr}); len(deleted) != 0 {
		t.Errorf("DeleteRecords of a record never presented reported %v deleted (%v)", deleted, err)
	}
	if c := newCalls(); len(c) != 0 {
		t.Fatalf("DeleteRecords of a record never presented reached the inner provider: %v", c)
	}

	// What the mapping says, asked before the provider acts.
	var want Target
	var mapErr error
	refused := rtype != "TXT" || nameErr != nil
	if !refused {
		want, mapErr = m.Resolve(ctx, dom)
		if mapErr == nil && (!InZone(want.Name, want.Zone) || ValidName(want.Name) != nil) {
			t.Fatalf("Map(%q) = %q in %q: not a valid name inside the zone", dom, want.Name, want.Zone)
		}
	}

	out, err := p.AppendRecords(ctx, zone, []libdns.Record{rr})
	appended := newCalls()
	switch {
	case refused:
		if err == nil {
			t.Fatalf("AppendRecords(%q, %s %q) succeeded: %v", zone, rtype, rname, out)
		}
		if !strings.Contains(err.Error(), original) {
			t.Errorf("refusal %q does not name %q", err, original)
		}
	case mapErr != nil:
		if err == nil {
			t.Fatalf("AppendRecords for %q succeeded (%v) although Map failed: %v", dom, out, mapErr)
		}
	case verify && err != nil:
		// The delegation check may refuse what Map accepts (a static or
		// template alias that the chain does not reach); then nothing.
	case err != nil:
		t.Fatalf("AppendRecords for %q: %v (Map gave %q in %q)", dom, err, want.Name, want.Zone)
	}
	if err != nil {
		if len(appended) != 0 {
			t.Fatalf("AppendRecords failed (%v) but reached the inner provider: %v", err, appended)
		}
		if out != nil {
			t.Errorf("AppendRecords returned %v with its error", out)
		}
		if pr := p.Presented(); len(pr) != 1 {
			t.Errorf("Presented = %v, want only the bystander", pr)
		}
		return
	}

	// Exactly one write: TXT, the mapped name, the mapped zone, our value.
	if len(appended) != 1 {
		t.Fatalf("inner calls %v, want one append", appended)
	}
	checkCall(t, appended[0], "append", want.Zone, want.Name, fuzzValue)
	if got := wantWriter(want); len(before[got]) == len(got.getCalls()) {
		t.Errorf("the write for %q did not go through its rule's writer", dom)
	}
	if len(out) != 1 || out[0].RR().Name != FQDN(want.Name) || out[0].RR().Data != digest(fuzzValue) || out[0].RR().Type != "TXT" {
		t.Fatalf("AppendRecords returned %v, want TXT %s", out, FQDN(want.Name))
	}

	// The delegation drifts before cleanup: the delete must still go to the
	// name recorded at write time.
	if nameErr == nil {
		d.cname(start, "drifted."+fuzzFollowZone)
	}
	clk.Advance(time.Hour)
	before = calls()
	if _, err := p.DeleteRecords(ctx, zone, out); err != nil {
		t.Fatalf("DeleteRecords(%v): %v", out, err)
	}
	deleted := newCalls()
	if len(deleted) != 1 {
		t.Fatalf("inner calls %v, want one delete", deleted)
	}
	checkCall(t, deleted[0], "delete", want.Zone, want.Name, fuzzValue)
	if !slices.Contains(wFollow.values(fuzzStatic), digest(fuzzBystander)) {
		t.Errorf("the bystander's value at %s is gone", fuzzStatic)
	}
	if vals := wantWriter(want).values(want.Name); slices.Contains(vals, digest(fuzzValue)) {
		t.Errorf("%s still holds the fuzzed value", want.Name)
	}
	if pr := p.Presented(); len(pr) != 1 || pr[0].Domain != "static.example.com" {
		t.Errorf("Presented = %v, want only the bystander", pr)
	}

	// A second cleanup deletes nothing and touches nothing.
	before = calls()
	if deleted, err := p.DeleteRecords(ctx, zone, out); len(deleted) != 0 || err != nil {
		t.Errorf("second DeleteRecords = %v, %v", deleted, err)
	}
	if c := newCalls(); len(c) != 0 {
		t.Errorf("second DeleteRecords reached the inner provider: %v", c)
	}
}

func wantWriter(t Target) *fakeWriter { return t.Rule.Writer.(*fakeWriter) }

// checkConfined asserts invariant 1 on one call that reached an inner
// provider whose only alias zone is zone.
func checkConfined(t *testing.T, c writeCall, zone string) {
	t.Helper()
	if c.zone != FQDN(zone) {
		t.Errorf("inner call %v outside the alias zone %s", c, zone)
	}
	if len(c.recs) == 0 {
		t.Errorf("inner call %v has no records", c)
	}
	for _, rr := range c.recs {
		name := libdns.AbsoluteName(rr.Name, c.zone)
		if rr.Type != "TXT" {
			t.Errorf("inner call %v: not TXT", c)
		}
		if !InZone(name, zone) || ValidName(name) != nil {
			t.Errorf("inner call %v: %q is not a valid name inside %s", c, name, zone)
		}
	}
}
