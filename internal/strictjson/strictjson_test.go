package strictjson

import (
	"strings"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	type v struct {
		A string `json:"a"`
	}
	for _, tc := range []struct{ in, wantErr string }{
		{in: `{"a":"x"}`},
		{in: ` {"a":"x"} `},
		{in: `{"a":"x","b":1}`, wantErr: "unknown field"},
		{in: `{"a":"x"} {}`, wantErr: "data after"},
		{in: `{"a":"x"} x`, wantErr: "data after"},
		{in: `{"a":`, wantErr: "EOF"},
		{in: ``, wantErr: "EOF"},
	} {
		var got v
		err := Unmarshal([]byte(tc.in), &got)
		if tc.wantErr == "" {
			if err != nil || got.A != "x" {
				t.Errorf("%q: %+v %v", tc.in, got, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
		}
	}
}
