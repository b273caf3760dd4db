// Package configwalk finds modules in a decoded Caddy JSON config, for the
// tests of the root package and of xcaddy_test alike.
package configwalk

// AliasProviders returns every JSON object in v whose "name" is "alias".
func AliasProviders(v any) []map[string]any {
	var out []map[string]any
	switch x := v.(type) {
	case map[string]any:
		if x["name"] == "alias" {
			out = append(out, x)
		}
		for _, child := range x {
			out = append(out, AliasProviders(child)...)
		}
	case []any:
		for _, child := range x {
			out = append(out, AliasProviders(child)...)
		}
	}
	return out
}
