package httpapi

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain"
)

// BulkAddKeys and the admin workflow routes.

type bulkKeyInput struct {
	_              struct{} `additionalProperties:"true"`
	KeyUUID        string   `json:"keyUuid" doc:"Key identifier"`
	KeyIndexNumber *int64   `json:"keyIndexNumber,omitempty" doc:"Key slot on the device"`
	UserID         string   `json:"userId,omitempty" doc:"User who may then manage the lock"`
}

type bulkAddKeysInputBody struct {
	_    struct{}       `additionalProperties:"true"`
	Keys []bulkKeyInput `json:"keys" minItems:"1" maxItems:"1000" doc:"The keys, added one by one in this order (at most 1000)"`
}

// BulkAddKeysOutput is the answer of BulkAddKeys.
type BulkAddKeysOutput struct {
	Replayed string `header:"Idempotent-Replayed"`
	Body     struct {
		Success    bool   `json:"success"`
		LockID     number `json:"lockId"`
		InstanceID string `json:"instanceId" doc:"The run: GET /admin/workflows/{instanceId}"`
	}
}

func (s *Server) bulkAddKeys(ctx context.Context, in *lockCommandInput[bulkAddKeysInputBody]) (*BulkAddKeysOutput, error) {
	keys := make([]app.AddKeyInput, len(in.Body.Keys))
	for i, k := range in.Body.Keys {
		keys[i] = app.AddKeyInput{KeyUUID: k.KeyUUID, KeyIndexNumber: k.KeyIndexNumber, UserID: k.UserID}
	}
	r, err := s.svc.BulkAddKeys(ctx, s.lockCall(ctx, "BulkAddKeys", in.ID, in.IdempotencyKey, keys), in.ID, keys)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &BulkAddKeysOutput{}
	if r.Replayed {
		out.Replayed = "true"
	}
	out.Body.Success, out.Body.LockID, out.Body.InstanceID = r.Success, number(r.LockID), r.InstanceID
	return out, nil
}

// workflowProgress is one entry of a run's progress log.
type workflowProgress struct {
	At      string `json:"at"`
	Message string `json:"message"`
}

// workflowRun is one run as the admin routes show it.
type workflowRun struct {
	InstanceID   string             `json:"instanceId"`
	WorkflowName string             `json:"workflowName"`
	Binding      string             `json:"binding"`
	Label        string             `json:"label"`
	Status       string             `json:"status" doc:"queued, running, complete, errored or terminated"`
	LiveStatus   *string            `json:"liveStatus" doc:"The status as the engine sees it now (the same as status: spkey's registry is its engine)"`
	Params       any                `json:"params,omitempty"`
	Progress     []workflowProgress `json:"progress" nullable:"false"`
	Result       any                `json:"result,omitempty"`
	Error        *string            `json:"error"`
	CreatedBy    *string            `json:"createdBy"`
	CreatedAt    string             `json:"createdAt"`
	UpdatedAt    string             `json:"updatedAt"`
	// spkey: how far the run is.
	Step  number `json:"step" doc:"spkey: steps done"`
	Steps number `json:"steps" doc:"spkey: steps in all"`
}

func runOf(w app.WorkflowRun) workflowRun {
	r := workflowRun{InstanceID: w.InstanceID, WorkflowName: w.WorkflowName, Binding: w.Binding, Label: w.Label, Status: w.Status,
		LiveStatus: optional(w.Status), Error: optional(w.Error), CreatedBy: optional(w.CreatedBy), CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt,
		Step: number(w.Step), Steps: number(w.Steps), Progress: make([]workflowProgress, 0, len(w.Progress))}
	for _, p := range w.Progress {
		r.Progress = append(r.Progress, workflowProgress{At: p.At, Message: p.Message})
	}
	if len(w.Params) > 0 {
		var params map[string]any
		if json.Unmarshal(w.Params, &params) == nil {
			delete(params, "caller") // who started it is createdBy
			r.Params = params
		}
	}
	if len(w.Result) > 0 {
		var result any
		if json.Unmarshal(w.Result, &result) == nil {
			r.Result = result
		}
	}
	return r
}

type listWorkflowsInput struct {
	Status string `query:"status" doc:"Filter to one recorded status (e.g. running). Omit for all."`
	Limit  string `query:"limit" doc:"Max runs to return (default 50, at most 200)"`
}

// WorkflowsOutput is GET /admin/workflows.
type WorkflowsOutput struct {
	Body struct {
		Runs  []workflowRun `json:"runs" nullable:"false"`
		Total number        `json:"total"`
	}
}

func (s *Server) listWorkflows(ctx context.Context, in *listWorkflowsInput) (*WorkflowsOutput, error) {
	limit := 50
	if in.Limit != "" {
		n, err := strconv.Atoi(in.Limit)
		if err != nil {
			return nil, toAPIError(ctx, s.log, domain.InvalidField("limit", "limit must be an integer from 1 to 200"))
		}
		limit = n
	}
	runs, total, err := s.svc.Workflows(ctx, principal(ctx), in.Status, limit)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &WorkflowsOutput{}
	out.Body.Runs, out.Body.Total = make([]workflowRun, 0, len(runs)), number(total)
	for _, w := range runs {
		out.Body.Runs = append(out.Body.Runs, runOf(w))
	}
	return out, nil
}

type workflowPath struct {
	InstanceID string `path:"instanceId" doc:"Workflow instance id"`
}

// WorkflowOutput is GET /admin/workflows/{instanceId}.
type WorkflowOutput struct {
	Body workflowRun
}

func (s *Server) getWorkflow(ctx context.Context, in *workflowPath) (*WorkflowOutput, error) {
	w, err := s.svc.Workflow(ctx, principal(ctx), in.InstanceID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	return &WorkflowOutput{Body: runOf(w)}, nil
}

// TerminateOutput is POST /admin/workflows/{instanceId}/terminate.
type TerminateOutput struct {
	Body struct {
		Success    bool   `json:"success"`
		InstanceID string `json:"instanceId"`
		Status     string `json:"status" doc:"Status after the terminate attempt"`
		Message    string `json:"message,omitempty"`
	}
}

func (s *Server) terminateWorkflow(ctx context.Context, in *workflowPath) (*TerminateOutput, error) {
	status, err := s.svc.TerminateWorkflow(ctx, principal(ctx), in.InstanceID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &TerminateOutput{}
	out.Body.Success, out.Body.InstanceID, out.Body.Status = true, in.InstanceID, status
	if status != app.WorkflowTerminated {
		out.Body.Message = "The run had already ended: nothing to stop"
	} else {
		out.Body.Message = "Stopped: no further step runs"
	}
	return out, nil
}

type canaryInput struct {
	Seconds string `query:"seconds" doc:"Total seconds the canary should run (default: 60)."`
	Steps   string `query:"steps" doc:"Number of sleep/progress steps (default: 6)."`
}

// CanaryOutput is POST /admin/workflows/canary.
type CanaryOutput struct {
	Body struct {
		Success    bool   `json:"success"`
		InstanceID string `json:"instanceId"`
		Seconds    number `json:"seconds"`
		Steps      number `json:"steps"`
	}
}

func (s *Server) startCanary(ctx context.Context, in *canaryInput) (*CanaryOutput, error) {
	seconds, steps := 60, 6
	for _, q := range []struct {
		name, v string
		to      *int
	}{{"seconds", in.Seconds, &seconds}, {"steps", in.Steps, &steps}} {
		if q.v == "" {
			continue
		}
		n, err := strconv.Atoi(q.v)
		if err != nil {
			return nil, toAPIError(ctx, s.log, domain.InvalidField(q.name, q.name+" must be an integer"))
		}
		*q.to = n
	}
	c, err := s.svc.StartCanary(ctx, principal(ctx), seconds, steps)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &CanaryOutput{}
	out.Body.Success, out.Body.InstanceID, out.Body.Seconds, out.Body.Steps = true, c.InstanceID, number(c.Seconds), number(c.Steps)
	return out, nil
}
