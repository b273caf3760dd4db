// Package netsource groups the client addresses that limits count
// together: a host (an IPv4 address, an IPv6 /64, which one host or one
// subscriber usually holds whole) and the wider network it sits in (an
// IPv4 /24, an IPv6 /48, what one site or one hosting customer commonly
// gets), so that an attacker with many addresses of one network is one
// source, not many.
package netsource

import "net/netip"

// Prefix lengths of a host and of its network.
const (
	HostBits4    = 32
	HostBits6    = 64
	NetworkBits4 = 24
	NetworkBits6 = 48
)

// Of returns the host prefix and the network prefix of a. An invalid
// address (no client, e.g. a check that no handshake asked for) gives two
// invalid prefixes.
func Of(a netip.Addr) (host, network netip.Prefix) {
	if !a.IsValid() {
		return netip.Prefix{}, netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		host, _ = a.Prefix(HostBits4)
		network, _ = a.Prefix(NetworkBits4)
		return host, network
	}
	host, _ = a.Prefix(HostBits6)
	network, _ = a.Prefix(NetworkBits6)
	return host, network
}
