// Package testutil holds helpers the tests of several packages share.
package testutil

import (
	"errors"
	"testing"
)

// CheckErr fails t unless err matches want: nil wants no error, else
// errors.Is(err, want). It reports whether err is nil.
func CheckErr(t testing.TB, err, want error) bool {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("want error %v, got none", want)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("want error %v, got %v", want, err)
	}
	return err == nil
}
