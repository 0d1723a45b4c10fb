// Command spkey is a self-hostable server that speaks the SmartphoneKey
// access-control API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	_ "time/tzdata" // quiet hours' time zones work on machines without a zone database

	"github.com/spkey-dev/spkey/internal/cmdline"
)

func main() { cmdline.Main("spkey", run) }

const usage = `spkey — a self-hostable SmartphoneKey-compatible server

Usage:
  spkey serve     [flags]   run the API server
  spkey migrate   [flags]   apply database migrations
  spkey tenant create ORG_ID --name NAME [--owner-email E] [--super] [flags]
                            register a tenant and print its new API key once
  spkey token --sub USER_UUID [--email E] [--ttl 1h] [flags]
                            print a JWT signed by the server's local key
  spkey portal-link --email E [--ttl 15m] [flags]
                            print a one-time sign-in link to the Partner Portal
  spkey device credentials lock LOCK_ID --out DIR [--csr FILE] [flags]
                            issue a lock's MQTT credentials into DIR
  spkey device revoke lock LOCK_ID [flags]
                            revoke every MQTT credential of a lock
  spkey sim --api URL --api-key KEY --locks N [flags]
                            simulated locks on the broker (shadow layout v1)
  spkey version             print the version (also -version, --version)

Run "spkey COMMAND -h" for the flags of a command; flags may come before
or after its arguments. Every setting has an environment twin:
--admin-api-key is SPKEY_ADMIN_API_KEY, and so on (a flag given wins).
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// run is the whole program; tests call it directly.
// A command's -h prints its usage on stdout and succeeds.
func run(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, env, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], env, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, args[1:], env, stdout, stderr)
	case "tenant":
		return cmdTenant(ctx, args[1:], env, stdout, stderr)
	case "token":
		return cmdToken(ctx, args[1:], env, stdout, stderr)
	case "portal-link":
		return cmdPortalLink(ctx, args[1:], env, stdout, stderr)
	case "device":
		return cmdDevice(ctx, args[1:], env, stdout, stderr)
	case "sim":
		return cmdSim(ctx, args[1:], env, stdout, stderr)
	case "version", "-version", "--version", "-v":
		fmt.Fprintln(stdout, "spkey", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
