package lab

import (
	"strings"
	"testing"
)

// TestProvidersMissing: a lab.env without PowerDNS or moto gives an error
// that names what is missing and how to get it, never an empty config.
func TestProvidersMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		get  func(l *Lab) error
		want string
	}{
		{"no PowerDNS", map[string]string{}, func(l *Lab) error { _, err := l.PowerDNS(); return err }, "pdns_server"},
		{"no moto", map[string]string{"MOTO_URL": "", "ROUTE53_ZONE": "validation.example.org"},
			func(l *Lab) error { _, err := l.Route53(); return err }, "moto_server"},
		{"PowerDNS", map[string]string{"PDNS_ADDR": "127.0.0.5:53", "PDNS_ZONE": "pdns.example", "PDNS_API": "http://127.0.0.5:8081", "PDNS_API_KEY": "k"},
			func(l *Lab) error { _, err := l.PowerDNS(); return err }, ""},
		{"moto", map[string]string{"MOTO_URL": "http://127.0.0.1:15005", "ROUTE53_ZONE_ID": "Z1", "ROUTE53_ZONE": "validation.example.org"},
			func(l *Lab) error { _, err := l.Route53(); return err }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.get(&Lab{Dir: "/lab", Env: tc.env})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}
