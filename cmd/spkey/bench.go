package main

import (
	"context"
	"fmt"
	"io"
)

func cmdBench(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	return fmt.Errorf("bench: not built yet")
}
