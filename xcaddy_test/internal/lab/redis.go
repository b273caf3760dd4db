package lab

// The lab's Redis (lab/lab.sh starts it on 127.0.0.1:$REDIS_PORT): the
// shared storage of the cluster scenarios. The tests send it a few
// commands (list keys, read one, stop the server) through redis-cli, which
// lab/install.sh installs with the server, rather than through a client
// library in the module's dependencies.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"
)

// Redis sends one command to the lab's Redis through redis-cli and
// returns its reply: a string, an int64, nil (a nil reply), or a []any of
// those. An error reply is an error with the server's message.
func (l *Lab) Redis(ctx context.Context, args ...string) (any, error) {
	if l.RedisAddr == "" {
		return nil, errors.New("lab: no REDIS_ADDR in lab.env (lab/lab.sh up starts Redis)")
	}
	host, port, err := net.SplitHostPort(l.RedisAddr)
	if err != nil {
		return nil, fmt.Errorf("lab: REDIS_ADDR %q: %w", l.RedisAddr, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	// -2 --json: RESP2 replies as JSON, so that a nil reply (null) differs
	// from an empty string; -e: an error reply exits 1.
	cmd := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port, "-2", "--json", "-e"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + " " + stdout.String())
		return nil, fmt.Errorf("lab: redis %s at %s: %w: %s", args[0], l.RedisAddr, err, msg)
	}
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	var reply any
	if err := dec.Decode(&reply); err != nil {
		return nil, fmt.Errorf("lab: redis %s: reading redis-cli's reply %q: %w", args[0], stdout.String(), err)
	}
	return integers(reply), nil
}

// integers turns the numbers of a decoded reply into the int64s Redis
// sent.
func integers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		return v.String()
	case []any:
		for i := range v {
			v[i] = integers(v[i])
		}
	}
	return v
}

// RedisKeys returns the keys matching pattern (Redis glob syntax), sorted.
// It uses SCAN, which does not block the server as KEYS can.
func (l *Lab) RedisKeys(ctx context.Context, pattern string) ([]string, error) {
	var keys []string
	cursor := "0"
	for {
		reply, err := l.Redis(ctx, "SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
		if err != nil {
			return nil, err
		}
		parts, ok := reply.([]any)
		if !ok || len(parts) != 2 {
			return nil, fmt.Errorf("lab: redis SCAN: unexpected reply %v", reply)
		}
		cursor, _ = parts[0].(string)
		batch, _ := parts[1].([]any)
		for _, k := range batch {
			if s, ok := k.(string); ok {
				keys = append(keys, s)
			}
		}
		if cursor == "0" || cursor == "" {
			break
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// RedisGet returns the value of key, and false if there is none.
func (l *Lab) RedisGet(ctx context.Context, key string) (string, bool, error) {
	reply, err := l.Redis(ctx, "GET", key)
	if err != nil || reply == nil {
		return "", false, err
	}
	s, ok := reply.(string)
	if !ok {
		return "", false, fmt.Errorf("lab: redis GET %s: unexpected reply %v", key, reply)
	}
	return s, true, nil
}

// StopRedis shuts the lab's Redis down (SHUTDOWN: it writes its
// append-only file and exits) and waits until its port refuses
// connections. lab/lab.sh up (Up) starts it again, with what it held.
func (l *Lab) StopRedis(ctx context.Context) error {
	// A server that shuts down closes the connection without a reply, so
	// redis-cli's verdict says nothing: the port does.
	l.Redis(ctx, "SHUTDOWN")
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", l.RedisAddr)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("lab: redis %s still accepts connections: %w", l.RedisAddr, ctx.Err())
			}
			return nil
		}
		conn.Close()
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: redis %s still accepts connections: %w", l.RedisAddr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// redisStorageData is how caddy-storage-redis stores a value: JSON around
// the bytes (base64 in JSON), which it may have compressed or encrypted.
type redisStorageData struct {
	Value       []byte `json:"value"`
	Compression int    `json:"compression"`
	Encryption  int    `json:"encryption"`
}

// RedisLoad returns what caddy-storage-redis stored at the storage key key
// under keyPrefix (as certmagic's Load would), and false if nothing is
// there. Compressed or encrypted values are refused: the lab's configs
// use neither.
func (l *Lab) RedisLoad(ctx context.Context, keyPrefix, key string) ([]byte, bool, error) {
	raw, ok, err := l.RedisGet(ctx, path.Join(keyPrefix, key))
	if err != nil || !ok {
		return nil, ok, err
	}
	var sd redisStorageData
	if err := json.Unmarshal([]byte(raw), &sd); err != nil {
		return nil, false, fmt.Errorf("lab: redis key %s/%s is no caddy-storage-redis value: %w", keyPrefix, key, err)
	}
	if sd.Compression != 0 || sd.Encryption != 0 {
		return nil, false, fmt.Errorf("lab: redis key %s/%s is compressed or encrypted", keyPrefix, key)
	}
	return sd.Value, true, nil
}

// RedisStorageKeys returns the storage keys (without keyPrefix) of the
// values caddy-storage-redis holds under keyPrefix/dir, at any depth.
// Its directory index (sorted sets) and its locks are no values and are
// left out.
func (l *Lab) RedisStorageKeys(ctx context.Context, keyPrefix, dir string) ([]string, error) {
	keys, err := l.RedisKeys(ctx, path.Join(keyPrefix, dir)+"/*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		typ, err := l.Redis(ctx, "TYPE", k)
		if err != nil {
			return nil, err
		}
		if typ == "string" {
			out = append(out, strings.TrimPrefix(k, keyPrefix+"/"))
		}
	}
	return out, nil
}

// RedisCert returns the certificate chain (PEM) that Caddy stored for name
// in the lab's Redis under keyPrefix, from any issuer, and false if there
// is none yet.
func (l *Lab) RedisCert(ctx context.Context, keyPrefix, name string) ([]byte, bool, error) {
	key := strings.Replace(name, "*", "wildcard_", 1)
	keys, err := l.RedisKeys(ctx, path.Join(keyPrefix, "certificates", "*", key, key+".crt"))
	if err != nil || len(keys) == 0 {
		return nil, false, err
	}
	return l.RedisLoad(ctx, keyPrefix, strings.TrimPrefix(keys[0], keyPrefix+"/"))
}

// RedisLockKey is where caddy-storage-redis keeps the storage lock name
// (e.g. certmagic's "issue_cert_<domain>") under keyPrefix: a key with a
// time to live, refreshed by its holder, gone when released or expired.
func RedisLockKey(keyPrefix, name string) string {
	return path.Join(keyPrefix, "locks", name)
}
