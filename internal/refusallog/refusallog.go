// Package refusallog writes the log lines of refusals (the on-demand
// permission's refusals for load, the acme-dns endpoint's refused
// requests) sampled by zap's own sampler: the first line of each key in a
// tick, then none until the tick ends; the next line logged for that key
// says how many were not (not_logged_since_last). A flood costs a line per
// key every tick, not one per request; metrics still count every refusal.
package refusallog

import (
	"hash/fnv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Tick is how long a key stays quiet after its line.
const Tick = 10 * time.Second

const (
	buckets   = 1024
	separator = "\x00"
)

// Log is a sampled refusal log.
//
// zap's sampler counts entries by message, so a line is sampled under a
// message made of the message and its key, and the core below the sampler
// (keyedCore) logs it under its message again.
type Log struct {
	logger *zap.Logger
	// notLogged counts the lines the sampler dropped, by the hash of their
	// key: a fixed table, as the sampler's own, whatever the keys.
	notLogged [buckets]atomic.Int64
}

// New returns a Log writing through logger.
func New(logger *zap.Logger) *Log {
	l := &Log{}
	l.logger = logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(keyedCore{c, l}, Tick, 1, 0,
			zapcore.SamplerHook(func(e zapcore.Entry, d zapcore.SamplingDecision) {
				if d&zapcore.LogDropped != 0 {
					l.notLogged[bucketOf(e.Message)].Add(1)
				}
			}))
	}))
	return l
}

// Write logs msg at level with fields, sampled under key (e.g. a reason
// and a source).
func (l *Log) Write(level zapcore.Level, key, msg string, fields ...zap.Field) {
	if ce := l.logger.Check(level, msg+separator+key); ce != nil {
		ce.Write(fields...)
	}
}

func bucketOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % buckets)
}

// keyedCore writes a sampled entry under its message (its key's first
// part), with the count of those dropped since.
type keyedCore struct {
	zapcore.Core
	log *Log
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
	e.Message, _, _ = strings.Cut(e.Message, separator)
	if ce := k.Core.Check(e, nil); ce != nil {
		ce.Write(append(fields, zap.Int64("not_logged_since_last", n))...)
	}
	return nil
}
