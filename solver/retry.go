package solver

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"
)

// Retry limits: a write is tried at most retryAttempts times, waiting about
// 0.1, 0.2, 0.4 ... s (jittered, at most retryMaxDelay) in between, and never
// past the caller's deadline.
const (
	retryAttempts  = 6
	retryBaseDelay = 100 * time.Millisecond
	retryMaxDelay  = 5 * time.Second
)

// Transient reports whether err looks like a failure that may pass by
// itself: timeouts, refused or reset connections, SERVFAIL, rate limits and
// 5xx answers. Anything else (REFUSED, NOTAUTH, bad credentials, 4xx) is
// permanent and retrying would only delay the message.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"servfail", "timeout", "timed out", "connection refused", "connection reset",
		"temporar", "try again", "too many requests", "status 429", "status 502", "status 503", "status 504"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// retry runs op until it succeeds, fails permanently, runs out of attempts
// or ctx ends, backing off with jitter between transient failures.
func retry(ctx context.Context, op func(context.Context) error) error {
	delay := retryBaseDelay
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil || attempt == retryAttempts || !Transient(err) {
			return err
		}
		wait := delay/2 + rand.N(delay)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		delay = min(2*delay, retryMaxDelay)
	}
}
