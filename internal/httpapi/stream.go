package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/spkey-dev/spkey/internal/app"
)

// How the stream keeps itself alive: a comment line every heartbeat so
// proxies and clients see a live connection, and a re-read of the feed
// every poll in case a wake-up was lost (it never carries data).
const (
	streamHeartbeat = 15 * time.Second
	streamPoll      = 5 * time.Second
)

type streamInput struct {
	UserPath
	LastEventID string `header:"Last-Event-ID" doc:"Resume after this event id (EventSource sends it on reconnect)"`
	After       string `query:"after" doc:"Resume after this event id when the header cannot be set; 0 replays the whole feed. Default: only new events"`
	AccessToken string `query:"access_token" doc:"The user's JWT, for clients that cannot send headers (browsers' EventSource); API keys are not taken here"`
}

func (s *Server) notificationStream(ctx context.Context, in *streamInput) (*huma.StreamResponse, error) {
	p := principal(ctx)
	resume := in.LastEventID
	if resume == "" {
		resume = in.After
	}
	feed, err := s.svc.OpenFeed(ctx, p, in.ID, app.FeedOptions{Resume: resume,
		Admit: func() (func(), error) { return s.streams.acquire(p, in.ID) }, Read: s.streams.read})
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer feed.Close()
		r, w := humago.Unwrap(hctx)
		recheck := func(ctx context.Context) error {
			// Each check is a read of its own: it fences again.
			ctx = app.FreshReads(ctx)
			return s.streams.read(ctx, func(ctx context.Context) error { return s.reauthorize(ctx, r, in.ID) })
		}
		s.stream(r.Context(), w, in.ID, feed, recheck)
	}}, nil
}

// stream writes the user's feed as Server-Sent Events until the client
// leaves: id is the per-user entry number, event the event type, data the
// entry's JSON.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, userID string, feed *app.LiveFeed, recheck func(context.Context) error) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		// The server's write timeout is for ordinary answers; a stream
		// extends its deadline at every write.
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n: connected\n\n")) {
		return
	}
	heartbeat := time.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(streamPoll)
	defer poll.Stop()
	every := s.cfg.StreamRecheck
	if every <= 0 {
		every = 30 * time.Second
	}
	auth := time.NewTicker(every)
	defer auth.Stop()
	handed := false // the first pass replays from the database
	for {
		entries, more, err := feed.Next(ctx, handed)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("read live feed", "user_id", userID, "err", err)
			}
			return
		}
		if len(entries) > 0 {
			var buf []byte
			for _, e := range entries {
				buf = fmt.Appendf(buf, "id: %d\nevent: %s\ndata: %s\n\n", e.N, e.Kind, e.Data)
			}
			if !write(buf) {
				return
			}
		}
		handed = false
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.StreamStop:
			return
		case <-feed.Wake():
			handed = true // entries written on this node come with the wake-up
		case <-poll.C:
		case <-heartbeat.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		case <-auth.C:
			// A revoked key, an expired token or a broken tenant link ends
			// the stream; the client's reconnect then gets the refusal.
			if err := recheck(ctx); err != nil {
				_ = write([]byte(": access revoked\n\n"))
				return
			}
		}
	}
}

// streamPattern is the live stream's route.
const streamPattern = "GET /users/{id}/notifications/stream"

func streamOp() huma.Operation {
	o := op(http.MethodGet, "/users/{id}/notifications/stream", "get_GetUserNotificationStreamRoute",
		"Live notifications as Server-Sent Events (id: per-user event number; event: DoorbellRang, DoorbellAnswered or DoorbellDeclined; data: the event's JSON with its type)",
		200, secUser, "User", "Doorbell")
	o.Responses = map[string]*huma.Response{"200": {Description: "An endless text/event-stream", Content: map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: "string"}}}},
		"429": {Description: "Too many live streams open for this user with this credential, or on this server (Retry-After says when to try again)"}}
	return o
}

// reauthorize checks again, for a stream in progress, the credentials r
// came with and the caller's right to userID's notifications.
func (s *Server) reauthorize(ctx context.Context, r *http.Request, userID string) error {
	var p app.Principal
	if b := r.Header.Get("Authorization"); b != "" {
		c, err := s.jwt.Verify(ctx, strings.TrimSpace(strings.TrimPrefix(b, "Bearer ")))
		if err != nil {
			return err
		}
		p = userPrincipal(c)
	} else if k := r.Header.Get("X-API-Key"); k != "" {
		kp, err := s.svc.AuthenticateKey(ctx, k)
		if err != nil {
			return err
		}
		p = kp
	}
	return s.svc.AuthorizeUserStream(ctx, p, userID)
}
