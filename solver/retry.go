package solver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Retry limits: a write is tried at most retryAttempts times, waiting about
// 0.1, 0.2, 0.4 ... s (jittered, at most retryMaxDelay) in between, and never
// past the caller's deadline. A caller without a deadline (certmagic gives
// managed certificates none) gets retryBudget for all attempts together, so
// that an inner provider that never answers cannot hold a challenge, and the
// certificate lock with it, forever.
const (
	retryAttempts  = 6
	retryBaseDelay = 100 * time.Millisecond
	retryMaxDelay  = 5 * time.Second
	retryBudget    = 2 * time.Minute
)

// Transient reports whether err is a failure that may pass by itself:
// timeouts, refused or reset connections, SERVFAIL, rate limits and 5xx
// answers. Anything else (REFUSED, NOTAUTH, bad credentials, 4xx) is
// permanent and retrying would only delay the message.
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case timeout(err), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return saysTransient(err)
}

// timeout reports whether err is a network timeout, by its type.
func timeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// transientMessages are what the inner providers' errors say when they may
// pass. Those errors often reach the solver as text only: the libdns
// providers (caddy-dns/*) format HTTP statuses and DNS rcodes into their
// messages with no error type of their own, and the redacting writer
// rebuilds an error that quoted a credential from its scrubbed message,
// which no longer unwraps. Every error of the solver's own making is
// classified by its type above.
var transientMessages = []string{"servfail", "timeout", "timed out", "connection refused", "connection reset",
	"temporar", "try again", "too many requests", "status 429", "status 500", "status 502", "status 503", "status 504",
	"http 429", "http 500", "http 502", "http 503", "http 504",
	"internal server error", "bad gateway", "service unavailable", "gateway timeout"}

// saysTransient reports whether err's message says it may pass (see
// transientMessages).
func saysTransient(err error) bool {
	msg := strings.ToLower(err.Error())
	return slices.ContainsFunc(transientMessages, func(s string) bool { return strings.Contains(msg, s) })
}

// notSent reports whether err proves that a request never reached the
// server: the connection was refused, or the server's address could not be
// found. A refusal rebuilt from text (see transientMessages) says so only
// in its message.
func notSent(err error) bool {
	var dnsErr *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &dnsErr) && dnsErr.IsNotFound) ||
		strings.Contains(strings.ToLower(err.Error()), "connection refused")
}

// retryError is the failure of a retried operation: its last error, how
// many attempts were made, and whether any attempt may have taken effect
// although it reported failure (a timeout after the request was sent, a
// reset connection, a 5xx, a cancelled context).
type retryError struct {
	err       error
	attempts  int
	uncertain bool
}

func (e *retryError) Error() string {
	if e.attempts == 1 {
		return e.err.Error()
	}
	return fmt.Sprintf("%d attempts, the last: %v", e.attempts, e.err)
}

func (e *retryError) Unwrap() error { return e.err }

// MayHaveTakenEffect reports whether a failed write, as returned by the
// retries around the inner provider, may nevertheless have changed the
// zone, so that a compensating delete is needed. Permanent refusals (the
// server answered no: REFUSED, NOTAUTH, bad credentials, 4xx) and
// connections that were refused change nothing.
func MayHaveTakenEffect(err error) bool {
	if err == nil {
		return false
	}
	var re *retryError
	if errors.As(err, &re) {
		return re.uncertain
	}
	return uncertain(err)
}

// uncertain classifies the error of one attempt: may the request have been
// carried out although it failed?
func uncertain(err error) bool {
	switch {
	case notSent(err):
		return false
	case Transient(err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// It failed on the way or in the server: it may have been applied.
		return true
	default:
		// The server (or the client, before sending) refused it.
		return false
	}
}

// retry runs op until it succeeds, fails permanently, runs out of attempts
// or ctx ends, backing off with jitter between transient failures. A
// backoff that would end past ctx's deadline is not waited for: the last
// error is returned at once, leaving the rest of the time to the caller
// (e.g. for a compensating delete). The error, if any, is a *retryError.
//
// cenkalti/backoff's Retry, in the module graph through Caddy, would save
// the few lines of delay arithmetic but not the loop: on a cancelled
// context it returns the context's cause alone, where a challenge's error
// must name the provider's last failure, and the attempt count and the
// may-have-taken-effect verdict would still be kept beside it.
func retry(ctx context.Context, op func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, retryBudget)
		defer cancel()
	}
	delay := retryBaseDelay
	var uncertainAny bool
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		uncertainAny = uncertainAny || uncertain(err)
		fail := func(err error) error { return &retryError{err: err, attempts: attempt, uncertain: uncertainAny} }
		if attempt == retryAttempts || !Transient(err) {
			return fail(err)
		}
		wait := delay/2 + rand.N(delay)
		if deadline, _ := ctx.Deadline(); time.Until(deadline) < wait {
			return fail(err)
		}
		select {
		case <-ctx.Done():
			return fail(errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
		delay = min(2*delay, retryMaxDelay)
	}
}

// Sleep waits for d, or until ctx ends, whose error it then returns.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
