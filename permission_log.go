package alias

import (
	"context"
	"crypto/tls"
	"net/netip"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// refusalLogEvery bounds the log lines of the permission module's
// refusals: a flood makes one line per reason per 10 s, with the count of
// those not logged.
const refusalLogEvery = 10 * time.Second

// refusalLog writes the lines of refusals for load through zap's sampler,
// one sampler per reason (the limit that refused), so that a flood refused
// by one limit does not hide the lines of another. The limits are a fixed
// set, so are the samplers.
type refusalLog struct {
	base    *zap.Logger
	mu      sync.Mutex
	reasons map[string]*sampledReason
}

// sampledReason is one reason's sampled logger and the count of lines its
// sampler dropped since the last one it let through. mu makes the
// sampler's decision and the count it resets one step, so that a line
// carries exactly the drops before it.
type sampledReason struct {
	logger  *zap.Logger
	mu      sync.Mutex
	dropped int64 // written by the sampler's hook, within mu
}

func newRefusalLog(base *zap.Logger) *refusalLog {
	return &refusalLog{base: base, reasons: make(map[string]*sampledReason)}
}

func (r *refusalLog) reason(key string) *sampledReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.reasons[key]
	if s == nil {
		s = new(sampledReason)
		s.logger = r.base.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return zapcore.NewSamplerWithOptions(c, refusalLogEvery, 1, 0, zapcore.SamplerHook(func(_ zapcore.Entry, d zapcore.SamplingDecision) {
				if d&zapcore.LogDropped != 0 {
					s.dropped++
				}
			}))
		}))
		r.reasons[key] = s
	}
	return s
}

// write logs msg for reason if zap's sampler lets it through, with the
// number of the reason's lines it held back since the last.
func (r *refusalLog) write(level zapcore.Level, reason, msg string, fields ...zap.Field) {
	s := r.reason(reason)
	s.mu.Lock()
	ce := s.logger.Check(level, msg)
	held := s.dropped
	if ce != nil {
		s.dropped = 0
	}
	s.mu.Unlock()
	if ce != nil {
		ce.Write(append(fields, zap.Int64("not_logged_since_last", held))...)
	}
}

// clientAddr is the address of the client whose handshake asks (certmagic
// puts the ClientHello in the context of the permission's question), or
// the zero Addr when no handshake asks (a renewal in the background). It
// counts the client's checks, never decides about a name: a refusal for
// load is not remembered.
func clientAddr(ctx context.Context) netip.Addr {
	hello, _ := ctx.Value(certmagic.ClientHelloInfoCtxKey).(*tls.ClientHelloInfo)
	if hello == nil || hello.Conn == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(hello.Conn.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// clientField names the client in a log line ("" when no handshake asked).
func clientField(a netip.Addr) zap.Field {
	if !a.IsValid() {
		return zap.String("client", "")
	}
	return zap.Stringer("client", a)
}
