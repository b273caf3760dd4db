package solver

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/libdns/libdns"
)

func BenchmarkTemplateExpand(b *testing.B) {
	tmpl, err := ParseTemplate("_acme-challenge.{domain}.validation.example.org")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Expand("*.shop.customer.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMapTemplate(b *testing.B) {
	tmpl, _ := ParseTemplate("_acme-challenge.{domain}.validation.example.org")
	m := &Mapper{Default: &Rule{Alias: tmpl, Zones: []string{"validation.example.org"}, Writer: nopWriter{}},
		Resolver: delegatedResolver(b, "validation.example.org", tmpl.String())}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Resolve(ctx, "shop.customer.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFollowCached resolves a two-hop chain whose answers are cached:
// the cost of the check on a busy server.
func BenchmarkFollowCached(b *testing.B) {
	d := newFakeDNS("example.com", "hop.example", "validation.example.org").
		chain("_acme-challenge.example.com", "x.hop.example", "_acme-challenge.example.com.validation.example.org")
	r, _ := newTestResolver(b, d)
	ctx := context.Background()
	if _, err := r.Follow(ctx, "_acme-challenge.example.com", 0); err != nil {
		b.Fatal(err)
	}
	before := d.total()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Follow(ctx, "_acme-challenge.example.com", 0); err != nil {
			b.Fatal(err)
		}
	}
	if d.total() != before {
		b.Fatalf("cached chain lookups sent %d queries", d.total()-before)
	}
}

type nopWriter struct{}

func (nopWriter) AppendRecords(_ context.Context, _ string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, nil
}

func (nopWriter) DeleteRecords(_ context.Context, _ string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, nil
}

// BenchmarkPresentDeleteParallel is the bookkeeping of presented records
// under concurrency: many challenges on one static alias at once.
func BenchmarkPresentDeleteParallel(b *testing.B) {
	tmpl, _ := ParseTemplate("_acme-challenge.validation.example.org")
	p := &Provider{Mapper: &Mapper{Default: &Rule{Alias: tmpl, Zones: []string{"validation.example.org"}, Writer: nopWriter{}, WriterName: "nop"},
		Resolver: delegatedResolver(b, "validation.example.org", tmpl.String())}}
	var seq atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := libdns.TXT{Name: "_acme-challenge", Text: fmt.Sprint(seq.Add(1))}
			out, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := p.DeleteRecords(ctx, "example.com.", out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkInFlight measures the memory one presented challenge holds while
// n others are in flight: it should not grow with n.
func BenchmarkInFlight(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tmpl, _ := ParseTemplate("_acme-challenge.{domain}.validation.example.org")
			p := &Provider{Mapper: &Mapper{Default: &Rule{Alias: tmpl, Zones: []string{"validation.example.org"}, Writer: nopWriter{}, WriterName: "nop"},
				Resolver: delegatedResolver(b, "validation.example.org", tmpl.String())}}
			ctx := context.Background()
			for i := range n {
				rec := libdns.TXT{Name: "_acme-challenge", Text: fmt.Sprint("v", i)}
				if _, err := p.AppendRecords(ctx, fmt.Sprintf("d%d.example.com.", i), []libdns.Record{rec}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				rec := libdns.TXT{Name: "_acme-challenge", Text: fmt.Sprint("x", i)}
				out, err := p.AppendRecords(ctx, "new.example.com.", []libdns.Record{rec})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.DeleteRecords(ctx, "new.example.com.", out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteFreshName writes and deletes the challenge of a name not
// seen before, with nothing cached and no pass of the gate remembered: the
// DNS work of the write path on its own. queries/op counts the questions
// to the recursive resolvers, direct/op those to the production zone's
// authoritative servers, which the gate asks before the order.
func BenchmarkWriteFreshName(b *testing.B) {
	d, res := newCheckDNS(b)
	d.rec.delegateAll = "_acme-challenge.{domain}.validation.example.org"
	var recursive, direct atomic.Int64
	res.Sent = func(toAuthoritative bool) {
		if toAuthoritative {
			direct.Add(1)
		} else {
			recursive.Add(1)
		}
	}
	rule := mustValidate(b, &Rule{Alias: mustTemplate(b, "_acme-challenge.{domain}.validation.example.org"),
		Zones: []string{"validation.example.org"}, Writer: &fakeWriter{}, WriterName: "fake"})
	p := &Provider{Mapper: &Mapper{Resolver: res, Default: rule}}
	ctx := context.Background()
	n := 0
	for b.Loop() {
		n++
		zone := fmt.Sprintf("d%d.example.com.", n)
		rec := txt("_acme-challenge", zone)
		if _, err := p.AppendRecords(ctx, zone, []libdns.Record{rec}); err != nil {
			b.Fatal(err)
		}
		if _, err := p.DeleteRecords(ctx, zone, []libdns.Record{rec}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(recursive.Load())/float64(n), "queries/op")
	b.ReportMetric(float64(direct.Load())/float64(n), "direct/op")
}
