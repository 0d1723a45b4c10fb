package httpapi

import (
	"context"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/user"
)

type byEmailInput struct {
	Email      string `query:"email" required:"true" doc:"User email address"`
	UUID       string `query:"uuid" doc:"Optional UUID to assign to a new user"`
	SearchOnly string `query:"searchOnly" enum:"true,false" doc:"true: look up only, 404 on a miss"`
}

// ByEmailOutput is GET /users/by-email.
type ByEmailOutput struct {
	Body struct {
		UUID      string `json:"uuid"`
		Email     string `json:"email" format:"email"`
		CreatedAt string `json:"created_at"`
	}
}

func (s *Server) userByEmail(ctx context.Context, in *byEmailInput) (*ByEmailOutput, error) {
	u, err := s.svc.FindOrCreate(ctx, principal(ctx), false, app.FindInput{Email: in.Email, UUID: in.UUID, SearchOnly: in.SearchOnly == "true"})
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &ByEmailOutput{}
	out.Body.UUID, out.Body.Email, out.Body.CreatedAt = u.UserID, u.Email, u.CreatedAt
	return out, nil
}

type byPhoneInput struct {
	PhoneNumber string `query:"phoneNumber" required:"true" doc:"Phone number in international form (+48123456789 or 0048123456789)"`
	Email       string `query:"email" doc:"Optional email for a new user"`
	UUID        string `query:"uuid" doc:"Optional UUID to assign to a new user"`
	SearchOnly  string `query:"searchOnly" enum:"true,false" doc:"true: look up only, 404 on a miss"`
}

// ByPhoneOutput is GET /users/by-phone.
type ByPhoneOutput struct {
	Body struct {
		UUID        string  `json:"uuid"`
		Email       *string `json:"email" format:"email"`
		PhoneNumber *string `json:"phoneNumber"`
		CreatedAt   string  `json:"created_at"`
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Server) userByPhone(ctx context.Context, in *byPhoneInput) (*ByPhoneOutput, error) {
	u, err := s.svc.FindOrCreate(ctx, principal(ctx), true, app.FindInput{Phone: in.PhoneNumber, Email: in.Email, UUID: in.UUID, SearchOnly: in.SearchOnly == "true"})
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &ByPhoneOutput{}
	out.Body.UUID, out.Body.Email, out.Body.PhoneNumber, out.Body.CreatedAt = u.UserID, optional(u.Email), optional(u.Phone), u.CreatedAt
	return out, nil
}

type ensureUserInput struct {
	Body struct {
		_      struct{} `additionalProperties:"true"`
		Detail struct {
			_    struct{} `additionalProperties:"true"`
			Data struct {
				_        struct{} `additionalProperties:"true"`
				UserName string   `json:"user_name" doc:"The user's e-mail address"`
				UserID   string   `json:"user_id" doc:"The user's id (a lower-case UUID): the sub of their JWTs; a new user gets it"`
			} `json:"data"`
		} `json:"detail"`
	}
}

// EnsureUserOutput is POST /users.
type EnsureUserOutput struct {
	Body struct {
		Success bool   `json:"success"`
		UserID  string `json:"userId"`
		Email   string `json:"email" format:"email"`
	}
}

func (s *Server) ensureUser(ctx context.Context, in *ensureUserInput) (*EnsureUserOutput, error) {
	// admit (gateHook) checked the admin key and a JWT sent along.
	u, err := s.svc.EnsureUser(ctx, in.Body.Detail.Data.UserName, in.Body.Detail.Data.UserID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &EnsureUserOutput{}
	out.Body.Success, out.Body.UserID, out.Body.Email = true, u.UserID, u.Email
	return out, nil
}

type UserPath struct {
	ID string `path:"id" doc:"User UUID"`
}

// CreateUserOutput is the answer of CreateUser.
type CreateUserOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     struct {
		Envelope[user.UserCreated]
		UserID string `json:"userId"`
	}
}

type createUserInputBody struct {
	_           struct{} `additionalProperties:"true"`
	UserID      string   `json:"userId" doc:"User UUID (same as the path id)"`
	Email       string   `json:"email,omitempty"`
	FirstName   string   `json:"firstName,omitempty"`
	LastName    string   `json:"lastName,omitempty"`
	PhoneNumber string   `json:"phoneNumber,omitempty" doc:"Validated but not stored: use UpdatePhoneNumber"`
}

func (s *Server) createUser(ctx context.Context, in *userCommandInput[createUserInputBody]) (*CreateUserOutput, error) {
	b := app.CreateUserInput{UserID: in.Body.UserID, Email: in.Body.Email, FirstName: in.Body.FirstName, LastName: in.Body.LastName, PhoneNumber: in.Body.PhoneNumber}
	r, err := s.svc.CreateUser(ctx, s.call(ctx, "CreateUser "+in.ID, in.IdempotencyKey, b), in.ID, b)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &CreateUserOutput{Status: status(r.Answer, true), Replayed: replayed(r.Answer)}
	out.Body.Envelope, out.Body.UserID = envelope(r.Answer), r.UserID
	return out, nil
}

type updateEmailInputBody struct {
	_     struct{} `additionalProperties:"true"`
	Email string   `json:"email"`
}

func (s *Server) updateEmail(ctx context.Context, in *userCommandInput[updateEmailInputBody]) (*CommandOutput[user.UserEmailUpdated], error) {
	r, err := s.svc.UpdateEmail(ctx, s.call(ctx, "UpdateEmail "+in.ID, in.IdempotencyKey, in.Body), in.ID, in.Body.Email)
	return command(ctx, s, r, err, false)
}

type updatePhoneInputBody struct {
	_           struct{} `additionalProperties:"true"`
	PhoneNumber *string  `json:"phoneNumber" required:"true" nullable:"true" doc:"International number to set, or null to remove"`
}

func (s *Server) updatePhoneNumber(ctx context.Context, in *userCommandInput[updatePhoneInputBody]) (*CommandOutput[user.UserPhoneNumberUpdated], error) {
	r, err := s.svc.UpdatePhoneNumber(ctx, s.call(ctx, "UpdatePhoneNumber "+in.ID, in.IdempotencyKey, in.Body), in.ID, in.Body.PhoneNumber)
	return command(ctx, s, r, err, false)
}

// ProfileOutput is GET /users/{id}/profile.
type ProfileOutput struct {
	Body struct {
		UserID      string `json:"userId"`
		Email       string `json:"email,omitempty"`
		FirstName   string `json:"firstName,omitempty"`
		LastName    string `json:"lastName,omitempty"`
		PhoneNumber string `json:"phoneNumber,omitempty"`
		Status      string `json:"status" enum:"ACTIVE,INACTIVE,SUSPENDED"`
	}
}

func (s *Server) userProfile(ctx context.Context, in *UserPath) (*ProfileOutput, error) {
	u, err := s.svc.Profile(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &ProfileOutput{}
	b := &out.Body
	b.UserID, b.Email, b.FirstName, b.LastName, b.PhoneNumber, b.Status = u.UserID, u.Email, u.FirstName, u.LastName, u.Phone, u.Status
	return out, nil
}

// PhoneOutput is GET /users/{id}/phone-number.
type PhoneOutput struct {
	Body struct {
		UserID      string  `json:"userId"`
		PhoneNumber *string `json:"phoneNumber"`
	}
}

func (s *Server) userPhoneNumber(ctx context.Context, in *UserPath) (*PhoneOutput, error) {
	u, err := s.svc.Profile(ctx, principal(ctx), in.ID)
	if err != nil {
		return nil, toAPIError(ctx, s.log, err)
	}
	out := &PhoneOutput{}
	out.Body.UserID, out.Body.PhoneNumber = u.UserID, optional(u.Phone)
	return out, nil
}
