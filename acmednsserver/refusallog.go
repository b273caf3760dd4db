package acmednsserver

import (
	"hash/fnv"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// refusalLog writes refusals sampled per message, reason and source: the
// first of each in refusalTick, then none until the tick ends; the next
// line logged for them says how many were not (not_logged_since_last). A
// flood costs a line per source and reason every tick, not one per
// request; metrics still count every refusal.
//
// zap's sampler counts entries by message, so the line is sampled under a
// key made of message, reason and source (sampleKey), and the core below
// the sampler (keyedCore) logs it under its message again.
type refusalLog struct {
	logger *zap.Logger
	// notLogged counts the lines the sampler dropped, by the hash of their
	// key: a fixed table, as the sampler's own, whatever the sources.
	notLogged [refusalBuckets]atomic.Int64
}

const (
	refusalTick    = 10 * time.Second
	refusalBuckets = 1024
	keySeparator   = "\x00"
)

func newRefusalLog(logger *zap.Logger) *refusalLog {
	r := &refusalLog{}
	r.logger = logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(keyedCore{c, r}, refusalTick, 1, 0,
			zapcore.SamplerHook(func(e zapcore.Entry, d zapcore.SamplingDecision) {
				if d&zapcore.LogDropped != 0 {
					r.notLogged[bucketOf(e.Message)].Add(1)
				}
			}))
	}))
	return r
}

// refused logs msg for a refusal of src for reason, with fields.
func (r *refusalLog) refused(msg, reason string, src netip.Addr, fields ...zap.Field) {
	key := msg + keySeparator + reason + keySeparator + src.String()
	r.logger.Info(key, append(fields, zap.Stringer("source", src), zap.String("reason", reason))...)
}

func bucketOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % refusalBuckets)
}

// keyedCore writes a sampled entry under its message (its key's first
// part), with the count of those dropped since.
type keyedCore struct {
	zapcore.Core
	log *refusalLog
}

func (k keyedCore) With(fields []zapcore.Field) zapcore.Core {
	return keyedCore{k.Core.With(fields), k.log}
}

func (k keyedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if k.Enabled(e.Level) {
		return ce.AddCore(e, k)
	}
	return ce
}

func (k keyedCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	n := k.log.notLogged[bucketOf(e.Message)].Swap(0)
	e.Message, _, _ = strings.Cut(e.Message, keySeparator)
	if ce := k.Core.Check(e, nil); ce != nil {
		ce.Write(append(fields, zap.Int64("not_logged_since_last", n))...)
	}
	return nil
}
