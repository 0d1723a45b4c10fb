package devices

import "context"

// Answer is one publication the gateway would make.
type Answer struct{ Topic, Payload string }

// Handle runs one device publication as the Transport would deliver it
// and returns the answers, without publishing them.
func Handle(ctx context.Context, g *Gateway, thing, topic string, payload []byte) []Answer {
	var out []Answer
	for _, p := range g.handle(ctx, thing, topic, payload) {
		out = append(out, Answer{p.topic, string(p.payload)})
	}
	return out
}
