package alias

import (
	"reflect"
	"slices"
	"testing"
)

// TestProviderExportsOnlyItsModuleFace: dns.providers.alias exports the
// four libdns methods and Caddy's module interfaces, and nothing of the
// solver behind it (its sweeps, its memo, its registry), which an embedded
// solver type would export to every module that holds the provider.
func TestProviderExportsOnlyItsModuleFace(t *testing.T) {
	var got []string
	typ := reflect.TypeFor[*Provider]()
	for i := range typ.NumMethod() {
		got = append(got, typ.Method(i).Name)
	}
	want := []string{"AppendRecords", "CaddyModule", "Cleanup", "DeleteRecords", "GetRecords", "Provision", "SetRecords", "UnmarshalCaddyfile"}
	if !slices.Equal(got, want) {
		t.Errorf("exported methods %v, want %v", got, want)
	}
	for i := range typ.Elem().NumField() {
		if f := typ.Elem().Field(i); f.Anonymous {
			t.Errorf("embedded field %s", f.Name)
		}
	}
}
