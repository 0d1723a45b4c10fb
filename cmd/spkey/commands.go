package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/domain"
)

func cmdMigrate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	c, _, err := parse("migrate", args, envMap(environ), stderr, nil)
	if err != nil {
		return err
	}
	st, err := c.openStore(ctx, c.logger(stderr))
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

func cmdTenant(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "create" {
		return fmt.Errorf("usage: spkey tenant create ORG_ID --name NAME [--owner-email E] [--super]")
	}
	orgID := args[1]
	var name, email string
	var super bool
	c, _, err := parse("tenant create", args[2:], envMap(environ), stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "", "organization name")
		fs.StringVar(&email, "owner-email", "", "owner e-mail")
		fs.BoolVar(&super, "super", false, "issue a super key (bypasses org ownership)")
	})
	if err != nil {
		return err
	}
	log := c.logger(stderr)
	st, err := c.openStore(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()
	svc := app.New(st, app.Options{}, log)
	admin := app.Principal{Admin: true, Email: "cli"}
	if _, err := svc.RegisterTenant(ctx, app.Call{P: admin, Route: "register " + orgID}, orgID, name, email); err != nil {
		return err
	}
	k, err := svc.IssueKey(ctx, admin, app.IssueKeyInput{OrgID: orgID, OrgName: name, Super: super}, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "tenant %s registered; its API key (shown once):\n", orgID)
	fmt.Fprintln(stdout, k.APIKey)
	return nil
}

func cmdToken(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	var sub, email string
	var ttl time.Duration
	c, _, err := parse("token", args, envMap(environ), stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&sub, "sub", "", "user UUID (required)")
		fs.StringVar(&email, "email", "", "email claim")
		fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime")
	})
	if err != nil {
		return err
	}
	if !domain.ValidUUID(sub) {
		return fmt.Errorf("--sub must be a user UUID")
	}
	v, err := auth.NewVerifier(ctx, auth.Config{KeyPath: c.keyPath(), UserClaim: c.JWTUserClaim})
	if err != nil {
		return err
	}
	tok, err := v.Mint(sub, email, ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
