package netsource

import (
	"net/netip"
	"testing"
)

func TestOf(t *testing.T) {
	tests := []struct {
		addr          string
		host, network string
	}{
		{"192.0.2.77", "192.0.2.77/32", "192.0.2.0/24"},
		{"::ffff:192.0.2.77", "192.0.2.77/32", "192.0.2.0/24"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", "2001:db8:1::/48"},
		{"fe80::1%eth0", "fe80::/64", "fe80::/48"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			host, network := Of(netip.MustParseAddr(tt.addr))
			if host.String() != tt.host || network.String() != tt.network {
				t.Errorf("Of(%s) = %s, %s; want %s, %s", tt.addr, host, network, tt.host, tt.network)
			}
		})
	}
	if host, network := Of(netip.Addr{}); host.IsValid() || network.IsValid() {
		t.Errorf("Of(no address) = %s, %s; want invalid prefixes", host, network)
	}
}
