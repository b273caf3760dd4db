package solver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Issuer is what CAA is judged against.
type Issuer struct {
	// CAIdentities are the CAA issuer domains of the CA that will be asked
	// for the certificate, e.g. "letsencrypt.org". Empty: CAA records are
	// reported, not judged.
	CAIdentities []string
	// AccountURIs are the URLs of the ACME accounts at that CA that this
	// server orders with (RFC 8657's accounturi), the one it will most
	// likely use first. Empty while it has none: accounturi is then noted,
	// not judged.
	AccountURIs []string
}

// checkCAA finds the CAA record set that applies to the domain (the closest
// one walking up from the domain, RFC 8659) and judges it for the CA and
// the ACME account that will ask (RFC 8657). CAA is checked on the
// original name only: the CA never looks at the alias zone's. A wildcard
// is judged by issuewild when the set has any, by issue otherwise;
// issuewild never applies to other names. A set with no property of the
// relevant tag does not restrict issuance.
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
	var iss Issuer
	if c.Issuer != nil {
		iss = c.Issuer(ctx)
	}
	if len(rep.CAA) == 0 {
		noteBinding(rep, iss, start, "no CAA applies to "+start)
		return
	}
	if len(iss.CAIdentities) == 0 {
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
	var methodsBlocked, accountBlocked []CAARecord
	// anyAccount: a property lets this CA issue to whichever account asks
	permitted, anyAccount := false, false
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
		if !slices.Contains(iss.CAIdentities, issuer) {
			continue
		}
		if methods, ok := params["validationmethods"]; ok && !hasMethod(methods, "dns-01") {
			methodsBlocked = append(methodsBlocked, rec)
			continue
		}
		uri, ok := params["accounturi"]
		switch {
		case !ok:
			permitted, anyAccount = true, true
		case len(iss.AccountURIs) == 0:
			permitted = true
			rep.add(errorOf(ErrCAAAccountURI, "CAA %s at %s allows %s only for the ACME account %s; this server has no account at that CA yet, so it cannot tell whether it is that one: Caddy must use that account", tag, owner, issuer, uri), false)
		case slices.Contains(iss.AccountURIs, uri):
			permitted = true
		default:
			accountBlocked = append(accountBlocked, rec)
		}
	}
	switch {
	case len(issuers) == 0 || permitted:
		if len(issuers) == 0 || anyAccount {
			noteBinding(rep, iss, owner, fmt.Sprintf("CAA %s at %s allows this CA from any ACME account", tag, owner))
		}
	case len(methodsBlocked) > 0:
		rec := methodsBlocked[0]
		issuer, params := parseCAAValue(rec.Value)
		methods := params["validationmethods"]
		delete(params, "validationmethods")
		fix := caaRecord(owner, tag, caaValue(issuer, params)+"; validationmethods="+methods+",dns-01")
		rep.add(errorOf(ErrCAAMethods, "CAA %s %q at %s allows %s only with validationmethods=%s, which excludes dns-01; replace it with: %s",
			tag, rec.Value, owner, issuer, methods, fix), true)
		rep.setFix(fix)
	case len(accountBlocked) > 0:
		var others []string
		for _, rec := range accountBlocked {
			_, params := parseCAAValue(rec.Value)
			others = append(others, params["accounturi"])
		}
		issuer, params := parseCAAValue(accountBlocked[0].Value)
		params["accounturi"] = iss.AccountURIs[0]
		fix := caaRecord(owner, tag, caaValue(issuer, params))
		rep.add(errorOf(ErrCAAAccountURI, "CAA %s at %s allows %s only for the ACME accounts %s, not this server's (%s); add: %s",
			tag, owner, issuer, strings.Join(others, ", "), strings.Join(iss.AccountURIs, ", "), fix), true)
		rep.setFix(fix)
	default:
		fix := caaRecord(owner, tag, iss.CAIdentities[0])
		rep.add(errorOf(ErrCAAForbids, "CAA %s at %s allows only %s, none of %s; add: %s",
			tag, owner, strings.Join(issuers, ", "), strings.Join(iss.CAIdentities, ", "), fix), true)
		rep.setFix(fix)
	}
}

// noteBinding adds, when this server's ACME account is known, a note with
// the CAA record that would bind issuance for owner to it (RFC 8657): with
// it, a holder of the validation zone's credential can no longer obtain
// certificates for the name from an account of its own.
func noteBinding(rep *Report, iss Issuer, owner, why string) {
	if len(iss.CAIdentities) == 0 || len(iss.AccountURIs) == 0 {
		return
	}
	record := caaRecord(owner, "issue", caaValue(iss.CAIdentities[0], map[string]string{"accounturi": iss.AccountURIs[0]}))
	rep.add(errorOf(ErrCAAUnbound, "%s; to bind issuance to this server's ACME account, publish: %s", why, record), false)
}

// caaRecord is the zone-file line of the CAA property tag with value at
// owner.
func caaRecord(owner, tag, value string) string {
	return fmt.Sprintf("%s. 300 IN CAA 0 %s %q", owner, tag, value)
}

// caaValue is an issue/issuewild value: issuer, then params sorted, so
// that a printed record is the same every time.
func caaValue(issuer string, params map[string]string) string {
	value := issuer
	for _, k := range slices.Sorted(maps.Keys(params)) {
		value += "; " + k + "=" + params[k]
	}
	return value
}

// setFix sets the record to publish, unless an earlier finding set one.
func (r *Report) setFix(fix string) {
	if r.Fix == "" {
		r.Fix = fix
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
