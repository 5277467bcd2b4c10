package testutil

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// Marshal is m's wire form, for fuzz seeds; it fails t when m cannot be
// encoded.
func Marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
