package solver

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/acme-alias/caddy-dns-alias/internal/dnstest"
)

// dnstestWriter writes TXT records into the in-process DNS server's zones.
type dnstestWriter struct{ srv *dnstest.Server }

func (w dnstestWriter) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	for _, r := range recs {
		rr := r.RR()
		w.srv.Add(libdns.AbsoluteName(rr.Name, zone) + ` 60 IN TXT "` + rr.Data + `"`)
	}
	return recs, nil
}

func (w dnstestWriter) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	for _, r := range recs {
		rr := r.RR()
		w.srv.Remove(libdns.AbsoluteName(rr.Name, zone) + ` 60 IN TXT "` + rr.Data + `"`)
	}
	return recs, nil
}

// TestHoldSilentNameserver: the alias zone has two nameservers, the
// in-process DNS server and one that reads every query and answers none.
// Hold within a 1 s bound (the acme-dns endpoint's update_timeout) returns
// in time, the value written and served by the server that answers, and
// kept, where the authoritative wait alone (2 minutes) would outlast every
// client.
func TestHoldSilentNameserver(t *testing.T) {
	srv := dnstest.Start(t,
		dnstest.Zone{Name: "dnstest", Records: "ns1 A 127.0.0.1\nns2 A 127.0.0.2"},
		dnstest.Zone{Name: testAliasZone, Records: "@ NS ns1.dnstest.\n@ NS ns2.dnstest."},
	)
	_, port, _ := net.SplitHostPort(srv.Addr())
	silent, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Fatalf("the silent nameserver: %v", err)
	}
	defer silent.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := silent.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	res, err := NewResolver([]string{srv.Addr()}, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	res.NameserverPort, res.PrivateNameservers = port, true
	rule := mustValidate(t, &Rule{Follow: true, Zones: []string{testAliasZone}, Writer: dnstestWriter{srv}, WriterName: "dnstest"})
	p := &Provider{Mapper: &Mapper{Default: rule, Resolver: res}, AuthoritativeWait: 2 * time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	name := "acct1." + testAliasZone
	served, err := p.Held().Hold(ctx, name, digest("v"), time.Hour)
	took := time.Since(start)
	if err != nil || served {
		t.Fatalf("Hold = served %v, %v; want written, not served by every server", served, err)
	}
	if took > 2*time.Second {
		t.Fatalf("Hold took %s past its 1s bound", took)
	}
	if got := srv.TXTValues(name); !slices.Equal(got, []string{digest("v")}) {
		t.Fatalf("the answering server serves %q at %s, want the value kept", got, name)
	}
}
