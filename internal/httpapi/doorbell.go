package httpapi

import (
	"context"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/doorbell"
	"github.com/spkey-dev/spkey/internal/domain/user"
)

// RingOutput is the answer of RingDoorbell: the command envelope of the new
// ring stream plus the ring id, the lock and how many residents it notifies.
type RingOutput struct {
	Replayed string `header:"Idempotent-Replayed"`
	Body     struct {
		Success     bool                          `json:"success"`
		AggregateID string                        `json:"aggregateId" doc:"The ring id (each ring is its own stream)"`
		Version     number                        `json:"version"`
		Event       *Event[doorbell.DoorbellRang] `json:"event"`
		RingID      string                        `json:"ringId"`
		LockID      number                        `json:"lockId"`
		Notified    int                           `json:"notified" doc:"How many residents the ring targets (0 for a lock without residents)"`
	}
}

type ringInput struct {
	LockPath
	IdemHeader
	Body *struct {
		_              struct{} `additionalProperties:"true"`
		ResidentUserID string   `json:"residentUserId,omitempty" doc:"Ring this resident only (default: every resident)"`
		VisitorName    string   `json:"visitorName,omitempty" maxLength:"80"`
		Message        string   `json:"message,omitempty" maxLength:"280"`
		Source         string   `json:"source,omitempty" maxLength:"32" doc:"Where the ring came from (api, panel, device, ...); default api"`
	} `required:"false"`
}

func (s *Server) ringDoorbell(ctx context.Context, in *ringInput) (*RingOutput, error) {
	var b app.RingInput
	if in.Body != nil {
		b = app.RingInput{ResidentUserID: in.Body.ResidentUserID, VisitorName: in.Body.VisitorName, Message: in.Body.Message, Source: in.Body.Source}
	}
	r, err := s.svc.RingDoorbell(ctx, s.lockCall(ctx, "RingDoorbell", in.ID, in.IdempotencyKey, b), in.ID, b)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &RingOutput{Replayed: replayed(r.Answer)}
	o := &out.Body
	o.Success, o.AggregateID, o.Version, o.Event = true, r.AggregateID, number(r.Version), (*Event[doorbell.DoorbellRang])(r.Event)
	o.RingID, o.LockID, o.Notified = r.RingID, number(r.LockID), r.Notified
	return out, nil
}

type ringPath struct {
	RingID string `path:"ringId" doc:"Ring id (from RingDoorbell, the live stream or the history)"`
	IdemHeader
}

func (s *Server) answerRing(ctx context.Context, in *ringPath) (*CommandOutput[doorbell.DoorbellAnswered], error) {
	r, err := s.svc.AnswerRing(ctx, s.call(ctx, "AnswerRing "+in.RingID, in.IdempotencyKey, nil), in.RingID)
	return command(ctx, s, r, err, false)
}

func (s *Server) declineRing(ctx context.Context, in *ringPath) (*CommandOutput[doorbell.DoorbellDeclined], error) {
	r, err := s.svc.DeclineRing(ctx, s.call(ctx, "DeclineRing "+in.RingID, in.IdempotencyKey, nil), in.RingID)
	return command(ctx, s, r, err, false)
}

// ChannelSwitches is the on/off state of each notification channel.
type ChannelSwitches struct {
	Live  *bool `json:"live,omitempty" doc:"In-app live stream (SSE) and feed"`
	Email *bool `json:"email,omitempty" doc:"E-mail through the operator's SMTP relay"`
	Hook  *bool `json:"hook,omitempty" doc:"The operator's outgoing HTTP hook (SMS, push)"`
}

type setPreferencesInputBody struct {
	_          struct{}         `additionalProperties:"false"`
	Channels   *ChannelSwitches `json:"channels,omitempty" doc:"Channels left out are on"`
	QuietHours *user.QuietHours `json:"quietHours,omitempty" doc:"Daily window in which e-mail and hook stay silent (the live stream still delivers); leave out for none"`
}

func (s *Server) setPreferences(ctx context.Context, in *userCommandInput[setPreferencesInputBody]) (*CommandOutput[user.NotificationPreferencesSet], error) {
	b := app.PreferencesInput{Channels: map[string]bool{}, QuietHours: in.Body.QuietHours}
	if c := in.Body.Channels; c != nil {
		for name, v := range map[string]*bool{user.ChannelLive: c.Live, user.ChannelEmail: c.Email, user.ChannelHook: c.Hook} {
			if v != nil {
				b.Channels[name] = *v
			}
		}
	}
	r, err := s.svc.SetNotificationPreferences(ctx, s.call(ctx, "SetNotificationPreferences "+in.ID, in.IdempotencyKey, b), in.ID, b)
	return command(ctx, s, r, err, false)
}

// PreferencesOutput is GET /users/{id}/notification-preferences.
type PreferencesOutput struct {
	Body struct {
		UserID     string           `json:"userId"`
		Channels   map[string]bool  `json:"channels" doc:"live, email, hook: on or off"`
		QuietHours *user.QuietHours `json:"quietHours" doc:"null when none"`
		Available  []string         `json:"availableChannels" nullable:"false" doc:"Channels this server can deliver (e-mail and hook need operator configuration)"`
	}
}

func (s *Server) getPreferences(ctx context.Context, in *UserPath) (*PreferencesOutput, error) {
	p, err := s.svc.NotificationPreferences(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &PreferencesOutput{}
	out.Body.UserID = in.ID
	out.Body.Channels = map[string]bool{user.ChannelLive: p.Live, user.ChannelEmail: p.Email, user.ChannelHook: p.Hook}
	out.Body.QuietHours = p.QuietHours
	out.Body.Available = []string{user.ChannelLive}
	c := s.svc.ConfiguredChannels()
	if c.Email {
		out.Body.Available = append(out.Body.Available, user.ChannelEmail)
	}
	if c.Hook {
		out.Body.Available = append(out.Body.Available, user.ChannelHook)
	}
	return out, nil
}

// PageQuery is the cursor paging of the history routes.
type PageQuery struct {
	Cursor string `query:"cursor" doc:"nextCursor of the previous page"`
	Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
}

// NotificationsOutput is GET /users/{id}/notifications.
type NotificationsOutput struct {
	Body struct {
		Notifications []app.RingView `json:"notifications" nullable:"false" doc:"Rings that targeted the user, newest first, with the user's own deliveries"`
		NextCursor    *string        `json:"nextCursor" doc:"null on the last page"`
	}
}

type notificationsInput struct {
	UserPath
	PageQuery
}

func (s *Server) notifications(ctx context.Context, in *notificationsInput) (*NotificationsOutput, error) {
	page, err := s.svc.Notifications(ctx, principal(ctx), in.ID, in.Cursor, in.Limit)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &NotificationsOutput{}
	out.Body.Notifications, out.Body.NextCursor = page.Rings, cursorOut(page.NextCursor)
	return out, nil
}

// RingsOutput is GET /locks/{id}/doorbell/rings.
type RingsOutput struct {
	Body struct {
		Rings      []app.RingView `json:"rings" nullable:"false" doc:"Newest first, each with every resident's delivery state per channel"`
		NextCursor *string        `json:"nextCursor" doc:"null on the last page"`
	}
}

type lockRingsInput struct {
	LockPath
	PageQuery
}

func (s *Server) lockRings(ctx context.Context, in *lockRingsInput) (*RingsOutput, error) {
	page, err := s.svc.LockRings(ctx, principal(ctx), in.ID, in.Cursor, in.Limit)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &RingsOutput{}
	out.Body.Rings, out.Body.NextCursor = page.Rings, cursorOut(page.NextCursor)
	return out, nil
}

func cursorOut(c string) *string {
	if c == "" {
		return nil
	}
	return &c
}
