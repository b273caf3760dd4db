package alias

import (
	"context"
	"crypto/tls"
	"net/netip"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

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
