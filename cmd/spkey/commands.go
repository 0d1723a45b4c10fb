package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/auth"
	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/domain"
)

// storeFlags are the settings of the commands that open the database.
var storeFlags = []string{"data", "db", "sqlite-synchronous", "log-level"}

func cmdMigrate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	c, _, err := parse(command{name: "migrate", usage: "migrate [flags]", flags: storeFlags}, args, cmdline.Env(environ), stdout, stderr)
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

const tenantUsage = "tenant create ORG_ID --name NAME [--owner-email E] [--super] [flags]"

func cmdTenant(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintf(stdout, "Usage: spkey %s\n\nRun \"spkey tenant create -h\" for its flags.\n", tenantUsage)
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: spkey %s", tenantUsage)
	}
	var name, email string
	var super bool
	c, pos, err := parse(command{name: "tenant create", usage: tenantUsage, flags: storeFlags, args: 1, extra: func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "", "organization name")
		fs.StringVar(&email, "owner-email", "", "the tenant owner's e-mail address (optional)")
		fs.BoolVar(&super, "super", false, "issue a super key (bypasses org ownership)")
	}}, args[1:], cmdline.Env(environ), stdout, stderr)
	if err != nil {
		return err
	}
	orgID := pos[0]
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
	var sub, email, phone string
	var ttl time.Duration
	c, _, err := parse(command{name: "token", usage: "token --sub USER_UUID [--email E] [--phone P] [--ttl 1h] [flags]", flags: []string{"data", "jwt-user-claim"},
		extra: func(fs *flag.FlagSet) {
			fs.StringVar(&sub, "sub", "", "user UUID (required)")
			fs.StringVar(&email, "email", "", "email claim: the address the user may set on their own record")
			fs.StringVar(&phone, "phone", "", "phone_number claim (international form): the number the user may set on their own record")
			fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime (positive)")
		}}, args, cmdline.Env(environ), stdout, stderr)
	if err != nil {
		return err
	}
	if !domain.ValidUUID(sub) {
		return fmt.Errorf("--sub must be a user UUID")
	}
	if ttl <= 0 {
		return fmt.Errorf("--ttl must be positive (e.g. 1h), got %s", ttl)
	}
	if phone != "" {
		if phone, err = domain.NormalizePhone("phone", phone); err != nil {
			return fmt.Errorf("--phone: %w", err)
		}
	}
	v, err := auth.NewVerifier(ctx, auth.Config{KeyPath: c.keyPath(), UserClaim: c.JWTUserClaim})
	if err != nil {
		return err
	}
	tok, err := v.MintPhone(sub, email, phone, ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
