package httpapi

import (
	"context"
	"net/http"
	"time"
)

// HealthOutput is /healthz and /readyz.
type HealthOutput struct {
	Status int
	Body   struct {
		Status string `json:"status"`
	}
}

func (s *Server) healthz(ctx context.Context, _ *struct{}) (*HealthOutput, error) {
	out := &HealthOutput{Status: http.StatusOK}
	out.Body.Status = "ok"
	return out, nil
}

func (s *Server) readyz(ctx context.Context, _ *struct{}) (*HealthOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := &HealthOutput{Status: http.StatusOK}
	out.Body.Status = "ready"
	if err := s.db.Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "readiness check failed", "request_id", requestID(ctx), "err", err)
		out.Status, out.Body.Status = http.StatusServiceUnavailable, "database unavailable"
	}
	return out, nil
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.jwt.JWKS())
}
