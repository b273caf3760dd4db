package lab

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

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
	// Replies of each kind, as the tests read them.
	for _, tc := range []struct {
		args []string
		want any
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"EXISTS", key}, int64(1)},
		{[]string{"GET", prefix + "/none"}, nil},
		{[]string{"SCAN", "0", "MATCH", key, "COUNT", "100000"}, []any{"0", []any{key}}},
	} {
		if got, err := l.Redis(ctx, tc.args...); err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Redis(%q) = %#v, %v; want %#v", tc.args, got, err, tc.want)
		}
	}
	if _, err := l.Redis(ctx, "NOSUCHCOMMAND"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("an error reply gave %v, want the server's message", err)
	}
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
