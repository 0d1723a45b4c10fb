package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// The device commands (AddKey, RemoveKey, WriteKey, OpenLock,
// ChangeLockUuid) and the action records of GET
// /locks/{id}/actions/{requestId}.

// DeviceOutput is the answer of a device command: upstream's envelope,
// plus spkey's requestId (the action to await) and offline (the device was
// not connected: the desired state waits for it in the shadow).
type DeviceOutput[P domain.Event] struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     struct {
		Envelope[P]
		RequestID string `json:"requestId,omitempty" doc:"spkey: the device action's id (GET /locks/{id}/actions/{requestId}); absent when nothing changed"`
		Offline   bool   `json:"offline" doc:"The device was offline: the desired state waits for it in the shadow (the action is queued)"`
	}
}

func deviceResult[P domain.Event](ctx context.Context, s *Server, r app.DeviceAnswer[P], err error) (*DeviceOutput[P], error) {
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &DeviceOutput[P]{Status: http.StatusOK, Replayed: replayed(r.Answer)}
	out.Body.Envelope = envelope(r.Answer)
	out.Body.RequestID, out.Body.Offline = r.RequestID, r.Offline
	return out, nil
}

type addKeyInputBody struct {
	_              struct{} `additionalProperties:"true"`
	KeyUUID        string   `json:"keyUuid" minLength:"1" doc:"Key identifier"`
	KeyIndexNumber *int64   `json:"keyIndexNumber,omitempty" doc:"Key slot on the device"`
	UserID         string   `json:"userId,omitempty" doc:"User who may then manage the lock"`
	RequestID      string   `json:"requestId,omitempty" doc:"spkey: the action's id (at most 128 characters); generated when absent"`
}

func (s *Server) addKey(ctx context.Context, in *lockCommandInput[addKeyInputBody]) (*DeviceOutput[lock.KeyAdded], error) {
	b := app.AddKeyInput{KeyUUID: in.Body.KeyUUID, KeyIndexNumber: in.Body.KeyIndexNumber, UserID: in.Body.UserID, RequestID: in.Body.RequestID}
	r, err := s.svc.AddKey(ctx, s.lockCall(ctx, "AddKey", in.ID, in.IdempotencyKey, b), in.ID, b)
	return deviceResult(ctx, s, r, err)
}

type removeKeyInputBody struct {
	_              struct{} `additionalProperties:"true"`
	KeyUUID        string   `json:"keyUuid,omitempty" minLength:"1" doc:"Key identifier"`
	KeyIndexNumber *int64   `json:"keyIndexNumber,omitempty" doc:"Key slot on the device"`
	RequestID      string   `json:"requestId,omitempty" doc:"spkey: the action's id (at most 128 characters); generated when absent"`
}

func (s *Server) removeKey(ctx context.Context, in *lockCommandInput[removeKeyInputBody]) (*DeviceOutput[lock.KeyRemoved], error) {
	b := app.RemoveKeyInput{KeyUUID: in.Body.KeyUUID, KeyIndexNumber: in.Body.KeyIndexNumber, RequestID: in.Body.RequestID}
	r, err := s.svc.RemoveKey(ctx, s.lockCall(ctx, "RemoveKey", in.ID, in.IdempotencyKey, b), in.ID, b)
	return deviceResult(ctx, s, r, err)
}

type writeKeyInputBody struct {
	_              struct{} `additionalProperties:"true"`
	KeyUUID        string   `json:"keyUuid" minLength:"1" doc:"Key identifier"`
	KeyIndexNumber *int64   `json:"keyIndexNumber,omitempty" doc:"Key slot on the device"`
	RequestID      string   `json:"requestId,omitempty" doc:"spkey: the action's id (at most 128 characters); generated when absent"`
}

func (s *Server) writeKey(ctx context.Context, in *lockCommandInput[writeKeyInputBody]) (*DeviceOutput[lock.KeyWriteRequested], error) {
	b := app.WriteKeyInput{KeyUUID: in.Body.KeyUUID, KeyIndexNumber: in.Body.KeyIndexNumber, RequestID: in.Body.RequestID}
	r, err := s.svc.WriteKey(ctx, s.lockCall(ctx, "WriteKey", in.ID, in.IdempotencyKey, b), in.ID, b)
	return deviceResult(ctx, s, r, err)
}

type openLockInputBody struct {
	_         struct{} `additionalProperties:"true"`
	RequestID string   `json:"requestId,omitempty" doc:"Request tracking ID, also the action's id (at most 128 characters); generated when absent"`
	Reason    string   `json:"reason,omitempty" doc:"Reason for opening"`
}

func (s *Server) openLock(ctx context.Context, in *lockCommandInput[openLockInputBody]) (*DeviceOutput[lock.LockOpenRequested], error) {
	b := app.OpenLockInput{RequestID: in.Body.RequestID, Reason: in.Body.Reason}
	r, err := s.svc.OpenLock(ctx, s.lockCall(ctx, "OpenLock", in.ID, in.IdempotencyKey, b), in.ID, b)
	return deviceResult(ctx, s, r, err)
}

type changeLockUUIDInputBody struct {
	_       struct{} `additionalProperties:"true"`
	NewUUID string   `json:"newUuid" doc:"New UUID for the lock"`
}

func (s *Server) changeLockUUID(ctx context.Context, in *lockCommandInput[changeLockUUIDInputBody]) (*CommandOutput[lock.LockUUIDChanged], error) {
	r, err := s.svc.ChangeLockUUID(ctx, s.lockCall(ctx, "ChangeLockUuid", in.ID, in.IdempotencyKey, in.Body), in.ID, in.Body.NewUUID)
	return command(ctx, s, r, err, false)
}

type lockActionInput struct {
	LockPath
	RequestID string `path:"requestId" doc:"The action's id (the device command's requestId)"`
	Wait      string `query:"wait" doc:"Hold the answer until the action leaves pending, queued and delivered, up to this long (a Go duration such as 10s; at most 30s)"`
}

// LockActionOutput is GET /locks/{id}/actions/{requestId}.
type LockActionOutput struct {
	Body struct {
		LockID         number `json:"lockId"`
		RequestID      string `json:"requestId"`
		Action         string `json:"action" enum:"OpenLock,AddKey,RemoveKey,WriteKey"`
		Status         string `json:"status" enum:"pending,queued,delivered,succeeded,failed,expired"`
		KeyUUID        string `json:"keyUuid,omitempty"`
		KeyIndexNumber *int64 `json:"keyIndexNumber,omitempty"`
		Error          string `json:"error,omitempty" doc:"The device's reason for a failure"`
		CreatedAt      string `json:"createdAt"`
		UpdatedAt      string `json:"updatedAt"`
		ExpiresAt      string `json:"expiresAt,omitempty" doc:"When an open action expires"`
	}
}

func (s *Server) lockAction(ctx context.Context, in *lockActionInput) (*LockActionOutput, error) {
	var wait time.Duration
	if in.Wait != "" {
		d, err := time.ParseDuration(in.Wait)
		if err != nil || d < 0 {
			if n, nerr := strconv.Atoi(in.Wait); nerr == nil && n >= 0 {
				d, err = time.Duration(n)*time.Second, nil
			}
		}
		if err != nil || d < 0 {
			return nil, toAPIError(ctx, s.log, domain.InvalidField("wait", "wait must be a duration such as 10s (at most 30s)"))
		}
		wait = d
	}
	v, err := s.svc.LockAction(ctx, principal(ctx), in.ID, in.RequestID, wait)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &LockActionOutput{}
	b := &out.Body
	b.LockID, b.RequestID, b.Action, b.Status, b.KeyUUID, b.KeyIndexNumber = number(in.ID), v.RequestID, v.Action, v.Status, v.KeyUUID, v.KeyIndex
	b.Error, b.CreatedAt, b.UpdatedAt, b.ExpiresAt = v.Error, v.CreatedAt, v.UpdatedAt, v.ExpiresAt
	return out, nil
}
