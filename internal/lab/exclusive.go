package lab

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// exclusiveLock is taken by every test process that uses the lab, so that
// test packages (and people) running at once do not see each other's
// records: the lab's zones are shared state.
const exclusiveLock = "/tmp/caddy-dns-alias-labtests.lock"

// Exclusive blocks until this process is the only one using the lab and
// returns the function that releases it.
func Exclusive() (release func(), err error) {
	f, err := os.OpenFile(exclusiveLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: locking %s: %w", exclusiveLock, err)
	}
	return func() { f.Close() }, nil
}

var (
	holdOnce sync.Once
	holdErr  error
	// holdRelease keeps the locked file reachable: an *os.File that is
	// garbage collected is closed by its finalizer, and the lock with it.
	holdRelease func()
)

// Hold takes Exclusive for the rest of this process's life (the lock goes
// with the process), once however often it is called.
func Hold() error {
	holdOnce.Do(func() { holdRelease, holdErr = Exclusive() })
	return holdErr
}
