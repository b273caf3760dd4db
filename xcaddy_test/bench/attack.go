package main

// The attack benchmark (issue 29): what legitimate clients get while an
// attacker stays inside every per-source limit, beside what they get with
// no attack.
//
//	cd xcaddy_test && go run ./bench -attack
//
// Each part (attack_ondemand.go for on-demand TLS; one per attacked
// service) measures its rows and returns its subsection. The run writes
// the section attackHeading starts in -out and leaves the rest of the file
// as it is.

import (
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// attackHeading starts the section -attack writes in BENCHMARKS.md.
const attackHeading = "## Under attack: what legitimate clients get"

// attackParts are the subsections of the attack section, in order; each
// returns its markdown, from its "###" heading on.
var attackParts = []func(b *bench) string{onDemandAttack, endpointAttack}

// runAttacks measures every part on the lab (Pebble without retryAfter)
// and writes the section after each.
func runAttacks(bin, out string) {
	b := &bench{caddy: bin, runID: strconv.FormatInt(time.Now().Unix()%(36*36*36*36), 36)}
	b.l = labWith("0")
	var parts []string
	for _, part := range attackParts {
		parts = append(parts, part(b))
		var s strings.Builder
		fmt.Fprintf(&s, "%s\n\nProduced by `cd xcaddy_test && go run ./bench %s` (as root, see README.md, Benchmarks) on %s.\n\n", attackHeading, shellQuote(os.Args[1:]), time.Now().UTC().Format("2006-01-02"))
		fmt.Fprintf(&s, "Machine: %s, %d cores, %s, %s, %s.\n", cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
		for _, p := range parts {
			s.WriteString("\n" + strings.TrimSpace(p) + "\n")
		}
		putSection(out, attackHeading, s.String())
	}
	log.Printf("wrote the %q section of %s", attackHeading, out)
}

// putSection replaces the section heading starts in the file at path with
// text (heading included), or adds it at the end.
func putSection(path, heading, text string) {
	data, _ := os.ReadFile(path)
	rest := strings.TrimRight(withoutSection(string(data), heading), "\n")
	if rest != "" {
		rest += "\n\n"
	}
	if err := os.WriteFile(path, []byte(rest+text), 0o644); err != nil {
		log.Fatal(err)
	}
}
