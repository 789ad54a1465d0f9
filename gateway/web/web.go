// Package web is the operator console: server-rendered pages
// (html/template, auto-escaped: EDI content is untrusted input) with htmx
// for in-place updates, all assets embedded in the binary, over the same
// gateway/ops service as the HTTP API.
//
// Authentication: a login form takes an API token's name and secret and
// starts a server-side session (random id in an HttpOnly, SameSite=Strict
// cookie, 12 h, rotated on every login) that holds the actor and a CSRF
// token; scripts may instead send basic auth (token name and secret) on
// every request. Every POST passes net/http's cross-origin check
// (Sec-Fetch-Site / Origin), and a session's POSTs must also carry its CSRF
// token (form field "csrf" or header X-CSRF-Token, which htmx sends from
// hx-headers on <body>).
package web

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/edigw/edigw/gateway/api"
	"github.com/edigw/edigw/gateway/ops"
)

//go:embed static templates
var assets embed.FS

const (
	cookieName = "edigw_console"
	sessionTTL = 12 * time.Hour
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// Console serves the operator console.
type Console struct {
	svc    *ops.Service
	tokens *api.Tokens
	log    *slog.Logger
	pages  map[string]*template.Template
	cop    *http.CrossOriginProtection

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	actor   ops.Actor
	csrf    string
	expires time.Time
	flash   string // shown once on the next page
}

// New returns the console over svc, authenticating with tokens.
func New(svc *ops.Service, tokens *api.Tokens, log *slog.Logger) *Console {
	c := &Console{svc: svc, tokens: tokens, log: log, cop: http.NewCrossOriginProtection(), sessions: map[string]*session{}, pages: map[string]*template.Template{}}
	for _, name := range []string{"login", "error", "dashboard", "messages", "detail", "partners", "schedules", "dead", "cluster"} {
		c.pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html"))
	}
	return c
}

// Register adds the console's routes to mux (beside /api/v1/, /healthz and
// /readyz).
func (c *Console) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(assets, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.action(c.logout))
	mux.HandleFunc("GET /{$}", c.page(c.dashboard))
	mux.HandleFunc("GET /messages", c.page(c.messages))
	mux.HandleFunc("GET /messages/{id}", c.page(c.detail))
	for _, a := range []string{"replay", "retry", "resolve"} {
		mux.HandleFunc("POST /messages/{id}/"+a, c.action(c.messageAction(a)))
	}
	mux.HandleFunc("GET /partners", c.page(c.partners))
	mux.HandleFunc("GET /schedules", c.page(c.schedules))
	mux.HandleFunc("POST /schedules/{partner}/{poll}/run", c.action(c.runPoll))
	mux.HandleFunc("GET /dead", c.page(c.dead))
	mux.HandleFunc("GET /cluster", c.page(c.cluster))
}

// view is what every page template gets.
type view struct {
	Title, Nav string
	Actor      ops.Actor
	CSRF       string
	Flash      string
	Error      string
	Data       any
}

// req is an authenticated request.
type req struct {
	actor ops.Actor
	sid   string   // "" with basic auth
	sess  *session // nil with basic auth
}

func (q *req) view(title, nav string, data any) *view {
	v := &view{Title: title, Nav: nav, Actor: q.actor, Data: data}
	if q.sess != nil {
		v.CSRF = q.sess.csrf
	}
	return v
}

type handler func(w http.ResponseWriter, r *http.Request, q *req) error

// authenticate reads basic auth (or a bearer token) if sent, else the
// session cookie. bad is true when credentials were sent and are wrong.
func (c *Console) authenticate(r *http.Request) (q *req, bad bool) {
	if r.Header.Get("Authorization") != "" {
		a, ok := c.tokens.Authenticate(r)
		if !ok {
			return nil, true
		}
		return &req{actor: a}, false
	}
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil, false
	}
	if time.Now().After(s.expires) {
		delete(c.sessions, ck.Value)
		return nil, false
	}
	return &req{actor: s.actor, sid: ck.Value, sess: s}, false
}

func (c *Console) guard(fn handler, post bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		q, bad := c.authenticate(r)
		switch {
		case bad:
			http.Error(w, "unknown token name or secret", http.StatusUnauthorized)
			return
		case q == nil && r.Header.Get("HX-Request") == "true":
			w.Header().Set("HX-Redirect", "/login")
			w.WriteHeader(http.StatusUnauthorized)
			return
		case q == nil:
			next := r.URL.RequestURI()
			if post {
				next = "/"
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		if post {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := c.cop.Check(r); err != nil {
				c.fail(w, r, q, http.StatusForbidden, err)
				return
			}
			if q.sess != nil {
				tok := r.Header.Get(csrfHeader)
				if tok == "" {
					tok = r.PostFormValue(csrfField)
				}
				if subtle.ConstantTimeCompare([]byte(tok), []byte(q.sess.csrf)) != 1 {
					c.fail(w, r, q, http.StatusForbidden, errors.New("missing or wrong CSRF token: reload the page and try again"))
					return
				}
			}
		}
		if err := fn(w, r, q); err != nil {
			c.fail(w, r, q, c.logged(r, q, err), err)
		}
	}
}

// logged returns err's HTTP status, logging server errors.
func (c *Console) logged(r *http.Request, q *req, err error) int {
	status := api.StatusOf(err)
	if status >= 500 {
		c.log.Error("console", "path", r.URL.Path, "actor", q.actor.Name, "err", err)
	}
	return status
}

// page wraps a GET handler; action a POST handler (CSRF checked).
func (c *Console) page(fn handler) http.HandlerFunc   { return c.guard(fn, false) }
func (c *Console) action(fn handler) http.HandlerFunc { return c.guard(fn, true) }

func (c *Console) fail(w http.ResponseWriter, r *http.Request, q *req, status int, err error) {
	v := q.view(http.StatusText(status), "", nil)
	v.Error = err.Error()
	c.render(w, status, "error", "layout", v)
}

func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func (c *Console) render(w http.ResponseWriter, status int, page, tmpl string, v *view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Add("Vary", "HX-Request")
	w.WriteHeader(status)
	if err := c.pages[page].ExecuteTemplate(w, tmpl, v); err != nil {
		c.log.Error("console: render", "page", page, "err", err)
	}
}

// setFlash keeps a message for the session's next page.
func (c *Console) setFlash(q *req, msg string) {
	if q.sess == nil {
		return
	}
	c.mu.Lock()
	q.sess.flash = msg
	c.mu.Unlock()
}

// takeFlash returns and clears the session's message.
func (c *Console) takeFlash(q *req) string {
	if q.sess == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := q.sess.flash
	q.sess.flash = ""
	return f
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// localPath returns next if it is a path on this site, else "/".
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	secure(w)
	c.render(w, http.StatusOK, "login", "layout", &view{Title: "Log in", Data: map[string]string{"Next": localPath(r.URL.Query().Get("next"))}})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	secure(w)
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := localPath(r.PostFormValue("next"))
	if err := c.cop.Check(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	a, ok := c.tokens.Check(name, r.PostFormValue("secret"))
	if name == "" || !ok {
		c.log.Warn("console: failed login", "name", name, "remote", r.RemoteAddr)
		c.render(w, http.StatusUnauthorized, "login", "layout", &view{Title: "Log in", Error: "unknown token name or secret",
			Data: map[string]string{"Next": next, "Name": name}})
		return
	}
	sid, now := randomToken(), time.Now()
	c.mu.Lock()
	if old, err := r.Cookie(cookieName); err == nil { // a new id on every login
		delete(c.sessions, old.Value)
	}
	for id, s := range c.sessions {
		if now.After(s.expires) {
			delete(c.sessions, id)
		}
	}
	c.sessions[sid] = &session{actor: a, csrf: randomToken(), expires: now.Add(sessionTTL)}
	c.mu.Unlock()
	c.log.Info("console: login", "actor", a.Name, "role", a.Role.String(), "remote", r.RemoteAddr)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: sid, Path: "/", MaxAge: int(sessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, q *req) error {
	if q.sid != "" {
		c.mu.Lock()
		delete(c.sessions, q.sid)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}
