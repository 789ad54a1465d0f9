package erp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Auth kinds.
const (
	AuthNone   = "none"
	AuthBearer = "bearer"
	AuthBasic  = "basic"
	AuthOAuth2 = "oauth2"
)

// authorizer adds credentials to a request.
type authorizer interface {
	authorize(ctx context.Context, req *http.Request) error
	// invalidate drops cached credentials after a 401; it reports whether
	// there was anything to drop (so that a retry may succeed).
	invalidate() bool
}

type noAuth struct{}

func (noAuth) authorize(context.Context, *http.Request) error { return nil }
func (noAuth) invalidate() bool                               { return false }

type bearerAuth struct{ token string }

func (b bearerAuth) authorize(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+b.token)
	return nil
}
func (bearerAuth) invalidate() bool { return false }

type basicAuth struct{ user, pass string }

func (b basicAuth) authorize(_ context.Context, req *http.Request) error {
	req.SetBasicAuth(b.user, b.pass)
	return nil
}
func (basicAuth) invalidate() bool { return false }

// oauth2Auth fetches tokens with the client-credentials grant and caches
// them (oauth2.ReuseTokenSource refreshes shortly before expiry).
type oauth2Auth struct {
	cfg *clientcredentials.Config
	ctx context.Context // carries the HTTP client for the token endpoint
	mu  sync.Mutex
	ts  oauth2.TokenSource
}

func (a *oauth2Auth) source() oauth2.TokenSource {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ts
}

func (a *oauth2Auth) authorize(ctx context.Context, req *http.Request) error {
	type result struct {
		tok *oauth2.Token
		err error
	}
	// TokenSource.Token takes no context; the token HTTP client has a
	// timeout, and the caller's ctx is honoured here.
	ch := make(chan result, 1)
	ts := a.source()
	go func() {
		t, err := ts.Token()
		ch <- result{t, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("oauth2 token: %w", r.err)
		}
		r.tok.SetAuthHeader(req)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("oauth2 token: %w", ctx.Err())
	}
}

func (a *oauth2Auth) invalidate() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ts = a.cfg.TokenSource(a.ctx)
	return true
}

func (c *Client) newAuthorizer(a Auth, timeout time.Duration) (authorizer, error) {
	kind := strings.ToLower(strings.TrimSpace(a.Kind))
	switch kind {
	case "", AuthNone:
		return noAuth{}, nil
	case AuthBearer:
		tok, err := c.secret("token", a.TokenEnv, a.TokenFile)
		if err != nil {
			return nil, err
		}
		return bearerAuth{token: tok}, nil
	case AuthBasic:
		if a.Username == "" {
			return nil, errors.New("basic: username is required")
		}
		pass, err := c.secret("password", a.PasswordEnv, a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("basic: %w", err)
		}
		return basicAuth{user: a.Username, pass: pass}, nil
	case AuthOAuth2:
		if a.TokenURL == "" || a.ClientID == "" {
			return nil, errors.New("oauth2: token URL and client ID are required")
		}
		secret, err := c.secret("client secret", a.ClientSecretEnv, a.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("oauth2: %w", err)
		}
		cfg := &clientcredentials.Config{
			ClientID:     a.ClientID,
			ClientSecret: secret,
			TokenURL:     a.TokenURL,
			Scopes:       a.Scopes,
		}
		thc := *c.base
		thc.Timeout = timeout
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &thc)
		return &oauth2Auth{cfg: cfg, ctx: ctx, ts: cfg.TokenSource(ctx)}, nil
	}
	return nil, fmt.Errorf("unknown kind %q (want none, bearer, basic or oauth2)", a.Kind)
}

// secret resolves a secret given by reference: exactly one of an environment
// variable name or a file path. Surrounding whitespace is trimmed. The error
// names the reference, never the value.
func (c *Client) secret(what, env, file string) (string, error) {
	switch {
	case env != "" && file != "":
		return "", fmt.Errorf("%s: give either an environment variable or a file, not both", what)
	case env != "":
		v, ok := c.lookupEnv(env)
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set or empty", what, env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s: file %s is empty", what, file)
		}
		return v, nil
	}
	return "", fmt.Errorf("%s: an environment variable or a file is required", what)
}

func lookupEnv(k string) (string, bool) { return os.LookupEnv(k) }
