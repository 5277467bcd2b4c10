package stdio

import "testing"

func TestCappedBuffer(t *testing.T) {
	b := NewCappedBuffer(10)
	for _, s := range []string{"0123", "4567", "89ab", "cdef"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: the writer must never see a short write", s, n, err)
		}
	}
	if got := string(b.Bytes()); got != "0123456789" || !b.Truncated() {
		t.Errorf("kept %q truncated %v", got, b.Truncated())
	}
	empty := NewCappedBuffer(10)
	if empty.Bytes() != nil || empty.Truncated() {
		t.Error("empty buffer")
	}
}
