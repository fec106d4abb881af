// Command embed is a live chat (a danmaku room) whose WebSocket endpoint is
// wsloop mounted on the net/http server the rest of the application runs:
// one port for the page, a JSON API, pprof and the WebSockets, all behind
// the same middleware.
//
//	go run ./examples/embed                 # then open http://127.0.0.1:8095/
//	go run ./examples/embed -tls            # https:// and wss://, a self-signed certificate
//
// Routes, on one http.ServeMux:
//
//	GET  /             the page
//	GET  /ws?name=ann  the WebSocket (wsloop, behind the auth middleware)
//	POST /api/say      publish the request body to the room (name in ?name=)
//	GET  /api/stats    the engine's Stats, as JSON
//	GET  /debug/pprof/ net/http/pprof
//
// The auth middleware stands for a real one (a session cookie, a JWT): it
// puts the user's name in the request's context, where wsloop's upgrade
// hook reads it (Request.Context). Once upgraded, a connection lives on
// one of wsloop's event loops and holds no goroutine; net/http's goroutine
// for it has returned.
package main

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
)

//go:embed index.html
var page []byte

const room = "lobby"

// userKey is the context key of the authenticated user's name.
type userKey struct{}

// auth is the application's authentication middleware: here, a name in
// the query string, 1 to 32 characters.
func auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimSpace(r.URL.Query().Get("name"))
		if name == "" || utf8.RuneCountInString(name) > 32 || !utf8.ValidString(name) {
			http.Error(w, "name required (1-32 characters)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, name)))
	})
}

// chat relays every text message to the room, prefixed with its sender.
type chat struct{ engine.BaseHandler }

func (chat) OnOpen(c *engine.Conn) {
	_ = c.Join(room)
	_ = c.Server().Publish(room, ws.OpText, []byte("* "+c.Value().(string)+" joined"))
}

func (chat) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	if op != ws.OpText {
		_ = c.Close(ws.StatusUnsupportedData, "text only")
		return
	}
	_ = c.Server().Publish(room, ws.OpText, append([]byte(c.Value().(string)+": "), p...))
}

// newApp returns the WebSocket server and the application's mux with it
// mounted at /ws.
func newApp(opts ...engine.Option) (*engine.Server, *http.ServeMux, error) {
	srv, err := engine.New(chat{}, append([]engine.Option{
		engine.WithCheckOrigin(engine.SameOrigin),
		engine.WithMaxMessageSize(4 << 10),
		engine.WithUpgradeHook(func(r *engine.Request) (any, error) {
			name, _ := r.Context().Value(userKey{}).(string) // set by auth
			if name == "" {
				return nil, &engine.RejectError{Status: 401, Reason: "not authenticated"}
			}
			return name, nil
		}),
	}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	mux.Handle("GET /ws", auth(srv))
	mux.Handle("POST /api/say", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
		if err != nil || !utf8.Valid(body) {
			http.Error(w, "need at most 4 KiB of UTF-8 text", http.StatusBadRequest)
			return
		}
		name := r.Context().Value(userKey{}).(string)
		if err := srv.Publish(room, ws.OpText, append([]byte(name+" (http): "), body...)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(srv.Stats())
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return srv, mux, nil
}

// serve runs the app on ln until ctx ends: wsloop's loops with Run, the
// http.Server with the mux; on the way out both shut down, WebSocket
// clients get 1001.
func serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config, log *slog.Logger, opts ...engine.Option) error {
	srv, mux, err := newApp(append([]engine.Option{engine.WithLogger(log)}, opts...)...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	select { // until the loops run, ServeHTTP answers 503
	case <-srv.Ready():
	case err := <-ran:
		return err
	}
	hs := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	// http.Server.Shutdown leaves hijacked connections alone: stop wsloop too.
	hs.RegisterOnShutdown(cancel)
	served := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			served <- hs.ServeTLS(ln, "", "")
		} else {
			served <- hs.Serve(ln)
		}
	}()
	select {
	case <-ctx.Done():
	case err = <-served:
	case err = <-ran:
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	_ = srv.Shutdown(sctx)
	if rerr := <-ran; err == nil && !errors.Is(rerr, engine.ErrServerClosed) {
		err = rerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8095", "listen address")
	useTLS := flag.Bool("tls", false, "serve https:// and wss:// (TLS on the http.Server); implied by -tls-cert")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); without it, -tls makes a self-signed one")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var tlsCfg *tls.Config
	if *useTLS || *certFile != "" {
		var err error
		if tlsCfg, err = devcert.Config(*certFile, *keyFile); err != nil {
			log.Error("tls", "err", err)
			os.Exit(1)
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	log.Info("serving", "url", scheme+"://"+ln.Addr().String()+"/")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, ln, tlsCfg, log); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
