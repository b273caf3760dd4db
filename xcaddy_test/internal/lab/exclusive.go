package lab

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

// exclusiveLock is the file locked by every test process that uses the lab
// in Dir(), so that test packages (and people) running at once do not see
// each other's records: the lab's zones are shared state. It lies beside
// the lab's directory (which down --purge deletes), so labs with their own
// LAB_DIR, each in its network namespace, do not wait for each other.
func exclusiveLock() string { return strings.TrimSuffix(Dir(), "/") + ".tests.lock" }

// Exclusive blocks until this process is the only one using the lab and
// returns the function that releases it.
func Exclusive() (release func(), err error) {
	path := exclusiveLock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: locking %s: %w", path, err)
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
