package lab

// The lab's Redis (lab/lab.sh starts it on 127.0.0.1:$REDIS_PORT): the
// shared storage of the cluster scenarios. A few commands in RESP, Redis's
// wire protocol, are all the tests need (list keys, read one, stop the
// server), so this speaks it itself rather than adding a Redis client to
// the module's dependencies.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RedisError is an error reply of the Redis server (e.g. "ERR unknown
// command").
type RedisError string

func (e RedisError) Error() string { return "redis: " + string(e) }

// Redis sends one command to the lab's Redis and returns its reply: a
// string (simple or bulk), an int64, nil (a nil bulk or array), or a []any
// of those. An error reply is a RedisError.
func (l *Lab) Redis(ctx context.Context, args ...string) (any, error) {
	if l.RedisAddr == "" {
		return nil, errors.New("lab: no REDIS_ADDR in lab.env (lab/lab.sh up starts Redis)")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", l.RedisAddr)
	if err != nil {
		return nil, fmt.Errorf("lab: redis %s: %w", l.RedisAddr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := conn.Write(encodeRESP(args)); err != nil {
		return nil, fmt.Errorf("lab: redis %s: %w", args[0], err)
	}
	reply, err := readRESP(bufio.NewReader(conn))
	if err != nil {
		return nil, fmt.Errorf("lab: redis %s: %w", args[0], err)
	}
	return reply, nil
}

// encodeRESP is a command as Redis reads it: an array of bulk strings.
func encodeRESP(args []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return []byte(b.String())
}

// readRESP reads one RESP2 reply.
func readRESP(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	kind, rest := line[0], line[1:]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return nil, RedisError(rest)
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("bulk length %q: %w", rest, err)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("array length %q: %w", rest, err)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, 0, n)
		for range n {
			v, err := readRESP(r)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line)
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
	_, err := l.Redis(ctx, "SHUTDOWN")
	// A server that shuts down closes the connection without a reply.
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "connection reset") {
		return err
	}
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
