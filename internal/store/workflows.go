package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
)

// Workflows are spkey's long jobs (BulkAddKeys, the canary), one row each
// in the workflows table: state beside the events, like the shadows (no
// event records a run; Rebuild leaves the table alone). A run is worked
// by one node at a time, the holder of its lease (ClaimWorkflow); each
// step done moves its step counter in the same write as its progress
// entry (StepWorkflow), so a run taken over after a crash goes on from
// the first step not recorded.

// Workflow statuses.
const (
	WorkflowQueued     = "queued"
	WorkflowRunning    = "running"
	WorkflowComplete   = "complete"
	WorkflowErrored    = "errored"
	WorkflowTerminated = "terminated"
)

// MaxWorkflowProgress is how many progress entries a run keeps (the last
// ones).
const MaxWorkflowProgress = 100

// WorkflowsKept is how long a finished run stays in the registry.
const WorkflowsKept = 30 * 24 * time.Hour

// Progress is one entry of a run's progress log.
type Progress struct {
	At      string `json:"at"`
	Message string `json:"message"`
}

// Workflow is one run.
type Workflow struct {
	InstanceID   string
	WorkflowName string
	Binding      string
	Label        string
	Status       string
	Params       json.RawMessage
	Progress     []Progress
	Result       json.RawMessage // nil until the run ends
	Error        string          // "" unless it errored
	CreatedBy    string          // "" when unknown
	Step, Steps  int64
	NextAt       string
	CreatedAt    string
	UpdatedAt    string
}

// ErrWorkflowLost is returned by StepWorkflow and FinishWorkflow when the
// run is no longer this node's to work: terminated, finished, or its
// lease taken by another node.
var ErrWorkflowLost = errors.New("workflow run is no longer held by this node")

// CreateWorkflow records run w (status queued, step 0, due now) in tx
// and drops the runs finished before now minus WorkflowsKept.
func (tx *Tx) CreateWorkflow(ctx context.Context, w Workflow, now time.Time) error {
	s := tx.s
	stamp := now.UTC().Format(domain.TimeLayout)
	progress, err := json.Marshal(nonNil(w.Progress))
	if err != nil {
		return fmt.Errorf("create workflow %s: %w", w.InstanceID, err)
	}
	cutoff := now.Add(-WorkflowsKept).UTC().Format(domain.TimeLayout)
	if _, err := tx.q.ExecContext(ctx, s.sql(`DELETE FROM workflows WHERE status IN ('complete', 'errored', 'terminated') AND updated_at < $1`), cutoff); err != nil {
		return fmt.Errorf("prune workflows: %w", err)
	}
	_, err = tx.q.ExecContext(ctx, s.sql(`INSERT INTO workflows (instance_id, workflow_name, binding, label, status, params, progress, created_by, step, steps, next_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, 0, $8, $9, $9, $9)`),
		w.InstanceID, w.WorkflowName, w.Binding, w.Label, string(w.Params), string(progress), nullable(w.CreatedBy), w.Steps, stamp)
	if err != nil {
		return fmt.Errorf("create workflow %s: %w", w.InstanceID, err)
	}
	return nil
}

// ClaimWorkflow gives node the lease, until now+lease, of one run that is
// queued or running, due (next_at reached) and not leased to another node
// (or whose lease ended); the run becomes running. found is false when
// none is.
func (s *Store) ClaimWorkflow(ctx context.Context, node string, now time.Time, lease time.Duration) (Workflow, bool, error) {
	stamp := now.UTC().Format(domain.TimeLayout)
	until := now.Add(lease).UTC().Format(domain.TimeLayout)
	var id string
	err := s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		id = ""
		row := tx.q.QueryRowContext(ctx, s.sql(`SELECT instance_id FROM workflows WHERE status IN ('queued', 'running') AND next_at <= $1
			AND (lease_owner = '' OR lease_owner = $2 OR lease_until < $1) ORDER BY next_at LIMIT 1`), stamp, node)
		if err := row.Scan(&id); errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return fmt.Errorf("find a runnable workflow: %w", err)
		}
		// The same condition again: on PostgreSQL another node may have
		// taken it between the SELECT and this UPDATE.
		res, err := tx.q.ExecContext(ctx, s.sql(`UPDATE workflows SET status = 'running', lease_owner = $2, lease_until = $3, updated_at = $4
			WHERE instance_id = $1 AND status IN ('queued', 'running') AND (lease_owner = '' OR lease_owner = $2 OR lease_until < $4)`), id, node, until, stamp)
		if err != nil {
			return fmt.Errorf("claim workflow %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			id = ""
			return err
		}
		return nil
	})
	if err != nil || id == "" {
		return Workflow{}, false, err
	}
	return s.Workflow(ctx, id)
}

// StepWorkflow records step step of run id done by node (the run's step
// counter becomes step+1) with a progress entry and the result so far
// (nil: none), renews the lease and sets when the next step is due. It
// returns ErrWorkflowLost when the run is not running under node's lease.
func (s *Store) StepWorkflow(ctx context.Context, id, node string, step int64, result json.RawMessage, entry Progress, now, next time.Time, lease time.Duration) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		return tx.updateHeld(ctx, id, node, now, func(w *Workflow) (string, []any) {
			w.Progress = appendProgress(w.Progress, entry)
			return `step = $5, next_at = $6, lease_until = $7, result = $8`, []any{step + 1, next.UTC().Format(domain.TimeLayout),
				now.Add(lease).UTC().Format(domain.TimeLayout), nullable(string(result))}
		})
	})
}

// FinishWorkflow ends run id held by node with status (complete or
// errored), its result and error, and a last progress entry. It returns
// ErrWorkflowLost when the run is not running under node's lease.
func (s *Store) FinishWorkflow(ctx context.Context, id, node, status string, result json.RawMessage, errMsg string, entry Progress, now time.Time) error {
	return s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		return tx.updateHeld(ctx, id, node, now, func(w *Workflow) (string, []any) {
			w.Progress = appendProgress(w.Progress, entry)
			return `status = $5, result = $6, error = $7, lease_owner = '', lease_until = ''`, []any{status, nullable(string(result)), nullable(errMsg)}
		})
	})
}

// updateHeld reads run id, checks that node holds it running, and writes
// its progress (as change leaves it) with change's extra assignments
// (parameters from $5 on).
func (tx *Tx) updateHeld(ctx context.Context, id, node string, now time.Time, change func(w *Workflow) (string, []any)) error {
	s := tx.s
	var status, owner, progress string
	err := tx.q.QueryRowContext(ctx, s.sql(`SELECT status, lease_owner, progress FROM workflows WHERE instance_id = $1`+s.forUpdate()), id).Scan(&status, &owner, &progress)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (status != WorkflowRunning || owner != node)) {
		return fmt.Errorf("workflow %s: %w", id, ErrWorkflowLost)
	}
	if err != nil {
		return fmt.Errorf("read workflow %s: %w", id, err)
	}
	var w Workflow
	if err := json.Unmarshal([]byte(progress), &w.Progress); err != nil {
		return fmt.Errorf("workflow %s progress: %w", id, err)
	}
	set, args := change(&w)
	p, err := json.Marshal(nonNil(w.Progress))
	if err != nil {
		return fmt.Errorf("workflow %s progress: %w", id, err)
	}
	all := append([]any{id, node, string(p), now.UTC().Format(domain.TimeLayout)}, args...)
	if _, err := tx.q.ExecContext(ctx, s.sql(`UPDATE workflows SET progress = $3, updated_at = $4, `+set+` WHERE instance_id = $1 AND lease_owner = $2`), all...); err != nil {
		return fmt.Errorf("update workflow %s: %w", id, err)
	}
	return nil
}

// HoldsWorkflow reports whether run id is running under node's lease
// with step as its next step: a node checks it before each step, so that
// it acts on no run terminated, finished or taken over meanwhile.
func (s *Store) HoldsWorkflow(ctx context.Context, id, node string, step int64) (bool, error) {
	var status, owner string
	var next int64
	err := s.r.QueryRowContext(ctx, s.sql(`SELECT status, lease_owner, step FROM workflows WHERE instance_id = $1`), id).Scan(&status, &owner, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read workflow %s: %w", id, err)
	}
	return status == WorkflowRunning && owner == node && next == step, nil
}

// TerminateWorkflow stops run id: a queued or running run becomes
// terminated (its node stops before its next step); a finished one stays
// as it is. It returns the run's status after the call, and found false
// for an unknown run.
func (s *Store) TerminateWorkflow(ctx context.Context, id string, entry Progress, now time.Time) (string, bool, error) {
	var status string
	var found bool
	err := s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		var progress string
		err := tx.q.QueryRowContext(ctx, s.sql(`SELECT status, progress FROM workflows WHERE instance_id = $1`+s.forUpdate()), id).Scan(&status, &progress)
		if errors.Is(err, sql.ErrNoRows) {
			found = false
			return nil
		}
		if err != nil {
			return fmt.Errorf("read workflow %s: %w", id, err)
		}
		found = true
		if status != WorkflowQueued && status != WorkflowRunning {
			return nil
		}
		var ps []Progress
		if err := json.Unmarshal([]byte(progress), &ps); err != nil {
			return fmt.Errorf("workflow %s progress: %w", id, err)
		}
		p, err := json.Marshal(appendProgress(ps, entry))
		if err != nil {
			return err
		}
		status = WorkflowTerminated
		_, err = tx.q.ExecContext(ctx, s.sql(`UPDATE workflows SET status = 'terminated', progress = $2, lease_owner = '', lease_until = '', updated_at = $3 WHERE instance_id = $1`),
			id, string(p), now.UTC().Format(domain.TimeLayout))
		return err
	})
	return status, found, err
}

const workflowColumns = `instance_id, workflow_name, binding, label, status, params, progress, COALESCE(result, ''), COALESCE(error, ''), COALESCE(created_by, ''), step, steps, next_at, created_at, updated_at`

func scanWorkflow(sc interface{ Scan(...any) error }) (Workflow, error) {
	var w Workflow
	var params, progress, result string
	if err := sc.Scan(&w.InstanceID, &w.WorkflowName, &w.Binding, &w.Label, &w.Status, &params, &progress, &result, &w.Error, &w.CreatedBy,
		&w.Step, &w.Steps, &w.NextAt, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return w, err
	}
	w.Params = json.RawMessage(params)
	if result != "" {
		w.Result = json.RawMessage(result)
	}
	if err := json.Unmarshal([]byte(progress), &w.Progress); err != nil {
		return w, fmt.Errorf("workflow %s progress: %w", w.InstanceID, err)
	}
	return w, nil
}

// Workflow returns run id.
func (s *Store) Workflow(ctx context.Context, id string) (Workflow, bool, error) {
	w, err := scanWorkflow(s.r.QueryRowContext(ctx, s.sql(`SELECT `+workflowColumns+` FROM workflows WHERE instance_id = $1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Workflow{}, false, nil
	}
	if err != nil {
		return Workflow{}, false, fmt.Errorf("read workflow %s: %w", id, err)
	}
	return w, true, nil
}

// Workflows returns up to limit runs, newest first, of status (all when
// ""), and how many runs match.
func (s *Store) Workflows(ctx context.Context, status string, limit int) ([]Workflow, int, error) {
	var total int
	if err := s.r.QueryRowContext(ctx, s.sql(`SELECT COUNT(*) FROM workflows WHERE $1 = '' OR status = $1`), status).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count workflows: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, s.sql(`SELECT `+workflowColumns+` FROM workflows WHERE $1 = '' OR status = $1 ORDER BY created_at DESC, instance_id LIMIT $2`), status, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list workflows: %w", err)
	}
	defer rows.Close()
	var out []Workflow
	for rows.Next() {
		w, err := scanWorkflow(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("scan workflow: %w", err)
		}
		out = append(out, w)
	}
	return out, total, rows.Err()
}

func appendProgress(ps []Progress, p Progress) []Progress {
	ps = append(ps, p)
	if len(ps) > MaxWorkflowProgress {
		ps = ps[len(ps)-MaxWorkflowProgress:]
	}
	return ps
}

func nonNil(ps []Progress) []Progress {
	if ps == nil {
		return []Progress{}
	}
	return ps
}

// forUpdate locks the rows a read inside a write transaction returns
// until it ends, on PostgreSQL (SQLite has one writer already).
func (s *Store) forUpdate() string {
	if s.dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}
