package lab

import (
	"bufio"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRESP(t *testing.T) {
	if got := string(encodeRESP([]string{"GET", "caddy/a b"})); got != "*2\r\n$3\r\nGET\r\n$9\r\ncaddy/a b\r\n" {
		t.Errorf("encodeRESP = %q", got)
	}
	for _, tc := range []struct {
		in   string
		want any
		err  string
	}{
		{"+PONG\r\n", "PONG", ""},
		{":42\r\n", int64(42), ""},
		{"$5\r\nhe\r\no\r\n", "he\r\no", ""},
		{"$-1\r\n", nil, ""},
		{"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n:1\r\n", []any{"0", []any{"a", int64(1)}}, ""},
		{"*-1\r\n", nil, ""},
		{"-ERR unknown command 'X'\r\n", nil, "redis: ERR unknown command 'X'"},
		{"?\r\n", nil, "unknown reply type"},
		{"$9\r\nshort\r\n", nil, "EOF"},
	} {
		got, err := readRESP(bufio.NewReader(strings.NewReader(tc.in)))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("readRESP(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("readRESP(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	var re RedisError
	if _, err := readRESP(bufio.NewReader(strings.NewReader("-WRONGTYPE x\r\n"))); !errors.As(err, &re) {
		t.Errorf("an error reply is not a RedisError: %v", err)
	}
}

// TestRedis: the lab's Redis stores, lists and returns keys, and keeps
// them over a restart (StopRedis, then Up), as Caddy's storage needs.
func TestRedis(t *testing.T) {
	l := Require(t)
	ctx := ctxT(t)
	prefix := uniq("labtest")
	key := prefix + "/dir/k.json"
	if _, err := l.Redis(ctx, "SET", key, `{"v":1}`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.Redis(ctx, "DEL", key)
	})
	keys, err := l.RedisKeys(ctx, prefix+"/*")
	if err != nil || !reflect.DeepEqual(keys, []string{key}) {
		t.Fatalf("RedisKeys = %v, %v; want [%s]", keys, err, key)
	}
	if err := l.StopRedis(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Redis(ctx, "PING"); err == nil {
		t.Fatalf("redis answers after StopRedis")
	}
	if _, err := Up(ctx); err != nil {
		t.Fatal(err)
	}
	v, ok, err := l.RedisGet(ctx, key)
	if err != nil || !ok || v != `{"v":1}` {
		t.Errorf("after the restart GET %s = %q, %v, %v; want what was stored", key, v, ok, err)
	}
	if _, ok, err := l.RedisGet(ctx, prefix+"/none"); ok || err != nil {
		t.Errorf("GET of a missing key = %v, %v", ok, err)
	}
}
