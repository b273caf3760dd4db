package providers

// ACMEDNSState returns the bookkeeping a config holds for the account
// subdomain at server, and how many configs hold it (nil, 0: none).
func ACMEDNSState(server, subdomain string) (any, int) {
	key := acmeDNSKey(server, subdomain)
	n, ok := acmeDNSStates.References(key)
	if !ok {
		return nil, 0
	}
	st, _, _ := acmeDNSStates.LoadOrNew(key, nil)
	acmeDNSStates.Delete(key)
	return st, n
}
