package solver

import "testing"

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"letsencrypt.org", "letsencrypt.org"},
		{"bücher.example", "bücher.example"},
		{"a b", "a b"},
		{"\x1b[2Jcleared", `\x1b[2Jcleared`},
		{"line\nforged: ok", `line\nforged: ok`},
		{"tab\there\r", `tab\there\r`},
		{"\x7f\x9b", `\x7f\x9b`},
		{"rtl\u202eoverride", `rtl\u202eoverride`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"\U000e0041tag", `\U000e0041tag`},
	}
	for _, tt := range tests {
		if got := Printable(tt.in); got != tt.want {
			t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
