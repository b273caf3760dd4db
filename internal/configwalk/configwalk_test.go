package configwalk

import (
	"encoding/json"
	"testing"
)

func TestAliasProviders(t *testing.T) {
	var v any
	if err := json.Unmarshal([]byte(`{"a":[{"name":"alias","provider":{"name":"rfc2136"}},{"b":{"name":"alias"}}],"name":"x"}`), &v); err != nil {
		t.Fatal(err)
	}
	if got := AliasProviders(v); len(got) != 2 {
		t.Errorf("found %d alias providers, want 2: %v", len(got), got)
	}
}
