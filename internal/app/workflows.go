package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/store"
)

// Workflows: BulkAddKeys and the canary run as durable runs of the
// workflow registry (store.Workflow). A node's runner (RunWorkflows)
// claims a due run under a lease and works it step by step; each step's
// result is recorded with the step counter, so a run whose node died is
// taken over (once its lease ends) from the first step not recorded. A
// BulkAddKeys step is an AddKey: a key already on the lock with the same
// slot and user records nothing, so a step done twice adds its key once.

// Workflow names, bindings and labels, as upstream's registry shows them.
const (
	BulkAddKeysWorkflow = "bulk-add-keys-workflow"
	bulkAddKeysBinding  = "BULK_ADD_KEYS_WORKFLOW"
	CanaryWorkflow      = "canary-workflow"
	canaryBinding       = "CANARY_WORKFLOW"
)

// Bounds of the workflows.
const (
	// MaxBulkKeys bounds the keys of one BulkAddKeys.
	MaxBulkKeys = 1000
	// MaxWorkflowsListed bounds GET /admin/workflows?limit=.
	MaxWorkflowsListed = 200
	// DefaultWorkflowLease is how long a node holds a run between two
	// steps before another node may take it over.
	DefaultWorkflowLease = 15 * time.Second
	// maxCanarySeconds and maxCanarySteps bound the canary.
	maxCanarySeconds = 3600
	maxCanarySteps   = 100
	// maxResultErrors bounds the failed keys a BulkAddKeys result lists.
	maxResultErrors = 100
)

// workflowPoll is how often an idle runner looks for due runs (a run
// started on this node wakes it at once).
const workflowPoll = 500 * time.Millisecond

// BulkAnswer is the answer of BulkAddKeys.
type BulkAnswer struct {
	Success    bool   `json:"success"`
	LockID     int64  `json:"lockId"`
	InstanceID string `json:"instanceId"`
	Replayed   bool   `json:"-"`
}

func (a *BulkAnswer) forget()       {}
func (a *BulkAnswer) markReplayed() { a.Replayed = true }

// caller is the principal a run acts as, kept in its params.
type caller struct {
	Kind   Kind   `json:"kind"`
	UserID string `json:"userId,omitempty"`
	OrgID  string `json:"orgId,omitempty"`
	Super  bool   `json:"super,omitempty"`
	Admin  bool   `json:"admin,omitempty"`
	Email  string `json:"email,omitempty"`
}

func callerOf(p Principal) caller {
	return caller{Kind: p.Kind, UserID: p.UserID, OrgID: p.OrgID, Super: p.Super, Admin: p.Admin, Email: p.Email}
}

func (c caller) principal() Principal {
	return Principal{Kind: c.Kind, UserID: c.UserID, OrgID: c.OrgID, Super: c.Super, Admin: c.Admin, Email: c.Email}
}

func (c caller) createdBy() string {
	switch {
	case c.Admin:
		return "admin:" + c.Email
	case c.Kind == TenantCaller:
		return "org:" + c.OrgID
	case c.Kind == UserCaller:
		return "user:" + c.UserID
	}
	return ""
}

// bulkParams are a BulkAddKeys run's params.
type bulkParams struct {
	LockID int64         `json:"lockId"`
	Keys   []AddKeyInput `json:"keys"`
	Caller caller        `json:"caller"`
}

// bulkResult is a BulkAddKeys run's result, kept up to date at each step.
type bulkResult struct {
	Added     int          `json:"added"`
	Unchanged int          `json:"unchanged"`
	Failed    int          `json:"failed"`
	Errors    []bulkFailed `json:"errors,omitempty"`
}

type bulkFailed struct {
	KeyUUID string `json:"keyUuid"`
	Error   string `json:"error"`
}

// canaryParams are a canary run's params.
type canaryParams struct {
	Seconds int    `json:"seconds"`
	Steps   int    `json:"steps"`
	Caller  caller `json:"caller"`
}

// BulkAddKeys starts a run that adds keys to lock id one by one and
// answers its instanceId at once. Every key is checked first: one bad key
// refuses the whole request (400) and starts nothing.
func (s *Service) BulkAddKeys(ctx context.Context, c Call, id int64, keys []AddKeyInput) (BulkAnswer, error) {
	if err := requireAuth(c.P); err != nil {
		return BulkAnswer{}, err
	}
	if len(keys) == 0 || len(keys) > MaxBulkKeys {
		return BulkAnswer{}, domain.InvalidField("keys", fmt.Sprintf("keys must hold 1 to %d keys", MaxBulkKeys))
	}
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		f := "keys[" + strconv.Itoa(i) + "]"
		if err := lock.CheckKeyUUID(f+".keyUuid", k.KeyUUID); err != nil {
			return BulkAnswer{}, err
		}
		if seen[k.KeyUUID] {
			return BulkAnswer{}, domain.InvalidField(f+".keyUuid", "keyUuid "+k.KeyUUID+" is listed twice")
		}
		seen[k.KeyUUID] = true
		if n := k.KeyIndexNumber; n != nil && (*n > domain.MaxID || *n < -domain.MaxID) {
			return BulkAnswer{}, domain.InvalidField(f+".keyIndexNumber", f+".keyIndexNumber must be an integer between -9007199254740991 and 9007199254740991")
		}
		if k.UserID != "" {
			if _, err := domain.CanonicalUUID(f+".userId", k.UserID); err != nil {
				return BulkAnswer{}, err
			}
		}
		if k.RequestID != "" {
			return BulkAnswer{}, domain.InvalidField(f+".requestId", "BulkAddKeys records no action per key: follow the run (instanceId) instead")
		}
	}
	if _, err := s.Lock(ctx, c.P, id); err != nil {
		return BulkAnswer{}, err
	}
	params, err := json.Marshal(bulkParams{LockID: id, Keys: keys, Caller: callerOf(c.P)})
	if err != nil {
		return BulkAnswer{}, fmt.Errorf("encode BulkAddKeys params: %w", err)
	}
	c.Aggregate = ""
	res, err := run[BulkAnswer](ctx, s, c, func(ctx context.Context, tx *store.Tx) (BulkAnswer, error) {
		w := store.Workflow{InstanceID: s.newUUID(), WorkflowName: BulkAddKeysWorkflow, Binding: bulkAddKeysBinding,
			Label: fmt.Sprintf("Add %d keys to lock %d", len(keys), id), Params: params, CreatedBy: callerOf(c.P).createdBy(), Steps: int64(len(keys)),
			Progress: []store.Progress{{At: s.stamp(), Message: fmt.Sprintf("started: %d keys for lock %d", len(keys), id)}}}
		if err := tx.CreateWorkflow(ctx, w, s.now()); err != nil {
			return BulkAnswer{}, err
		}
		return BulkAnswer{Success: true, LockID: id, InstanceID: w.InstanceID}, nil
	})
	if err == nil {
		s.wakeWorkflows()
	}
	return res, err
}

// CanaryAnswer is the answer of StartCanary.
type CanaryAnswer struct {
	InstanceID string
	Seconds    int
	Steps      int
}

// StartCanary starts a harmless run of steps steps spread over seconds
// (defaults 60 and 6), for the admin to check that runs are worked.
func (s *Service) StartCanary(ctx context.Context, p Principal, seconds, steps int) (CanaryAnswer, error) {
	if !p.Admin {
		return CanaryAnswer{}, domain.Errorf(domain.Forbidden, "Admin credentials required")
	}
	if seconds < 0 || seconds > maxCanarySeconds {
		return CanaryAnswer{}, domain.InvalidField("seconds", fmt.Sprintf("seconds must be 0 to %d", maxCanarySeconds))
	}
	if steps < 1 || steps > maxCanarySteps {
		return CanaryAnswer{}, domain.InvalidField("steps", fmt.Sprintf("steps must be 1 to %d", maxCanarySteps))
	}
	params, err := json.Marshal(canaryParams{Seconds: seconds, Steps: steps, Caller: callerOf(p)})
	if err != nil {
		return CanaryAnswer{}, err
	}
	w := store.Workflow{InstanceID: s.newUUID(), WorkflowName: CanaryWorkflow, Binding: canaryBinding,
		Label: fmt.Sprintf("Canary: %d steps over %d s", steps, seconds), Params: params, CreatedBy: callerOf(p).createdBy(), Steps: int64(steps),
		Progress: []store.Progress{{At: s.stamp(), Message: "started"}}}
	if err := s.st.Write(ctx, func(ctx context.Context, tx *store.Tx) error { return tx.CreateWorkflow(ctx, w, s.now()) }); err != nil {
		return CanaryAnswer{}, err
	}
	s.wakeWorkflows()
	return CanaryAnswer{InstanceID: w.InstanceID, Seconds: seconds, Steps: steps}, nil
}

// WorkflowRun is one run of the registry as the admin routes show it.
type WorkflowRun struct {
	InstanceID, WorkflowName, Binding, Label, Status string
	Params, Result                                   json.RawMessage // Result nil until known
	Progress                                         []WorkflowProgress
	Error, CreatedBy                                 string // "" when none
	Step, Steps                                      int64
	CreatedAt, UpdatedAt                             string
}

// WorkflowProgress is one entry of a run's progress log.
type WorkflowProgress struct{ At, Message string }

// WorkflowTerminated is the status of a terminated run.
const WorkflowTerminated = store.WorkflowTerminated

func runOf(w store.Workflow) WorkflowRun {
	r := WorkflowRun{InstanceID: w.InstanceID, WorkflowName: w.WorkflowName, Binding: w.Binding, Label: w.Label, Status: w.Status,
		Params: w.Params, Result: w.Result, Error: w.Error, CreatedBy: w.CreatedBy, Step: w.Step, Steps: w.Steps, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
	for _, p := range w.Progress {
		r.Progress = append(r.Progress, WorkflowProgress{At: p.At, Message: p.Message})
	}
	return r
}

// Workflows lists the registry's runs, newest first: up to limit (1 to
// MaxWorkflowsListed) of status ("" for all).
func (s *Service) Workflows(ctx context.Context, p Principal, status string, limit int) ([]WorkflowRun, int, error) {
	if !p.Admin {
		return nil, 0, domain.Errorf(domain.Forbidden, "Admin credentials required")
	}
	if limit < 1 || limit > MaxWorkflowsListed {
		return nil, 0, domain.InvalidField("limit", fmt.Sprintf("limit must be 1 to %d", MaxWorkflowsListed))
	}
	if len(status) > 32 {
		return nil, 0, domain.InvalidField("status", "status is at most 32 characters")
	}
	ws, total, err := s.st.Workflows(ctx, status, limit)
	runs := make([]WorkflowRun, 0, len(ws))
	for _, w := range ws {
		runs = append(runs, runOf(w))
	}
	return runs, total, err
}

// Workflow returns run id.
func (s *Service) Workflow(ctx context.Context, p Principal, id string) (WorkflowRun, error) {
	if !p.Admin {
		return WorkflowRun{}, domain.Errorf(domain.Forbidden, "Admin credentials required")
	}
	w, found, err := s.st.Workflow(ctx, id)
	if err != nil {
		return WorkflowRun{}, err
	}
	if !found {
		return WorkflowRun{}, domain.Errorf(domain.NotFound, "Workflow run %s not found", id)
	}
	return runOf(w), nil
}

// TerminateWorkflow stops run id (a finished run is left as it is) and
// returns its status after.
func (s *Service) TerminateWorkflow(ctx context.Context, p Principal, id string) (string, error) {
	if !p.Admin {
		return "", domain.Errorf(domain.Forbidden, "Admin credentials required")
	}
	status, found, err := s.st.TerminateWorkflow(ctx, id, store.Progress{At: s.stamp(), Message: "terminated by " + callerOf(p).createdBy()}, s.now())
	if err != nil {
		return "", err
	}
	if !found {
		return "", domain.Errorf(domain.NotFound, "Workflow run %s not found", id)
	}
	return status, nil
}

// wakeWorkflows tells this node's runner that a run may be due.
func (s *Service) wakeWorkflows() {
	select {
	case s.workflowWake <- struct{}{}:
	default:
	}
}

// RunWorkflows works the due runs until ctx ends: it claims one, works it
// to its end (or until its next step is not due yet, it is terminated or
// its lease is lost), and looks again; idle, it waits for a wake-up or
// workflowPoll.
func (s *Service) RunWorkflows(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.workflowWake:
		}
		for ctx.Err() == nil {
			w, found, err := s.st.ClaimWorkflow(ctx, s.node, s.now(), s.workflowLease)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("claim a workflow run", "err", err)
				}
				break
			}
			if !found {
				break
			}
			s.work(ctx, w)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(workflowPoll)
	}
}

// work runs the steps of claimed run w from w.Step on.
func (s *Service) work(ctx context.Context, w store.Workflow) {
	log := s.log.With("workflow", w.WorkflowName, "instance", w.InstanceID)
	var result bulkResult
	if len(w.Result) > 0 {
		_ = json.Unmarshal(w.Result, &result)
	}
	for step := w.Step; ; step++ {
		if ctx.Err() != nil {
			return
		}
		if step >= w.Steps {
			res, _ := json.Marshal(result)
			if w.WorkflowName == CanaryWorkflow {
				res = json.RawMessage(`{"ok":true}`)
			}
			err := s.st.FinishWorkflow(ctx, w.InstanceID, s.node, store.WorkflowComplete, res, "", store.Progress{At: s.stamp(), Message: "complete"}, s.now())
			if err != nil && !errors.Is(err, store.ErrWorkflowLost) {
				log.Error("finish workflow run", "err", err)
			}
			return
		}
		// The run may have been terminated (or taken over) since the
		// last step was recorded, while this node waited: look before
		// acting, so that no key is added after a terminate answered.
		if held, err := s.st.HoldsWorkflow(ctx, w.InstanceID, s.node, step); err != nil || !held {
			if err != nil && ctx.Err() == nil {
				log.Error("read workflow run", "err", err)
			}
			return
		}
		msg, wait, err := s.step(ctx, w, step, &result)
		if err != nil {
			// Not the key's fault (the store failed, or this node is
			// stopping): the step is not recorded and is tried again on a
			// later claim.
			if ctx.Err() == nil {
				log.Error("workflow step failed; retried later", "step", step, "err", err)
			}
			return
		}
		res, _ := json.Marshal(result)
		if w.WorkflowName == CanaryWorkflow {
			res = nil
		}
		now := s.now()
		if err := s.st.StepWorkflow(ctx, w.InstanceID, s.node, step, res, store.Progress{At: s.stamp(), Message: msg}, now, now.Add(wait), s.workflowLease); err != nil {
			if !errors.Is(err, store.ErrWorkflowLost) {
				log.Error("record workflow step", "step", step, "err", err)
			}
			return
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// step runs step i of run w; it returns the progress message and how long
// to wait before the next step. An error is the store's: the step did not
// happen and is to be retried.
func (s *Service) step(ctx context.Context, w store.Workflow, i int64, result *bulkResult) (string, time.Duration, error) {
	switch w.WorkflowName {
	case CanaryWorkflow:
		var p canaryParams
		if err := json.Unmarshal(w.Params, &p); err != nil {
			return "", 0, err
		}
		return fmt.Sprintf("step %d of %d", i+1, p.Steps), time.Duration(p.Seconds) * time.Second / time.Duration(p.Steps), nil
	case BulkAddKeysWorkflow:
		var p bulkParams
		if err := json.Unmarshal(w.Params, &p); err != nil {
			return "", 0, err
		}
		k := p.Keys[i]
		c := Call{P: p.Caller.principal(), Route: "BulkAddKeys " + w.InstanceID}
		r, err := s.addKey(ctx, c, p.LockID, k, false)
		var de *domain.Error
		switch {
		case errors.As(err, &de):
			result.Failed++
			if len(result.Errors) < maxResultErrors {
				result.Errors = append(result.Errors, bulkFailed{KeyUUID: k.KeyUUID, Error: de.Message})
			}
			return fmt.Sprintf("key %s (%d of %d) failed: %s", k.KeyUUID, i+1, len(p.Keys), de.Message), s.bulkStepInterval, nil
		case err != nil:
			return "", 0, err
		case r.Event == nil:
			result.Unchanged++
			return fmt.Sprintf("key %s (%d of %d) already on the lock", k.KeyUUID, i+1, len(p.Keys)), s.bulkStepInterval, nil
		}
		result.Added++
		return fmt.Sprintf("key %s (%d of %d) added", k.KeyUUID, i+1, len(p.Keys)), s.bulkStepInterval, nil
	}
	return "", 0, fmt.Errorf("unknown workflow %q", w.WorkflowName)
}
