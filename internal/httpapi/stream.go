package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/store"
)

// FeedReader reads users' live feeds (the store).
type FeedReader interface {
	FeedFor(ctx context.Context, userID, org string, after int64, limit int) ([]store.FeedEntry, error)
	FeedHead(ctx context.Context, userID string) (int64, error)
}

// Waker wakes a user's streams on this node (notify.Hub).
type Waker interface {
	Subscribe(userID string) (*notify.Sub, func())
}

// handedOver returns the entries of pushed (handed over with a wake-up)
// that follow last, for tenant org ("" = all), and the highest number they
// cover. readDB is true when they cannot be trusted to be complete (none
// came, or they do not follow last without a gap): then the stream reads
// the feed instead.
func handedOver(pushed []store.FeedEntry, last int64, org string) (entries []store.FeedEntry, upTo int64, readDB bool) {
	if len(pushed) == 0 {
		return nil, 0, true
	}
	next := last + 1
	for _, e := range pushed {
		switch {
		case e.N < next:
			continue // already sent
		case e.N > next:
			return nil, 0, true // a gap: another node's entry, or one dropped
		}
		next++
		if org == "" || e.OrgID == org {
			entries = append(entries, e)
		}
	}
	return entries, next - 1, false
}

// How the stream keeps itself alive: a comment line every heartbeat so
// proxies and clients see a live connection, and a re-read of the feed
// every poll in case a wake-up was lost (it never carries data).
const (
	streamHeartbeat = 15 * time.Second
	streamPoll      = 5 * time.Second
	streamPage      = 100
)

type streamInput struct {
	UserPath
	LastEventID string `header:"Last-Event-ID" doc:"Resume after this event id (EventSource sends it on reconnect)"`
	After       string `query:"after" doc:"Resume after this event id when the header cannot be set; 0 replays the whole feed. Default: only new events"`
	AccessToken string `query:"access_token" doc:"The user's JWT, for clients that cannot send headers (browsers' EventSource); API keys are not taken here"`
}

func (s *Server) notificationStream(ctx context.Context, in *streamInput) (*huma.StreamResponse, error) {
	if s.cfg.Feed == nil || s.cfg.Waker == nil {
		return nil, toAPIError(ctx, s.log, fmt.Errorf("live stream not configured"))
	}
	if err := s.svc.AuthorizeUserStream(ctx, principal(ctx), in.ID); err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	release, err := s.streams.acquire(principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	resume := in.LastEventID
	if resume == "" {
		resume = in.After
	}
	// Subscribe before reading the head: an entry added in between wakes
	// us instead of being skipped.
	sub, unsubscribe := s.cfg.Waker.Subscribe(in.ID)
	cancel := func() { unsubscribe(); release() }
	var last int64
	if resume != "" {
		n, err := strconv.ParseInt(resume, 10, 64)
		if err != nil || n < 0 {
			cancel()
			return nil, toAPIError(ctx, s.log, domain.InvalidField("Last-Event-ID", "Last-Event-ID (or after) must be an event id from this stream"))
		}
		last = n
	} else {
		var n int64
		err := s.streams.read(ctx, func(ctx context.Context) (err error) {
			n, err = s.cfg.Feed.FeedHead(ctx, in.ID)
			return err
		})
		if err != nil {
			cancel()
			return nil, toAPIError(ctx, s.log, err)
		}
		last = n
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer cancel()
		r, w := humago.Unwrap(hctx)
		recheck := func(ctx context.Context) error {
			return s.streams.read(ctx, func(ctx context.Context) error { return s.reauthorize(ctx, r, in.ID) })
		}
		s.stream(r.Context(), w, in.ID, app.FeedScope(principal(ctx)), last, sub, recheck)
	}}, nil
}

// stream writes the user's feed after `last` as Server-Sent Events until the
// client leaves: id is the per-user entry number, event the event type,
// data the entry's JSON.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, userID, org string, last int64, sub *notify.Sub, recheck func(context.Context) error) {
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
	readDB := true // the first pass replays from the database
	for {
		var entries []store.FeedEntry
		var upTo int64
		if !readDB {
			entries, upTo, readDB = handedOver(sub.Take(), last, org)
		}
		if readDB {
			err := s.streams.read(ctx, func(ctx context.Context) (err error) {
				entries, err = s.cfg.Feed.FeedFor(ctx, userID, org, last, streamPage)
				return err
			})
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("read live feed", "user_id", userID, "err", err)
				}
				return
			}
			if len(entries) > 0 {
				upTo = entries[len(entries)-1].N
			}
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
		last = max(last, upTo)
		if readDB && len(entries) == streamPage {
			continue
		}
		readDB = true
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.StreamStop:
			return
		case <-sub.Wake():
			readDB = false // entries written on this node come with the wake-up
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
