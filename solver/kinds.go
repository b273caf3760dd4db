package solver

import (
	"errors"
	"fmt"
)

// kinds maps each kind of finding, an Err* sentinel that the errors of the
// checks wrap, to its code, most specific first: a wildcard probe that
// failed is a lookup failure, a loop seen through a failing resolver a
// loop.
var kinds = []struct {
	Err  error
	Code string
}{
	{ErrNoRule, CodeNoRule},
	{ErrNoDelegation, CodeNoDelegation},
	{ErrWrongTarget, CodeWrongTarget},
	{ErrOutsideZones, CodeOutsideZones},
	{ErrWildcard, CodeWildcard},
	{ErrLoop, CodeLoop},
	{ErrTooManyHops, CodeTooManyHops},
	{ErrRootTarget, CodeBadTarget},
	{ErrBadTarget, CodeBadTarget},
	{ErrDrift, CodeDrift},
	{ErrNSUnreachable, CodeNSUnreachable},
	{ErrNotAsked, CodeNSNotAsked},
	{ErrCAAForbids, CodeCAAForbids},
	{ErrCAAMethods, CodeCAAMethods},
	{ErrCAAAccountURI, CodeCAAAccountURI},
	{ErrCAAUnbound, CodeCAAUnbound},
	{ErrCAASkipped, CodeCAASkipped},
	{ErrLookup, CodeLookup},
}

// Errors of the checks beyond the chain's (chain.go) and the mapping's
// (mapping.go). They are wrapped with the names involved.
var (
	ErrDrift         = errors.New("authoritative nameservers disagree")
	ErrNSUnreachable = errors.New("authoritative nameserver unreachable")
	ErrCAAForbids    = errors.New("CAA forbids the CA")
	ErrCAAMethods    = errors.New("CAA excludes dns-01")
	ErrCAAAccountURI = errors.New("CAA binds issuance to another ACME account")
	ErrCAAUnbound    = errors.New("CAA does not bind issuance to this server's ACME account")
	ErrCAASkipped    = errors.New("CAA of middle labels not looked up")
)

// newFinding makes the finding of err.
func newFinding(err error, fatal bool) Finding {
	kind, code := kindOf(err)
	return Finding{Code: code, Message: Printable(err.Error()), Fatal: fatal, kind: kind, cause: err}
}

// kindOf returns the kind of err and its code. An error of no known kind
// counts as a failed lookup: like one, it says nothing about the
// delegation.
func kindOf(err error) (error, string) {
	for _, k := range kinds {
		if errors.Is(err, k.Err) {
			return k.Err, k.Code
		}
	}
	return ErrLookup, CodeLookup
}

// kindError is an error of a kind (an Err* sentinel) with a message of its
// own, which need not quote the kind's.
type kindError struct {
	msg  string
	errs []error // the kind, then the errors the message quotes
}

func (e *kindError) Error() string   { return e.msg }
func (e *kindError) Unwrap() []error { return e.errs }

// errorOf returns an error of kind whose message is format applied to
// args; the errors among args are wrapped too.
func errorOf(kind error, format string, args ...any) error {
	e := &kindError{msg: fmt.Sprintf(format, args...), errs: []error{kind}}
	for _, a := range args {
		if err, ok := a.(error); ok {
			e.errs = append(e.errs, err)
		}
	}
	return e
}
