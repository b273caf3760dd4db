package dnstest

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// update handles one RFC 2136 UPDATE message: it logs every update RR, then
// checks the zone, the signature, the prerequisites and the update section
// (prescan) and applies all of it or nothing.
func (s *Server) update(w dns.ResponseWriter, req *dns.Msg, resp *dns.Msg) {
	resp.SetReply(req)

	s.mu.Lock()
	defer s.mu.Unlock()

	s.nUpdate++
	zoneName := ""
	if len(req.Question) > 0 {
		zoneName = bare(req.Question[0].Name)
	}
	key := ""
	if t := req.IsTsig(); t != nil {
		key = t.Hdr.Name
	}
	first := len(s.updates)
	for _, rr := range req.Ns {
		s.updates = append(s.updates, logged(s.nUpdate, zoneName, key, rr))
	}
	if len(req.Ns) == 0 {
		s.updates = append(s.updates, Update{Msg: s.nUpdate, Zone: zoneName, Op: OpNone, Key: key})
	}

	resp.Rcode = s.applyUpdate(w, req)
	for i := first; i < len(s.updates); i++ {
		s.updates[i].Rcode = resp.Rcode
	}
}

func logged(msg int, zoneName, key string, rr dns.RR) Update {
	h := rr.Header()
	u := Update{Msg: msg, Zone: zoneName, Name: bare(h.Name), Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl, Key: key}
	switch {
	case h.Class == dns.ClassINET:
		u.Op, u.Value = OpAdd, rdata(rr)
	case h.Class == dns.ClassNONE:
		u.Op, u.Value = OpDelete, rdata(rr)
	case h.Class == dns.ClassANY && h.Rrtype == dns.TypeANY:
		u.Op = OpDeleteName
	case h.Class == dns.ClassANY:
		u.Op = OpDeleteRRset
	default:
		u.Op, u.Value = OpUnrecognised, rdata(rr)
	}
	return u
}

// rdata is the record's data in presentation form; for TXT the strings
// joined, as ACME compares them.
func rdata(rr dns.RR) string {
	if rr.Header().Rdlength == 0 && rr.Header().Class != dns.ClassINET {
		return ""
	}
	if txt, ok := rr.(*dns.TXT); ok {
		return strings.Join(txt.Txt, "")
	}
	return strings.TrimSpace(strings.TrimPrefix(rr.String(), rr.Header().String()))
}

func (s *Server) applyUpdate(w dns.ResponseWriter, req *dns.Msg) int {
	if len(req.Question) != 1 || req.Question[0].Qtype != dns.TypeSOA {
		return dns.RcodeFormatError
	}
	if req.IsTsig() == nil {
		return dns.RcodeRefused
	}
	if w.TsigStatus() != nil {
		return dns.RcodeNotAuth
	}
	z := s.zones[canonical(req.Question[0].Name)]
	if z == nil {
		return dns.RcodeNotAuth
	}
	if !z.updatable {
		return dns.RcodeRefused
	}
	if rcode := z.checkPrerequisites(req.Answer); rcode != dns.RcodeSuccess {
		return rcode
	}
	if rcode := z.prescan(req.Ns); rcode != dns.RcodeSuccess {
		return rcode
	}
	changed := false
	for _, rr := range req.Ns {
		changed = z.apply(rr) || changed
	}
	if changed {
		z.bumpSerial()
	}
	return dns.RcodeSuccess
}

// checkPrerequisites implements RFC 2136 §3.2.
func (z *zone) checkPrerequisites(prereqs []dns.RR) int {
	valueDependent := map[[2]string][]dns.RR{}
	for _, rr := range prereqs {
		h := rr.Header()
		name := canonical(h.Name)
		if h.Ttl != 0 {
			return dns.RcodeFormatError
		}
		if !dns.IsSubDomain(z.name, name) {
			return dns.RcodeNotZone
		}
		switch h.Class {
		case dns.ClassANY:
			if h.Rdlength != 0 {
				return dns.RcodeFormatError
			}
			if h.Rrtype == dns.TypeANY {
				if len(z.at(name)) == 0 {
					return dns.RcodeNameError
				}
			} else if len(z.rrset(name, h.Rrtype)) == 0 {
				return dns.RcodeNXRrset
			}
		case dns.ClassNONE:
			if h.Rdlength != 0 {
				return dns.RcodeFormatError
			}
			if h.Rrtype == dns.TypeANY {
				if len(z.at(name)) > 0 {
					return dns.RcodeYXDomain
				}
			} else if len(z.rrset(name, h.Rrtype)) > 0 {
				return dns.RcodeYXRrset
			}
		case dns.ClassINET:
			k := [2]string{name, dns.TypeToString[h.Rrtype]}
			valueDependent[k] = append(valueDependent[k], rr)
		default:
			return dns.RcodeFormatError
		}
	}
	for k, want := range valueDependent {
		have := z.rrset(k[0], dns.StringToType[k[1]])
		if len(have) != len(want) {
			return dns.RcodeNXRrset
		}
		for _, rr := range want {
			if !slices.ContainsFunc(have, func(h dns.RR) bool { return sameRR(h, rr) }) {
				return dns.RcodeNXRrset
			}
		}
	}
	return dns.RcodeSuccess
}

// prescan implements RFC 2136 §3.4.1.
func (z *zone) prescan(updates []dns.RR) int {
	for _, rr := range updates {
		h := rr.Header()
		if !dns.IsSubDomain(z.name, canonical(h.Name)) {
			return dns.RcodeNotZone
		}
		switch h.Class {
		case dns.ClassINET:
			switch h.Rrtype {
			case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB:
				return dns.RcodeFormatError
			}
		case dns.ClassANY:
			if h.Ttl != 0 || h.Rdlength != 0 {
				return dns.RcodeFormatError
			}
			switch h.Rrtype {
			case dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB:
				return dns.RcodeFormatError
			}
		case dns.ClassNONE:
			if h.Ttl != 0 {
				return dns.RcodeFormatError
			}
			switch h.Rrtype {
			case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB:
				return dns.RcodeFormatError
			}
		default:
			return dns.RcodeFormatError
		}
	}
	return dns.RcodeSuccess
}

// apply carries out one update RR (RFC 2136 §3.4.2) and reports whether the
// zone changed. The apex SOA and NS records are never deleted.
func (z *zone) apply(rr dns.RR) bool {
	h := rr.Header()
	name := canonical(h.Name)
	protected := func(have dns.RR) bool {
		t := have.Header().Rrtype
		return have.Header().Name == z.name && (t == dns.TypeSOA || t == dns.TypeNS)
	}
	switch h.Class {
	case dns.ClassINET:
		if h.Rrtype == dns.TypeSOA {
			return false
		}
		add := dns.Copy(rr)
		add.Header().Name = name
		for _, have := range z.at(name) {
			t := have.Header().Rrtype
			if (t == dns.TypeCNAME) != (h.Rrtype == dns.TypeCNAME) {
				return false // CNAME and other data cannot coexist
			}
		}
		if h.Rrtype == dns.TypeCNAME {
			// a CNAME replaces the one there
			z.rrs = slices.DeleteFunc(z.rrs, func(have dns.RR) bool {
				return have.Header().Name == name && have.Header().Rrtype == dns.TypeCNAME
			})
		}
		for i, have := range z.rrs {
			if sameRR(have, add) {
				z.rrs[i] = add // a duplicate replaces the record (new TTL)
				return true
			}
		}
		z.rrs = append(z.rrs, add)
		return true
	case dns.ClassNONE:
		before := len(z.rrs)
		z.rrs = slices.DeleteFunc(z.rrs, func(have dns.RR) bool { return !protected(have) && sameRR(have, rr) })
		return len(z.rrs) != before
	case dns.ClassANY:
		before := len(z.rrs)
		z.rrs = slices.DeleteFunc(z.rrs, func(have dns.RR) bool {
			return have.Header().Name == name && !protected(have) &&
				(h.Rrtype == dns.TypeANY || have.Header().Rrtype == h.Rrtype)
		})
		return len(z.rrs) != before
	}
	return false
}

// sameRR compares owner (case-insensitively), type and RDATA, ignoring class
// and TTL.
func sameRR(a, b dns.RR) bool {
	if a.Header().Rrtype != b.Header().Rrtype || canonical(a.Header().Name) != canonical(b.Header().Name) {
		return false
	}
	a, b = dns.Copy(a), dns.Copy(b)
	a.Header().Class, b.Header().Class = dns.ClassINET, dns.ClassINET
	a.Header().Name, b.Header().Name = canonical(a.Header().Name), canonical(b.Header().Name)
	return dns.IsDuplicate(a, b)
}
