package devices

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
)

// checkLayout refuses an accepted update whose resulting document breaks
// the layout of its thing: a lock's classic shadow and its key pages
// (lock.KeyPage) must hold a reported section lock.ParseReported accepts
// (README, "Lock firmware"). Other things and named shadows have no
// layout yet. It returns the message of
// the 400 to answer, or "" when the document fits.
func checkLayout(thing, shadowName string, doc shadow.Document) string {
	if (shadowName != "" && !lock.IsKeyPage(shadowName)) || !strings.HasPrefix(thing, lock.ThingPrefix) {
		return ""
	}
	reported, err := json.Marshal(doc.Reported)
	if err != nil {
		return "reported state is not JSON"
	}
	if _, err := lock.ParseReported(reported); err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return de.Message
		}
		return err.Error()
	}
	return ""
}
