package solver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// checkCAA finds the CAA record set that applies to the domain (the closest
// one walking up from the domain, RFC 8659) and judges it for the
// configured CA identities. CAA is checked on the original name only: the CA
// never looks at the alias zone's. A wildcard is judged by issuewild when
// the set has any, by issue otherwise; issuewild never applies to other
// names. A set with no property of the relevant tag does not restrict
// issuance.
func (c *Checker) checkCAA(ctx context.Context, rep *Report, wildcard bool) {
	start := strings.TrimPrefix(rep.Domain, "*.")
	for name := start; name != ""; name = parent(name) {
		if skipTo := lastLabels(name, MaxCAASteps-1); name != start && skipTo != name {
			// A name deeper than MaxCAASteps labels: the names between
			// it and its ancestors of MaxCAASteps-1 labels are not
			// asked, so that a name of 100 labels costs 10 lookups, not
			// 100; the zone apex and the domains a CAA set usually sits
			// at are always among those asked.
			rep.add(errorOf(ErrCAASkipped, "CAA of the names between %s and %s not looked up: a name of more than %d labels has only its own and its top %d levels checked", start, skipTo, MaxCAASteps, MaxCAASteps-1), false)
			name = skipTo
		}
		msg, err := c.Mapper.Resolver.Query(ctx, name, dns.TypeCAA)
		if err != nil {
			if rep.Zone != "" && !InZone(name, rep.Zone) {
				// Above the production zone (a TLD, usually): nothing
				// the operator can fix, so a note rather than a failure.
				rep.add(errorOf(ErrLookup, "looking up CAA of %s, above the production zone %s, failed; CAA not judged: %v", name, rep.Zone, err), false)
				return
			}
			rep.add(errorOf(ErrLookup, "looking up CAA of %s: %v", name, err), true)
			return
		}
		for _, rr := range msg.Answer {
			if caa, ok := rr.(*dns.CAA); ok {
				rep.CAA = append(rep.CAA, CAARecord{Owner: name, Flag: caa.Flag, Tag: strings.ToLower(caa.Tag), Value: caa.Value})
			}
		}
		if len(rep.CAA) > 0 {
			break
		}
	}
	if len(rep.CAA) == 0 {
		return
	}
	if len(c.CAIdentities) == 0 {
		rep.add(errorOf(ErrCAAForbids, "CAA at %s not judged: the CA's identities are unknown (its ACME directory lists no caaIdentities and caa_identities is not set)", rep.CAA[0].Owner), false)
		return
	}
	owner := rep.CAA[0].Owner
	for _, rec := range rep.CAA {
		if rec.Flag&128 != 0 && !slices.Contains(knownCAATags, rec.Tag) {
			rep.add(errorOf(ErrCAAForbids, "CAA at %s has the critical property %q, which CAs do not know, so none may issue (RFC 8659); remove it or clear its critical flag", owner, rec.Tag), true)
		}
	}

	tag := "issue"
	if wildcard && slices.ContainsFunc(rep.CAA, func(r CAARecord) bool { return r.Tag == "issuewild" }) {
		tag = "issuewild"
	}
	var issuers []string
	var methodsBlocked []CAARecord
	permitted := false
	for _, rec := range rep.CAA {
		if rec.Tag != tag {
			continue
		}
		issuer, params := parseCAAValue(rec.Value)
		if issuer == "" {
			issuers = append(issuers, `";" (no CA)`)
		} else {
			issuers = append(issuers, issuer)
		}
		if !slices.Contains(c.CAIdentities, issuer) {
			continue
		}
		if methods, ok := params["validationmethods"]; ok && !hasMethod(methods, "dns-01") {
			methodsBlocked = append(methodsBlocked, rec)
			continue
		}
		permitted = true
		if uri, ok := params["accounturi"]; ok {
			rep.add(errorOf(ErrCAAAccountURI, "CAA %s at %s allows %s only for the ACME account %s: Caddy must use that account", tag, owner, issuer, uri), false)
		}
	}
	switch {
	case len(issuers) == 0 || permitted:
		return
	case len(methodsBlocked) > 0:
		rec := methodsBlocked[0]
		issuer, params := parseCAAValue(rec.Value)
		value := issuer
		for _, k := range slices.Sorted(maps.Keys(params)) {
			if k != "validationmethods" {
				value += "; " + k + "=" + params[k]
			}
		}
		value += "; validationmethods=" + params["validationmethods"] + ",dns-01"
		fix := fmt.Sprintf("%s. 300 IN CAA 0 %s %q", owner, tag, value)
		rep.add(errorOf(ErrCAAMethods, "CAA %s %q at %s allows %s only with validationmethods=%s, which excludes dns-01; replace it with: %s",
			tag, rec.Value, owner, issuer, params["validationmethods"], fix), true)
		if rep.Fix == "" {
			rep.Fix = fix
		}
	default:
		fix := fmt.Sprintf("%s. 300 IN CAA 0 %s %q", owner, tag, c.CAIdentities[0])
		rep.add(errorOf(ErrCAAForbids, "CAA %s at %s allows only %s, none of %s; add: %s",
			tag, owner, strings.Join(issuers, ", "), strings.Join(c.CAIdentities, ", "), fix), true)
		if rep.Fix == "" {
			rep.Fix = fix
		}
	}
}

// MaxCAASteps bounds the CAA lookups of one name (RFC 8659 climbs every
// label): real names have fewer than 10 labels, and a made-up name of 100
// must not cost 100 lookups.
const MaxCAASteps = 10

// lastLabels is the ancestor of name (or name itself) of n labels.
func lastLabels(name string, n int) string {
	labels := strings.Split(name, ".")
	if len(labels) <= n {
		return name
	}
	return strings.Join(labels[len(labels)-n:], ".")
}

// knownCAATags are the property tags a CA understands; an unknown one with
// the critical flag forbids issuance.
var knownCAATags = []string{"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}

func hasMethod(methods, method string) bool {
	for _, m := range strings.Split(methods, ",") {
		if strings.EqualFold(strings.TrimSpace(m), method) {
			return true
		}
	}
	return false
}

// parseCAAValue splits an issue/issuewild value ("ca.example; key=value")
// into the issuer domain and its parameters.
func parseCAAValue(v string) (string, map[string]string) {
	parts := strings.Split(v, ";")
	params := map[string]string{}
	for _, p := range parts[1:] {
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok {
			params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
		}
	}
	return Normalize(parts[0]), params
}
