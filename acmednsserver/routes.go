package acmednsserver

import (
	"net/http"
	"path"
	"strings"
)

// routes are the API routes a server answers: acme-dns's, and the optional
// ones its config turns on.
type routes struct{ register, httpreq bool }

// route is the clean path of an API route the server answers, or "".
func (s routes) route(p string) string {
	switch p {
	case "/update", "/health":
		return p
	case "/register":
		if s.register {
			return p
		}
	case "/present", "/cleanup":
		if s.httpreq {
			return p
		}
	}
	return ""
}

// redirect is the clean path a request for p is sent to, as acme-dns's
// router (httprouter 1.3, RedirectTrailingSlash and RedirectFixedPath)
// sends it: a base URL with a trailing slash makes clients ask for
// //update, and a path with a trailing slash, repeated slashes, dot
// segments or another case than the route's is redirected to the route.
// "" if p is a route or no route's variant.
func (s routes) redirect(p string) string {
	if s.route(p) != "" || p == "/" {
		return ""
	}
	clean := strings.ToLower(strings.TrimSuffix(path.Clean("/"+p), "/"))
	return s.route(clean)
}

// Handles reports whether the server answers path (a route, or a variant
// it redirects to one); the handler passes other requests on.
func (s *Server) Handles(path string) bool {
	return s.routes.route(path) != "" || s.routes.redirect(path) != ""
}

// ServeHTTP answers /update, /health and, if on, /register, /present and
// /cleanup, and redirects their variants (trailing slash, doubled slash)
// as acme-dns does: 301 for GET, 307 (same method, same body) otherwise.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, method := r.URL.Path, r.Method
	if to := s.routes.redirect(p); to != "" && method != http.MethodConnect {
		code := http.StatusMovedPermanently
		if method != http.MethodGet {
			code = http.StatusTemporaryRedirect
		}
		u := *r.URL
		u.Path, u.RawPath = to, ""
		http.Redirect(w, r, u.RequestURI(), code)
		return
	}
	switch {
	case p == "/health" && (method == http.MethodGet || method == http.MethodHead):
		w.WriteHeader(http.StatusOK)
	case p == "/update" && method == http.MethodPost:
		s.update(w, r)
	case p == "/register" && method == http.MethodPost && s.reg != nil:
		s.register(w, r)
	case (p == "/present" || p == "/cleanup") && method == http.MethodPost && s.httpreq:
		s.httpReq(w, r, strings.TrimPrefix(p, "/"))
	case s.routes.route(p) != "":
		allow := "POST"
		if p == "/health" {
			allow = "GET, HEAD"
		}
		w.Header().Set("Allow", allow)
		reply(w, http.StatusMethodNotAllowed, "method_not_allowed")
	default:
		reply(w, http.StatusNotFound, "not_found")
	}
}
