package lab

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// ServeSilently is a nameserver that never answers, on addr (e.g. the
// lab's SilentNSAddr, or "127.0.0.1:0" for any port): it reads every
// query sent over UDP, and accepts every TCP connection on the same port
// and reads it until the client gives up, answering none, as a server
// that is down without refusing does (a port nobody binds refuses at
// once: an ICMP error, a TCP reset). queries counts the UDP datagrams and
// TCP connections that reached it. It returns the UDP address bound and
// the function that stops it.
func ServeSilently(addr string, queries *atomic.Int64) (*net.UDPAddr, func(), error) {
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("lab: the silent nameserver on %s: %w", addr, err)
	}
	bound := udp.LocalAddr().(*net.UDPAddr)
	tcp, err := net.Listen("tcp", bound.String())
	if err != nil {
		udp.Close()
		return nil, nil, fmt.Errorf("lab: the silent nameserver on %s (tcp): %w", bound, err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		conns   = map[net.Conn]bool{}
		stopped bool
	)
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := udp.ReadFrom(buf); err != nil {
				return
			}
			queries.Add(1)
		}
	})
	wg.Go(func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			queries.Add(1)
			mu.Lock()
			if stopped { // accepted as stop closed the others
				c.Close()
			}
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				io.Copy(io.Discard, c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			})
		}
	})
	stop := func() {
		udp.Close()
		tcp.Close()
		mu.Lock()
		stopped = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	return bound, stop, nil
}
