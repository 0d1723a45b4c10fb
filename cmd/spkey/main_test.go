package main

import (
	"os"
	"testing"
)

// TestMain runs every `spkey serve` of the tests, in this process or as the
// built binary, with its metrics on a free loopback port rather than the
// fixed default, as their API runs on 127.0.0.1:0, and without the device
// broker unless a test turns it on (--mqtt-addr, --mqtts-addr).
func TestMain(m *testing.M) {
	defaultMetricsAddr = "127.0.0.1:0"
	defaultMQTTAddr, defaultMQTTSAddr = "off", "off"
	os.Setenv("SPKEY_METRICS_ADDR", "127.0.0.1:0")
	os.Setenv("SPKEY_MQTT_ADDR", "off")
	os.Setenv("SPKEY_MQTTS_ADDR", "off")
	os.Exit(m.Run())
}
